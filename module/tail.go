package module

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
)

// tailPoll is how often tail looks for new records.
const tailPoll = 250 * time.Millisecond

func tailCommand() *cobra.Command {
	tail := &cobra.Command{Use: "tail", Short: "Prints the delivery log's last records, then new ones as they come, until interrupted",
		Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, args []string) error {
			return runWithin(cmd, args, (*cli).tail, func() (context.Context, context.CancelFunc) {
				return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			})
		}}
	tail.Flags().String("webhook", "", "only this webhook's records")
	tail.Flags().String("outcome", "", "only these outcomes, comma-separated: "+strings.Join(history.Outcomes, ", "))
	tail.Flags().String("delivery", "", "only this delivery id's records")
	tail.Flags().Int("last", 10, "how many of the last records to print first")
	tail.Flags().Bool("no-follow", false, "print the last records and stop")
	tail.Flags().Bool("json", false, "print each record as one JSON line")
	return tail
}

// tail prints the last records the flags select, oldest first, then
// follows the log.
func (c *cli) tail(ctx context.Context, fl caddycmd.Flags, _ []string) error {
	var outcomes []string
	if s := fl.String("outcome"); s != "" {
		outcomes = strings.Split(s, ",")
		for _, o := range outcomes {
			if !slices.Contains(history.Outcomes, o) {
				return badInput("--outcome %q: must be one of %s", o, strings.Join(history.Outcomes, ", "))
			}
		}
	}
	q := history.Query{WebhookID: fl.String("webhook"), DeliveryID: fl.String("delivery")}
	match := func(r history.Record) bool {
		return q.Match(r) && (outcomes == nil || slices.Contains(outcomes, r.Outcome))
	}
	print := printLine
	if fl.Bool("json") {
		print = printJSONLine
	}
	from, err := c.log.Now(ctx)
	if err != nil {
		return err
	}
	printed := map[string]bool{} // written while the last were listed: printed once
	if n := fl.Int("last"); n > 0 {
		last, err := c.lastRecords(ctx, q, match, n)
		if err != nil {
			return err
		}
		for _, r := range last {
			print(c.out, r)
			printed[r.ID] = true
		}
	}
	if fl.Bool("no-follow") {
		return nil
	}
	err = c.log.Follow(ctx, from, q, tailPoll, func(r history.Record) error {
		if match(r) && !printed[r.ID] {
			print(c.out, r)
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil // interrupted: the way tail ends
	}
	return err
}

// lastRecords are the last n records match selects, oldest first.
func (c *cli) lastRecords(ctx context.Context, q history.Query, match func(history.Record) bool, n int) ([]history.Record, error) {
	var out []history.Record
	q.Count = history.MaxCount
	for len(out) < n {
		page, next, err := c.log.List(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if match(r) && len(out) < n {
				out = append(out, r)
			}
		}
		if next == "" {
			break
		}
		q.Before = next
	}
	slices.Reverse(out)
	return out, nil
}

// printLine prints r as one line: time, webhook, delivery, outcome, and
// what else it says.
func printLine(w io.Writer, r history.Record) {
	var detail []string
	add := func(k, v string) { detail = append(detail, k+"="+v) }
	if r.Reason != "" && r.Reason != r.Outcome {
		add("reason", strconv.Quote(r.Reason))
	}
	if r.Status != 0 {
		add("status", strconv.Itoa(r.Status))
	}
	if r.Attempts != 0 {
		add("attempts", strconv.Itoa(r.Attempts))
	}
	if r.Step != "" {
		add("step", strconv.Quote(r.Step))
	}
	if r.CodeMieStatus != 0 {
		add("codemie", strconv.Itoa(r.CodeMieStatus))
	}
	if r.DurationMs != 0 {
		add("took", strconv.FormatFloat(r.DurationMs, 'f', 1, 64)+"ms")
	}
	if r.BodyBytes != 0 {
		add("bytes", strconv.Itoa(r.BodyBytes))
	}
	fmt.Fprintf(w, "%s  %-20s %-38s %-10s %s\n", r.Time.Local().Format("15:04:05.000"), r.WebhookID, orNone(r.DeliveryID), r.Outcome, strings.Join(detail, " "))
}

func printJSONLine(w io.Writer, r history.Record) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}
