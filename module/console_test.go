package module_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// The secrets of TestDeliveryLogShowsNoSecret's integrations, and what
// its bodies carry.
const (
	relaySecret = "relay-secret-6a2f"
	bodyToken   = "body-token-90c1"
)

// TestDeliveryLogShowsNoSecret: what the delivery log keeps, and what the
// console and the tail show of it, never holds a secret: not the
// integrations' (even where a body quotes them), not a body's members
// named like one. The previews it does show prove the bodies were read.
func TestDeliveryLogShowsNoSecret(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	addWebhook(t, r, "gh", "workflow", "wf-1")
	runCLI(t, cliEnv(r, ""), "", 0, "set", "gh", "--log-preview", "true")
	if err := r.Client.HSet(ctx, "codemie:webhooks:{relay}", "is_enabled", "true", "secure_header_name", "X-Relay-Key",
		"secure_header_value", relaySecret, "resource_type", "workflow", "resource_id", "wf-2", "log_preview", "true").Err(); err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "")+`
	handle_path /ops/webhooks/* {
		codemie_webhooks_console
	}`)

	// Each body quotes its own integration's secret, as a careless
	// sender might, and carries a member named like a secret.
	body := func(secret string) string {
		return fmt.Sprintf(`{"action":"opened","note":"quoting %s","token":%q,"mark":%q}`, secret, bodyToken, bodyMark)
	}
	if status, _, _ := postSigned(t, c, "gh", "d-gh", body(ghSecret)); status != 200 {
		t.Fatal(status)
	}
	if status, _, _ := c.Post(t, testenv.WebhooksPath+"relay", body(relaySecret), "X-Relay-Key: "+relaySecret, "X-Request-Id: d-relay"); status != 200 {
		t.Fatal(status)
	}
	c.Post(t, testenv.WebhooksPath+"relay", body(relaySecret), "X-Relay-Key: "+relaySecret+"x") // refused
	testenv.Eventually(t, "both dispatched", func() bool { return strings.Count(logText(t, r), `"outcome":"dispatched"`) == 2 })
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })
	postSigned(t, c, "gh", "d-dead", body(ghSecret))
	testenv.Eventually(t, "the dead letter", func() bool { return strings.Contains(logText(t, r), `"outcome":"dead"`) })
	api.FailWith(nil)

	// Everything anyone can read of the log.
	seen := map[string]string{"redis": logText(t, r)}
	for _, path := range []string{"api/summary", "api/deliveries", "api/deliveries?delivery=d-gh", "api/counts", "api/dead"} {
		status, _, answer := c.Do(t, http.MethodGet, "/ops/webhooks/"+path, "")
		if status != 200 {
			t.Fatalf("GET %s: %d %s", path, status, answer)
		}
		seen[path] = answer
	}
	seen["api/events"] = liveEvents(t, c, func() { postSigned(t, c, "gh", "d-live", body(ghSecret)) })
	env := cliEnv(r, "")
	seen["tail"] = runCLI(t, env, "", 0, "tail", "--no-follow", "--last", "100")
	seen["tail --json"] = runCLI(t, env, "", 0, "tail", "--no-follow", "--last", "100", "--json")

	for where, text := range seen {
		for _, secret := range []string{ghSecret, relaySecret, bodyToken} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q:\n%s", where, secret, text)
			}
		}
	}
	if !strings.Contains(seen["api/deliveries"], bodyMark) || !strings.Contains(seen["api/deliveries"], `\"token\":\"[redacted]\"`) {
		t.Errorf("the deliveries have no redacted preview:\n%s", seen["api/deliveries"])
	}
	if !strings.Contains(seen["api/deliveries?delivery=d-gh"], bodyMark) { // log_preview set with the CLI's --log-preview
		t.Errorf("d-gh's records have no preview:\n%s", seen["api/deliveries?delivery=d-gh"])
	}
	if !strings.Contains(seen["api/events"], `"delivery_id":"d-live"`) {
		t.Errorf("the live events missed d-live:\n%s", seen["api/events"])
	}
}

// logText is the delivery log as Redis holds it.
func logText(t *testing.T, r *testenv.Redis) string {
	t.Helper()
	var b strings.Builder
	for _, m := range r.Client.XRange(context.Background(), "codemie:webhooks:log", "-", "+").Val() {
		fmt.Fprintln(&b, m.Values)
	}
	return b.String()
}

// liveEvents opens the console's event stream, calls send once it is open,
// and returns what the stream says until a delivery of send's arrives.
func liveEvents(t *testing.T, c *testenv.Caddy, send func()) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/ops/webhooks/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	lines := bufio.NewScanner(io.TeeReader(resp.Body, &b))
	sent := false
	for lines.Scan() {
		switch line := lines.Text(); {
		case line == "event: summary" && !sent:
			sent = true
			send()
		case strings.HasPrefix(line, "data: ") && strings.Contains(line, `"outcome":"dispatched"`) && sent:
			return b.String()
		}
	}
	t.Fatalf("the stream ended: %v\n%s", lines.Err(), b.String())
	return ""
}

func TestTail(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "a", "workflow", "wf-1")
	addWebhook(t, r, "b", "workflow", "wf-2")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	// one after the other, so that the log's order is known
	postSigned(t, c, "a", "d-a", `{}`)
	testenv.Eventually(t, "a's two records", func() bool { return strings.Count(logText(t, r), "outcome") == 2 })
	postSigned(t, c, "b", "d-b", `{}`)
	testenv.Eventually(t, "four records", func() bool { return strings.Count(logText(t, r), "outcome") == 4 })

	env := cliEnv(r, "")
	out := runCLI(t, env, "", 0, "tail", "--no-follow", "--webhook", "a", "--outcome", "dispatched", "--json")
	var rec struct {
		DeliveryID string `json:"delivery_id"`
		Outcome    string `json:"outcome"`
		Attempts   int    `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rec); err != nil || rec.DeliveryID != "d-a" || rec.Outcome != "dispatched" || rec.Attempts != 1 {
		t.Errorf("tail --webhook a --outcome dispatched: %v\n%s", err, out)
	}
	out = runCLI(t, env, "", 0, "tail", "--no-follow", "--last", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "d-b") || !strings.Contains(lines[1], "dispatched") {
		t.Errorf("the last two records, oldest first:\n%s", out)
	}
	runCLI(t, env, "", 2, "tail", "--outcome", "delivered")
}
