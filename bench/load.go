package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoadStats are one configuration's figures over every round.
type LoadStats struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	// RoundRPS are the requests per second of each round.
	RoundRPS []float64 `json:"round_rps"`
	// CPU is the processor time a request cost, by process, over every
	// round: steadier than requests per second on a shared machine.
	CPU CPUPerRequest `json:"cpu_us_per_request"`
}

// CPUPerRequest is processor time per request, in µs, from the processes'
// user and system times (/proc/<pid>/stat).
type CPUPerRequest struct {
	// Caddy is the configuration's own Caddy process.
	Caddy float64 `json:"caddy"`
	// Redis is the redis-server every configuration shares.
	Redis float64 `json:"redis"`
	// Load is this process: the load generator and, for b, c and d, the
	// stub upstream they call.
	Load float64 `json:"load"`
}

// cpuTimes are processes' processor times, in clock ticks.
type cpuTimes struct{ caddy, redis, load int64 }

func (t cpuTimes) sub(u cpuTimes) cpuTimes {
	return cpuTimes{t.caddy - u.caddy, t.redis - u.redis, t.load - u.load}
}

func (t cpuTimes) add(u cpuTimes) cpuTimes {
	return cpuTimes{t.caddy + u.caddy, t.redis + u.redis, t.load + u.load}
}

// perRequest is t spread over n requests, in µs.
func (t cpuTimes) perRequest(n int64) CPUPerRequest {
	if n == 0 {
		return CPUPerRequest{}
	}
	us := func(ticks int64) float64 { return float64(ticks) * 1e6 / clockTicks / float64(n) }
	return CPUPerRequest{Caddy: us(t.caddy), Redis: us(t.redis), Load: us(t.load)}
}

// RoundTrips are Redis round trips per request, from INFO commandstats:
// EVALSHA and HGETALL calls (the only commands the request path
// sends), less what the workers send meanwhile when idle.
type RoundTrips struct {
	AcceptedAsync float64 `json:"accepted_async"`
	AcceptedSync  float64 `json:"accepted_sync"`
	Rejected      float64 `json:"rejected"`
	// AcceptedPerRead is how many requests c0 accepted per read Redis made
	// (INFO stats total_reads_processed): concurrent requests' scripts
	// share round trips, so a request costs Redis a fraction of one.
	AcceptedPerRead float64 `json:"accepted_async_per_redis_read"`
}

// configurations are measured in this order, round after round.
var configurations = []string{"a", "b", "c", "c0", "d"}

// requestPathCommands are the commands a request can send (a script Redis
// has lost is loaded again with SCRIPT LOAD, then run with EVALSHA). The
// delivery log's batches, off the request's path, are EVALs.
var requestPathCommands = []string{"evalsha", "hgetall"}

var deliveries atomic.Int64

// request builds one webhook request for url: signed (or not), with a
// delivery id of its own.
func (e *env) request(url string, signed bool) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(e.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", "load-"+strconv.FormatInt(deliveries.Add(1), 10))
	if signed {
		req.Header.Set("X-Hub-Signature-256", e.sig)
	}
	return req
}

// load keeps conc connections busy for dur with requests from next, and
// returns every latency and the count of answers other than want.
func load(dur time.Duration, conc int, want int, next func() *http.Request) ([]time.Duration, int64) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		all  []time.Duration
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	deadline := time.Now().Add(dur)
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(deadline) {
				req := next()
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat = append(lat, time.Since(start))
				if err != nil || resp.StatusCode != want {
					errs.Add(1)
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs.Load()
}

func stats(lat []time.Duration, errs int64, total time.Duration) LoadStats {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)]) / float64(time.Millisecond)
	}
	return LoadStats{Requests: int64(len(lat)), Errors: errs, RPS: float64(len(lat)) / total.Seconds(),
		P50ms: pct(0.50), P99ms: pct(0.99), P999ms: pct(0.999)}
}

// requestPathCalls sums the request path's commands in a commandstats diff.
func requestPathCalls(before, after map[string]int64) int64 {
	var n int64
	for _, c := range requestPathCommands {
		n += after[c] - before[c]
	}
	return n
}

