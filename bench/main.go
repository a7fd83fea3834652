// Command bench measures the edge against plain Caddy in one run, on this
// machine: Go micro-benchmarks, then a load run against four Caddy
// configurations built from this same binary, alternated round after
// round to cancel drift:
//
//	a   respond 200                          the ceiling
//	b   reverse_proxy to a local stub        what users put there without us
//	c   codemie_webhooks, delivery async     1 KB GitHub-signed, unique delivery ids, real Redis;
//	                                         its workers dispatch every webhook to the stub meanwhile
//	c0  the same with workers off            accepting only: another instance would dispatch
//	d   codemie_webhooks, delivery sync      one workflow call to the stub per request
//
// It also counts Redis round trips per request (INFO commandstats) and the
// resident memory with 100,000 cached integrations. Last, the dispatch
// section runs one more instance (w) in front of a stub whose calls take
// -call-time, as LLM calls do: webhooks delivered per second, a quiet
// webhook's delay behind another's backlog, and memory per dispatch in
// flight. It prints a table and writes bench/results.json. It starts its
// own redis-server and stubs.
//
// The load keeps 64 connections busy: enough that every configuration
// keeps both cores of the reference machine busy, so that requests per
// second measure what a request costs rather than how long it waits. (At
// 16, the processes' CPU times left about a quarter of the machine unused
// under c0, with Redis's single thread and the one pipelined connection to
// it in the path, and a sixth under b.) The ratios are medians of each
// round's own.
//
// Usage: go run ./bench [-duration 4s] [-rounds 3] [-concurrency 64]
// [-call-time 2s] [-dispatch-workers N] [-dispatch=false]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/codemie-edge/caddy-webhooks"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "caddy" {
		os.Args = os.Args[1:]
		caddycmd.Main()
		return
	}
	opts := options{}
	flag.DurationVar(&opts.duration, "duration", 4*time.Second, "length of one measured slot")
	flag.IntVar(&opts.rounds, "rounds", 3, "rounds of the five configurations")
	flag.IntVar(&opts.concurrency, "concurrency", 64, "connections kept busy by the load generator")
	flag.IntVar(&opts.integrations, "integrations", 100_000, "integrations for the memory measurement")
	flag.BoolVar(&opts.micro, "micro", true, "run the Go micro-benchmarks first")
	flag.StringVar(&opts.out, "out", "bench/results.json", "where to write the results")
	flag.DurationVar(&opts.callTime, "call-time", 2*time.Second, "how long each call to the dispatch section's stub takes")
	flag.IntVar(&opts.dispatchWorkers, "dispatch-workers", 0, "the workers option of the dispatch section's instance (0: the default)")
	flag.DurationVar(&opts.dispatchWindow, "dispatch-window", 30*time.Second, "how long each dispatch measurement may take at most")
	flag.BoolVar(&opts.dispatch, "dispatch", true, "run the dispatch section")
	flag.StringVar(&opts.pprof, "pprof", "", "write CPU profiles of configurations b, c, c0 and d, taken during their first slot, to this directory")
	flag.Parse()
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	duration     time.Duration
	rounds       int
	concurrency  int
	integrations int
	micro        bool
	out          string
	pprof        string
	// The dispatch section.
	dispatch        bool
	callTime        time.Duration
	dispatchWorkers int
	dispatchWindow  time.Duration
}

// Results is what bench/results.json holds.
type Results struct {
	Machine     Machine              `json:"machine"`
	Micro       []MicroResult        `json:"micro"`
	Load        map[string]LoadStats `json:"load"`
	Ratios      map[string]float64   `json:"ratios"`
	RoundTrips  RoundTrips           `json:"redis_round_trips"`
	Memory      Memory               `json:"memory"`
	Dispatch    *Dispatch            `json:"dispatch,omitempty"`
	Goals       []Goal               `json:"goals"`
	Concurrency int                  `json:"concurrency"`
	SlotSeconds float64              `json:"slot_seconds"`
	Rounds      int                  `json:"rounds"`
}

func run(opts options) error {
	res := Results{Machine: machine(), Concurrency: opts.concurrency, SlotSeconds: opts.duration.Seconds(), Rounds: opts.rounds}
	if opts.micro {
		micro, err := runMicro()
		if err != nil {
			return err
		}
		res.Micro = micro
	}
	env, err := startEnv()
	if err != nil {
		return err
	}
	env.profile, env.admins = opts.pprof != "", map[string]string{}
	defer env.stop()

	fmt.Printf("\nload: %d rounds of %v per configuration, %d connections, GOMAXPROCS %d\n",
		opts.rounds, opts.duration, opts.concurrency, runtime.GOMAXPROCS(0))
	if res.Load, res.RoundTrips, err = env.loadRun(opts); err != nil {
		return err
	}
	res.Ratios = ratios(res.Load)
	if res.Memory, err = env.memoryRun(opts); err != nil {
		return err
	}
	if opts.dispatch {
		fmt.Printf("\ndispatch: calls of %v, workers %s\n", opts.callTime, orDefault(opts.dispatchWorkers))
		env.workers = opts.dispatchWorkers
		d, err := env.dispatchRun(opts)
		if err != nil {
			return err
		}
		res.Dispatch = &d
	}
	res.Goals = goals(res)
	printTable(res)
	return writeJSON(opts.out, res)
}

func orDefault(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
