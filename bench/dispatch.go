package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Dispatch is the dispatch section: one instance delivering to a CodeMie
// stand-in whose every call takes CallSeconds, as an LLM call does.
type Dispatch struct {
	CallSeconds float64 `json:"call_seconds"`
	// Workers is the workers option the instance ran with; 0: its default.
	Workers int `json:"workers"`
	// Queued webhooks spread over Webhooks webhooks, and how many were
	// delivered per second, from the first request to the last call's end
	// (or within WindowSeconds, if not all were delivered by then).
	Queued           int     `json:"queued"`
	Webhooks         int     `json:"webhooks"`
	Delivered        int     `json:"delivered"`
	DeliveredPerSec  float64 `json:"delivered_per_second"`
	MaxInFlight      int64   `json:"max_in_flight"`
	WindowSeconds    float64 `json:"window_seconds"`
	BytesPerInFlight float64 `json:"rss_bytes_per_in_flight_dispatch"`
	// Backlog webhooks were queued on one webhook, then one on a quiet
	// webhook; QuietDelaySeconds is how long the quiet one took to be
	// delivered, capped at WindowSeconds (QuietDelivered false).
	Backlog           int     `json:"backlog"`
	QuietDelaySeconds float64 `json:"quiet_delay_seconds"`
	QuietDelivered    bool    `json:"quiet_delivered"`
}

// slowStub is the CodeMie stand-in of the dispatch section: every call
// takes callTime, and it records when each delivery id's call ended.
type slowStub struct {
	callTime time.Duration
	inFlight atomic.Int64
	maxIn    atomic.Int64
	mu       sync.Mutex
	done     map[string]time.Time
}

func (s *slowStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	n := s.inFlight.Add(1)
	for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
	}
	time.Sleep(s.callTime)
	s.inFlight.Add(-1)
	s.mu.Lock()
	s.done[r.Header.Get("Idempotency-Key")] = time.Now()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"execution_id":"bench","id":"bench"}`)
}

func (s *slowStub) delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done)
}

func (s *slowStub) doneAt(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.done[id]
	return t, ok
}

// dispatchRun measures the dispatch section with a fresh instance (letter
// w) in front of a slow stub.
func (e *env) dispatchRun(opts options) (Dispatch, error) {
	res := Dispatch{CallSeconds: opts.callTime.Seconds(), Workers: opts.dispatchWorkers, Queued: 1000, Webhooks: 10,
		Backlog: 5000, WindowSeconds: opts.dispatchWindow.Seconds()}
	stub := &slowStub{callTime: opts.callTime, done: map[string]time.Time{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: stub}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	e.slowAt = l.Addr().String()

	// Each webhook triggers a workflow of its own, as teams' webhooks do:
	// max_in_flight bounds each.
	ctx := context.Background()
	for i := range res.Webhooks + 1 {
		err := e.rdb.HSet(ctx, space("w").Record(dispatchWebhook(i)), "is_enabled", "true", "resource_type", "workflow",
			"resource_id", "wf-"+strconv.Itoa(i), "github_webhook_secret", benchSecret).Err()
		if err != nil {
			return res, err
		}
	}
	addr, cmd, err := e.startCaddy("w")
	if err != nil {
		return res, err
	}
	idle, _ := rss(cmd.Process.Pid)

	// Throughput: res.Queued webhooks over res.Webhooks webhooks.
	start := time.Now()
	e.post(addr, res.Queued, 64, func(i int) (string, string) { return dispatchWebhook(i % res.Webhooks), "spread-" + strconv.Itoa(i) })
	// The resident memory is sampled when the most dispatches are in
	// flight; what it grew by since the instance idled, per dispatch, is
	// an upper bound of a dispatch's cost (the intake's garbage counts too).
	var busy, busiest int64
	for time.Since(start) < opts.dispatchWindow && stub.delivered() < res.Queued {
		if n := stub.inFlight.Load(); n > busiest {
			busiest = n
			busy, _ = rss(cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Delivered, res.MaxInFlight = stub.delivered(), stub.maxIn.Load()
	res.DeliveredPerSec = float64(res.Delivered) / time.Since(start).Seconds()
	if busiest > 0 && busy > idle {
		res.BytesPerInFlight = float64(busy-idle) / float64(busiest)
	}

	// Fairness: a backlog on one webhook, then one quiet webhook.
	quiet := dispatchWebhook(res.Webhooks)
	e.post(addr, res.Backlog, 64, func(i int) (string, string) { return dispatchWebhook(0), "backlog-" + strconv.Itoa(i) })
	sent := time.Now()
	e.post(addr, 1, 1, func(int) (string, string) { return quiet, "quiet" })
	for time.Since(sent) < opts.dispatchWindow {
		if t, ok := stub.doneAt("quiet"); ok {
			res.QuietDelaySeconds, res.QuietDelivered = t.Sub(sent).Seconds(), true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !res.QuietDelivered {
		res.QuietDelaySeconds = opts.dispatchWindow.Seconds()
	}
	return res, nil
}

func dispatchWebhook(i int) string { return "dw-" + strconv.Itoa(i) }

// post sends n signed webhooks to the instance at addr over conc
// connections; which(i) names the i-th one's webhook and delivery id.
func (e *env) post(addr string, n, conc int, which func(i int) (webhook, delivery string)) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				id, delivery := which(i)
				req := e.request(fmt.Sprintf("http://%s/code-assistant-api/v1/webhooks/%s", addr, id), true)
				req.Header.Set("X-GitHub-Delivery", delivery)
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
}