// settle waits until configuration l's workers have dispatched what it
// took in, so that the next slot runs on a quiet machine; what nobody
// dispatches (workers off) is dropped.
func (e *env) settle(l string) error {
	ctx := context.Background()
	stream := space(l).Queue()
	if l == "c0" {
		// the stream and its schedule: lanes, ring
		iter := e.rdb.Scan(ctx, 0, stream+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := e.rdb.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for e.rdb.XLen(ctx, stream).Val() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("configuration %s did not drain its queue", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// loadRun starts the configurations and measures them in turn.
func (e *env) loadRun(opts options) (map[string]LoadStats, RoundTrips, error) {
	letters := configurations
	urls := map[string]string{}
	pids := map[string]int{}
	for _, l := range letters {
		addr, cmd, err := e.startCaddy(l)
		if err != nil {
			return nil, RoundTrips{}, err
		}
		urls[l] = "http://" + addr + "/code-assistant-api/v1/webhooks/bench"
		pids[l] = cmd.Process.Pid
	}
	redisPid, err := e.redisPid()
	if err != nil {
		return nil, RoundTrips{}, err
	}
	times := func(l string) cpuTimes {
		return cpuTimes{caddy: processTicks(pids[l]), redis: processTicks(redisPid), load: processTicks(os.Getpid())}
	}
	for _, l := range letters { // warm up: connections, caches, scripts
		load(time.Second, opts.concurrency, http.StatusOK, func() *http.Request { return e.request(urls[l], true) })
		if err := e.settle(l); err != nil {
			return nil, RoundTrips{}, err
		}
	}

	// What the idle workers send, per second, to subtract.
	before, err := e.commandCalls()
	if err != nil {
		return nil, RoundTrips{}, err
	}
	idle := 2 * time.Second
	time.Sleep(idle)
	after, err := e.commandCalls()
	if err != nil {
		return nil, RoundTrips{}, err
	}
	background := float64(requestPathCalls(before, after)) / idle.Seconds()
	backgroundReads := float64(after[readsStat]-before[readsStat]) / idle.Seconds()

	lat := map[string][]time.Duration{}
	rounds := map[string][]float64{}
	errs := map[string]int64{}
	calls := map[string]float64{}
	reads := map[string]float64{}
	cpu := map[string]cpuTimes{}
	for round := range opts.rounds {
		for _, l := range letters {
			before, _ := e.commandCalls()
			cpuBefore := times(l)
			if round == 0 && opts.pprof != "" && l != "a" {
				go e.cpuProfile(l, opts.duration-time.Second, opts.pprof)
			}
			start := time.Now()
			got, bad := load(opts.duration, opts.concurrency, http.StatusOK, func() *http.Request { return e.request(urls[l], true) })
			took := time.Since(start)
			cpu[l] = cpu[l].add(times(l).sub(cpuBefore))
			after, _ := e.commandCalls()
			lat[l] = append(lat[l], got...)
			rounds[l] = append(rounds[l], float64(len(got))/took.Seconds())
			errs[l] += bad
			calls[l] += float64(requestPathCalls(before, after)) - background*took.Seconds()
			reads[l] += float64(after[readsStat]-before[readsStat]) - backgroundReads*took.Seconds()
			fmt.Printf("  round %d  %-2s %8.0f req/s  %d errors\n", round+1, l, rounds[l][round], bad)
			if err := e.settle(l); err != nil {
				return nil, RoundTrips{}, err
			}
		}
	}
	out := map[string]LoadStats{}
	for _, l := range letters {
		st := stats(lat[l], errs[l], time.Duration(opts.rounds)*opts.duration)
		st.RoundRPS = rounds[l]
		st.CPU = cpu[l].perRequest(st.Requests)
		out[l] = st
	}
	rt := RoundTrips{
		AcceptedAsync: calls["c0"] / float64(out["c0"].Requests),
		AcceptedSync:  calls["d"] / float64(out["d"].Requests),
	}
	if reads["c0"] > 0 {
		rt.AcceptedPerRead = float64(out["c0"].Requests) / reads["c0"]
	}

	// Rejected before the guard: a wrong signature, an id already seen unknown.
	unknown := urls["c"][:len(urls["c"])-len("bench")] + "nope"
	load(100*time.Millisecond, 1, http.StatusBadRequest, func() *http.Request { return e.request(unknown, true) })
	before, _ = e.commandCalls()
	start := time.Now()
	var n atomic.Int64
	got1, _ := load(time.Second, opts.concurrency, http.StatusUnauthorized, func() *http.Request { n.Add(1); return e.request(urls["c"], false) })
	got2, _ := load(time.Second, opts.concurrency, http.StatusBadRequest, func() *http.Request { return e.request(unknown, true) })
	after, _ = e.commandCalls()
	rejected := float64(requestPathCalls(before, after)) - background*time.Since(start).Seconds()
	rt.Rejected = max(rejected, 0) / float64(len(got1)+len(got2))
	return out, rt, nil
}

// Memory is the resident memory of an instance before and after it has
// served a request to each of many integrations.
type Memory struct {
	Integrations int     `json:"integrations"`
	RSSBeforeMB  float64 `json:"rss_before_mb"`
	RSSAfterMB   float64 `json:"rss_after_mb"`
	// RSSSettledMB is the resident memory once the burst's garbage is
	// collected and returned to the OS: the cache's steady state.
	RSSSettledMB float64 `json:"rss_settled_mb"`
	CacheBound   int     `json:"cache_bound"`
}

// memoryRun writes opts.integrations integrations and requests each once
// (unsigned: answered 401, but loaded and cached).
func (e *env) memoryRun(opts options) (Memory, error) {
	ctx := context.Background()
	m := Memory{Integrations: opts.integrations, CacheBound: 100_000}
	for i := 0; i < opts.integrations; i += 1000 {
		_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < min(i+1000, opts.integrations); j++ {
				p.HSet(ctx, space("c").Record("mem-"+strconv.Itoa(j)), "is_enabled", "true", "resource_type", "workflow",
					"resource_id", "wf-"+strconv.Itoa(j), "github_webhook_secret", benchSecret+strconv.Itoa(j),
					"alias", "integration number "+strconv.Itoa(j), "user_id", "user-"+strconv.Itoa(j%100))
			}
			return nil
		})
		if err != nil {
			return m, err
		}
	}
	addr, cmd, err := e.startCaddy("c")
	if err != nil {
		return m, err
	}
	before, err := rss(cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	var next atomic.Int64
	base := "http://" + addr + "/code-assistant-api/v1/webhooks/mem-"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: opts.concurrency}}
	var wg sync.WaitGroup
	var unexpected atomic.Int64
	for range opts.concurrency {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(opts.integrations); i = next.Add(1) - 1 {
				resp, err := client.Do(e.request(base+strconv.FormatInt(i, 10), false))
				if err != nil {
					unexpected.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					unexpected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := unexpected.Load(); n > 0 {
		return m, fmt.Errorf("memory run: %d requests were not answered 401", n)
	}
	after, err := rss(cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	settled := after
	for range 30 { // until it stops shrinking, up to 30s
		time.Sleep(time.Second)
		now, err := rss(cmd.Process.Pid)
		if err != nil {
			return m, err
		}
		if settled-now < 1<<20 {
			settled = min(settled, now)
			break
		}
		settled = now
	}
	m.RSSBeforeMB, m.RSSAfterMB, m.RSSSettledMB = float64(before)/(1<<20), float64(after)/(1<<20), float64(settled)/(1<<20)
	return m, nil
}

// cpuProfile saves a CPU profile of configuration l, taken for d, to dir.
func (e *env) cpuProfile(l string, d time.Duration, dir string) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.admins[l], max(int(d.Seconds()), 1))
	resp, err := http.Get(url)
	if err != nil {
		fmt.Println("  profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(dir, "cpu-"+l+".pprof"))
	if err != nil {
		fmt.Println("  profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
