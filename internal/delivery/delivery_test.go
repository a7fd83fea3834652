package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// scripted is a DispatchFunc that records every attempt per delivery id and
// answers what its function says.
type scripted struct {
	mu       sync.Mutex
	attempts map[string]int
	answer   func(job dispatch.Job, attempt int) dispatch.Result
	running  atomic.Int32
	peak     atomic.Int32
}

func newScripted(answer func(dispatch.Job, int) dispatch.Result) *scripted {
	return &scripted{attempts: map[string]int{}, answer: answer}
}

func (s *scripted) dispatch(_ context.Context, job dispatch.Job) dispatch.Result {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.mu.Lock()
	s.attempts[job.DeliveryID]++
	attempt := s.attempts[job.DeliveryID]
	s.mu.Unlock()
	return s.answer(job, attempt)
}

func (s *scripted) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[id]
}

func succeed(dispatch.Job, int) dispatch.Result { return dispatch.Result{Class: dispatch.Success} }

var testConfig = Config{
	Space: keyspace.Space{Prefix: "t:"}, MaxLength: 1000, MaxAge: time.Hour, Attempts: 4,
	FirstBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	ClaimAfter: 200 * time.Millisecond, Workers: 4, Consumer: "test-a",
}

func entry(delivery string) Entry {
	return NewEntry(dispatch.Job{WebhookID: "wh", ResourceType: "workflow", ResourceID: "wf", UserID: "u",
		DeliveryID: delivery, Body: []byte("body of " + delivery + "\xff")},
		http.Header{"X-Github-Event": {"push"}, "X-Gitlab-Token": {"secret"}}, nil, time.Now())
}

func start(t *testing.T, q *Queue, s *scripted, events Events) *Workers {
	t.Helper()
	w := q.Start(s.dispatch, events, zap.NewNop())
	t.Cleanup(func() { w.Stop(time.Second) })
	return w
}

func TestDeliver(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	var delivered atomic.Int32
	var gotBody []byte
	var mu sync.Mutex
	s := newScripted(func(job dispatch.Job, _ int) dispatch.Result {
		mu.Lock()
		if job.DeliveryID == "d-0" {
			gotBody = job.Body
		}
		mu.Unlock()
		return dispatch.Result{Class: dispatch.Success}
	})
	start(t, q, s, Events{Delivered: func(time.Duration) { delivered.Add(1) }})
	ctx := context.Background()
	for i := range 20 {
		if err := q.Enqueue(ctx, redisconn.Bound{}, entry(fmt.Sprint("d-", i))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "20 deliveries", func() bool { return delivered.Load() == 20 })
	for i := range 20 {
		if n := s.count(fmt.Sprint("d-", i)); n != 1 {
			t.Errorf("d-%d dispatched %d times", i, n)
		}
	}
	mu.Lock()
	if string(gotBody) != "body of d-0\xff" {
		t.Errorf("body %q: not byte-exact", gotBody)
	}
	mu.Unlock()
	testenv.Eventually(t, "the stream to empty", func() bool {
		st, err := q.Stats(ctx)
		return err == nil && st.Length == 0 && st.Pending == 0
	})
	if p := s.peak.Load(); p > int32(testConfig.Workers) {
		t.Errorf("%d dispatches at once, workers is %d", p, testConfig.Workers)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	var retried, delivered atomic.Int32
	s := newScripted(func(_ dispatch.Job, attempt int) dispatch.Result {
		if attempt < 3 {
			return dispatch.Result{Class: dispatch.Retryable, Status: 503, Reason: "busy"}
		}
		return dispatch.Result{Class: dispatch.Success}
	})
	start(t, q, s, Events{Retried: func() { retried.Add(1) }, Delivered: func(time.Duration) { delivered.Add(1) }})
	for i := range 5 {
		if err := q.Enqueue(context.Background(), redisconn.Bound{}, entry(fmt.Sprint("r-", i))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "5 deliveries", func() bool { return delivered.Load() == 5 })
	for i := range 5 {
		if n := s.count(fmt.Sprint("r-", i)); n != 3 {
			t.Errorf("r-%d: %d attempts, want 3", i, n)
		}
	}
	if n := retried.Load(); n != 10 {
		t.Errorf("%d retries, want 10", n)
	}
	testenv.Eventually(t, "the queue to empty", func() bool {
		st, _ := q.Stats(context.Background())
		return st.Length == 0 && st.Retrying == 0 && st.Pending == 0
	})
}

func TestDeadLetters(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	var dead atomic.Int32
	final := true
	var mu sync.Mutex
	s := newScripted(func(job dispatch.Job, _ int) dispatch.Result {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case job.DeliveryID == "always-500":
			return dispatch.Result{Class: dispatch.Retryable, Step: "create workflow execution", Status: 500, Reason: "create workflow execution: CodeMie answered 500"}
		case final:
			return dispatch.Result{Class: dispatch.Final, Step: "create workflow execution", Status: 404, Reason: "create workflow execution: CodeMie answered 404"}
		}
		return dispatch.Result{Class: dispatch.Success}
	})
	var delivered atomic.Int32
	start(t, q, s, Events{Dead: func() { dead.Add(1) }, Delivered: func(time.Duration) { delivered.Add(1) }})
	ctx := context.Background()
	for _, id := range []string{"final-1", "final-2", "always-500"} {
		if err := q.Enqueue(ctx, redisconn.Bound{}, entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "3 dead letters", func() bool { return dead.Load() == 3 })
	if n := s.count("final-1"); n != 1 {
		t.Errorf("a final failure was attempted %d times", n)
	}
	if n := s.count("always-500"); n != testConfig.Attempts {
		t.Errorf("a retryable failure was attempted %d times, want %d", n, testConfig.Attempts)
	}

	letters, next, err := q.DeadLetters(ctx, "", 2)
	if err != nil || len(letters) != 2 || next == "" {
		t.Fatalf("first page: %d letters, next %q, %v", len(letters), next, err)
	}
	rest, next2, err := q.DeadLetters(ctx, next, 2)
	if err != nil || len(rest) != 1 || next2 != "" {
		t.Fatalf("second page: %d letters, next %q, %v", len(rest), next2, err)
	}
	all := append(letters, rest...)
	byDelivery := map[string]DeadLetter{}
	for _, dl := range all {
		byDelivery[dl.DeliveryID] = dl
	}
	f := byDelivery["final-1"]
	if f.Attempts != 1 || f.LastStatus != 404 || f.LastStep != "create workflow execution" || !strings.Contains(f.LastReason, "404") ||
		f.WebhookID != "wh" || f.BodyBytes != len("body of final-1\xff") || f.Headers["X-Github-Event"] != "push" {
		t.Errorf("dead letter %+v", f)
	}
	if _, ok := f.Headers["X-Gitlab-Token"]; ok {
		t.Error("a secret header was kept")
	}
	if a := byDelivery["always-500"]; a.Attempts != testConfig.Attempts || a.LastStatus != 500 {
		t.Errorf("exhausted dead letter %+v", a)
	}

	// Replay delivers; delete drops.
	mu.Lock()
	final = false
	mu.Unlock()
	if err := q.Replay(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the replayed entry to be delivered", func() bool { return delivered.Load() == 1 })
	if err := q.Replay(ctx, f.ID); !errors.Is(err, ErrNoSuchEntry) {
		t.Errorf("replaying twice: %v, want ErrNoSuchEntry", err)
	}
	if err := q.DeleteDead(ctx, byDelivery["final-2"].ID); err != nil {
		t.Fatal(err)
	}
	if n, _, err := q.ReplayAll(ctx); err != nil || n != 1 {
		t.Errorf("replay-all: %d, %v; want the 1 left", n, err)
	}
	testenv.Eventually(t, "replay-all to deliver", func() bool { return s.count("always-500") > testConfig.Attempts })
}

func TestQueueFull(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxLength = 2
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	for i := range 2 {
		if err := q.Enqueue(ctx, redisconn.Bound{}, entry(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, redisconn.Bound{}, entry("3")); !errors.Is(err, ErrFull) {
		t.Errorf("third entry: %v, want ErrFull", err)
	}
	if n := r.Client.XLen(ctx, "{t:queue}").Val(); n != 2 {
		t.Errorf("stream length %d, want 2: nothing dropped, nothing added", n)
	}
	r.Stop()
	if err := q.Enqueue(ctx, redisconn.Bound{}, entry("4")); err == nil || errors.Is(err, ErrFull) {
		t.Errorf("Redis down: %v, want an error", err)
	}
}

func TestExpired(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	var dead atomic.Int32
	s := newScripted(succeed)
	start(t, q, s, Events{Dead: func() { dead.Add(1) }})
	old := entry("old")
	old.ReceivedAt = time.Now().Add(-2 * time.Hour)
	if err := q.Enqueue(context.Background(), redisconn.Bound{}, old); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the expired entry to be buried", func() bool { return dead.Load() == 1 })
	if s.count("old") != 0 {
		t.Error("an expired entry was dispatched")
	}
	letters, _, _ := q.DeadLetters(context.Background(), "", 10)
	if len(letters) != 1 || letters[0].LastStep != "queue" || !strings.HasPrefix(letters[0].LastReason, "expired after") {
		t.Errorf("dead letters %+v", letters)
	}
}

func TestReclaimFromSilentConsumer(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	if err := q.Enqueue(ctx, redisconn.Bound{}, entry("orphan")); err != nil {
		t.Fatal(err)
	}
	// An instance takes the entry and goes silent, as a killed process does.
	if got, _, err := q.take(ctx, 10, "ghost"); err != nil || len(got) != 1 {
		t.Fatalf("ghost take: %v %v", got, err)
	}
	var delivered atomic.Int32
	s := newScripted(succeed)
	start(t, q, s, Events{Delivered: func(time.Duration) { delivered.Add(1) }})
	testenv.Eventually(t, "the orphan to be reclaimed and delivered", func() bool { return delivered.Load() == 1 })
	if n := s.count("orphan"); n != 1 {
		t.Errorf("orphan dispatched %d times", n)
	}
}

func TestStopWaitsForInFlight(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	gate, started := make(chan struct{}), make(chan struct{}, 1)
	s := newScripted(func(dispatch.Job, int) dispatch.Result {
		started <- struct{}{}
		<-gate
		return dispatch.Result{Class: dispatch.Success}
	})
	w := q.Start(s.dispatch, Events{}, zap.NewNop())
	if err := q.Enqueue(context.Background(), redisconn.Bound{}, entry("slow")); err != nil {
		t.Fatal(err)
	}
	<-started
	stopped := make(chan struct{})
	go func() { w.Stop(time.Minute); close(stopped) }()
	close(gate)
	<-stopped
	if n := r.Client.XLen(context.Background(), "{t:queue}").Val(); n != 0 {
		t.Errorf("Stop returned before the in-flight entry was finished: stream length %d", n)
	}
}

func TestStopHandsBackAfterDrain(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	started := make(chan struct{}, 1)
	stuck := newScripted(func(dispatch.Job, int) dispatch.Result {
		started <- struct{}{}
		select {} // never answers: only the drain's cancel ends it
	})
	w := q.Start(func(ctx context.Context, job dispatch.Job) dispatch.Result {
		go stuck.dispatch(ctx, job)
		<-ctx.Done()
		return dispatch.Result{Class: dispatch.Retryable, Reason: "cancelled"}
	}, Events{}, zap.NewNop())
	if err := q.Enqueue(context.Background(), redisconn.Bound{}, entry("stuck")); err != nil {
		t.Fatal(err)
	}
	<-started
	w.Stop(50 * time.Millisecond)

	cfg := testConfig
	cfg.Consumer = "test-b"
	var delivered atomic.Int32
	s := newScripted(succeed)
	start(t, NewQueue(r.Client, cfg), s, Events{Delivered: func(time.Duration) { delivered.Add(1) }})
	testenv.Eventually(t, "the handed-back entry to be delivered", func() bool { return delivered.Load() == 1 })
	if st, _ := q.Stats(context.Background()); st.Dead != 0 {
		t.Errorf("%d dead letters: a cancelled attempt must not count", st.Dead)
	}
}

func TestHeartbeatKeepsLongDispatch(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.ClaimAfter = time.Second // room for a loaded machine: the heartbeat runs every 333ms
	q := NewQueue(r.Client, cfg)
	gate, started := make(chan struct{}), make(chan struct{}, 1)
	long := newScripted(func(dispatch.Job, int) dispatch.Result {
		started <- struct{}{}
		<-gate
		return dispatch.Result{Class: dispatch.Success}
	})
	start(t, q, long, Events{})
	if err := q.Enqueue(context.Background(), redisconn.Bound{}, entry("long")); err != nil {
		t.Fatal(err)
	}
	<-started
	cfg.Consumer = "test-b"
	other := newScripted(succeed)
	start(t, NewQueue(r.Client, cfg), other, Events{})

	// For three claim_after periods the entry stays with its consumer.
	until := time.Now().Add(3 * cfg.ClaimAfter)
	for time.Now().Before(until) {
		n, err := r.Client.ZCard(context.Background(), "{t:queue}:leases").Result()
		if err != nil || n != 1 || long.count("long") != 1 {
			t.Fatalf("%d leases, %v, %d attempts: want the entry held by its first taker", n, err, long.count("long"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(gate)
	testenv.Eventually(t, "the entry to finish", func() bool { return r.Client.XLen(context.Background(), "{t:queue}").Val() == 0 })
	if n := other.count("long"); n != 0 {
		t.Errorf("another consumer dispatched a held entry %d times", n)
	}
}

func TestBackoff(t *testing.T) {
	w := &Workers{q: &Queue{cfg: Config{FirstBackoff: time.Second, MaxBackoff: time.Hour}}}
	for attempt := 1; attempt <= 100; attempt++ {
		ceiling := time.Hour
		if attempt <= 13 { // 2^12 s is past the hour
			ceiling = min(time.Second<<(attempt-1), time.Hour)
		}
		for range 50 {
			if d := w.backoff(attempt, 0); d < 0 || d > ceiling {
				t.Fatalf("attempt %d: wait %v outside [0, %v]", attempt, d, ceiling)
			}
		}
	}
	if d := w.backoff(1, 30*time.Second); d != 30*time.Second {
		t.Errorf("Retry-After 30s: wait %v", d)
	}
	if d := w.backoff(1, 5*time.Hour); d != time.Hour {
		t.Errorf("Retry-After beyond the cap: wait %v, want the cap", d)
	}
	// No attempt before: the first bound (a negative count panicked).
	for _, attempt := range []int{0, -1, math.MinInt} {
		if d := w.backoff(attempt, 0); d < 0 || d > time.Second {
			t.Errorf("attempt %d: wait %v outside [0, 1s]", attempt, d)
		}
	}
	// The largest cap: drawing up to it must not overflow (it panicked).
	w.q.cfg.FirstBackoff, w.q.cfg.MaxBackoff = math.MaxInt64, math.MaxInt64
	if d := w.backoff(1, 0); d < 0 {
		t.Errorf("the largest cap: wait %v", d)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := entry("rt")
	e.Attempts = 3
	values := e.values()
	fields := map[string]any{}
	for i := 0; i < len(values); i += 2 {
		switch v := values[i+1].(type) {
		case []byte:
			fields[values[i].(string)] = string(v)
		default:
			fields[values[i].(string)] = v
		}
	}
	got, err := decodeEntry("1-1", fields)
	if err != nil {
		t.Fatal(err)
	}
	if got.Job.DeliveryID != "rt" || string(got.Job.Body) != string(e.Job.Body) || got.Attempts != 3 ||
		got.ReceivedAt.UnixMilli() != e.ReceivedAt.UnixMilli() || got.Headers["X-Github-Event"] != "push" {
		t.Errorf("round trip: %+v", got)
	}
}

func TestAdmitInOneRoundTrip(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxLength = 3
	q := NewQueue(r.Client, cfg)
	if !q.OneRoundTrip() {
		t.Fatal("a single Redis must admit in one round trip")
	}
	g := guard.Config{Limit: 2, Window: time.Minute, ReplayWindow: time.Hour}
	ctx := context.Background()
	rt := testenv.CountRoundTrips(r.Client)
	calls := rt.Load
	if _, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: "warm"}, entry("warm")); err != nil { // loads the script
		t.Fatal(err)
	}
	before := calls()
	for _, step := range []struct {
		delivery string
		want     guard.Verdict
		err      error
	}{
		{"d-1", guard.Admit, nil},
		{"d-1", guard.Duplicate, nil},
		{"d-2", guard.Limited, nil},
	} {
		d, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: step.delivery}, entry(step.delivery))
		if d.Verdict != step.want || !errors.Is(err, step.err) {
			t.Fatalf("%s: %+v %v, want verdict %d", step.delivery, d, err, step.want)
		}
	}
	if n := calls() - before; n != 3 {
		t.Errorf("%d Redis round trips for 3 admissions, want 3 (one EVALSHA each)", n)
	}
	if n := r.Client.XLen(ctx, "{t:queue}").Val(); n != 2 {
		t.Errorf("%d entries queued, want 2 (warm and d-1)", n)
	}
	if r.Client.Exists(ctx, "t:{wh}:seen:d-2").Val() != 0 {
		t.Error("a limited delivery was marked as seen")
	}
	// Full: refused before the guard, so nothing is marked or counted.
	q.Admit(ctx, redisconn.Bound{}, guard.Config{}, "other", guard.Delivery{ID: ""}, entry("x"))
	if _, err := q.Admit(ctx, redisconn.Bound{}, g, "full", guard.Delivery{ID: "d-9"}, entry("d-9")); !errors.Is(err, ErrFull) {
		t.Errorf("full queue: %v", err)
	}
	if r.Client.Exists(ctx, "t:{full}:seen:d-9", "t:{full}:rl").Val() != 0 {
		t.Error("a refused delivery left guard state behind")
	}
}

// BenchmarkAdmit is the accepted request's one round trip: guard and XADD
// of a 1 KB webhook.
func BenchmarkAdmit(b *testing.B) {
	r := testenv.StartRedis(b)
	q := NewQueue(r.Client, Config{Space: keyspace.Space{Prefix: "b:"}})
	g := guard.Config{Limit: 1 << 30, Window: time.Hour, ReplayWindow: time.Hour}
	e := entry("x")
	e.Job.Body = bytes.Repeat([]byte("x"), 1024)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		// as a request waits: up to a deadline
		bound := redisconn.Bound{Deadline: time.Now().Add(time.Minute)}
		if d, err := q.Admit(ctx, bound, g, "wh", guard.Delivery{ID: "d-" + strconv.Itoa(i)}, e); err != nil || d.Verdict != guard.Admit {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkEnqueue is the XADD alone, as on a Redis Cluster.
func BenchmarkEnqueue(b *testing.B) {
	r := testenv.StartRedis(b)
	q := NewQueue(r.Client, Config{Space: keyspace.Space{Prefix: "b:"}})
	e := entry("x")
	e.Job.Body = bytes.Repeat([]byte("x"), 1024)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Enqueue(ctx, redisconn.Bound{}, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAdmitFailedEnqueueForgets: when a command of the script fails (a key
// of the wrong type), the delivery is not left marked as seen and no entry
// is left in the stream without its ticket, so the sender's retry goes
// through and is queued once.
func TestAdmitFailedEnqueueForgets(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, key string
		limit     int
	}{
		{"the stream", "{t:queue}", 0},
		{"the lane", "{t:queue}:lane:wh", 0},
		{"the lengths of lanes", "{t:queue}:waiting", 0},
		{"the rate counter", "t:{wh}:rl", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t)
			cfg := testConfig
			cfg.MaxLength = 0
			q := NewQueue(r.Client, cfg)
			if err := r.Client.SAdd(ctx, tc.key, "not what it should be").Err(); err != nil {
				t.Fatal(err)
			}
			g := guard.Config{ReplayWindow: time.Hour, Limit: tc.limit, Window: time.Minute}
			d := guard.Delivery{ID: "d-1", Digest: "sha256:0a"}
			_, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", d, entry("d-1"))
			if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
				t.Fatalf("err = %v, want the WRONGTYPE", err)
			}
			if n := r.Client.Exists(ctx, "t:{wh}:seen:d-1", "t:{wh}:seen:sha256:0a").Val(); n != 0 {
				t.Errorf("a delivery that was not queued stayed marked as seen (%d markers)", n)
			}
			if n := r.Client.XLen(ctx, "{t:queue}").Val(); n != 0 {
				t.Errorf("%d entries left in the stream without a ticket", n)
			}

			r.Client.Del(ctx, tc.key)
			if dec, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", d, entry("d-1")); err != nil || dec.Verdict != guard.Admit {
				t.Errorf("the sender's retry: %+v, %v; want it admitted", dec, err)
			}
			if n := r.Client.LLen(ctx, "{t:queue}:lane:wh").Val(); n != 1 {
				t.Errorf("%d tickets in the lane after the retry, want 1", n)
			}
		})
	}
}

// TestAdmitOutlivesItsContext: a context cancelled while the script waits
// in Redis does not end Admit or Enqueue before Redis holds the entry. The
// handler gives the body's pooled buffer back as soon as they return.
func TestAdmitOutlivesItsContext(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	g := guard.Config{ReplayWindow: time.Hour}
	bg := context.Background()
	for _, call := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"admit", func(ctx context.Context) error {
			d, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: "d-1"}, entry("d-1"))
			if err == nil && d.Verdict != guard.Admit {
				err = fmt.Errorf("verdict %d", d.Verdict)
			}
			return err
		}},
		{"enqueue", func(ctx context.Context) error { err := q.Enqueue(ctx, redisconn.Bound{}, entry("d-2")); return err }},
	} {
		before := r.Client.XLen(bg, "{t:queue}").Val()
		if err := r.Client.Do(bg, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(bg)
		done := make(chan error, 1)
		go func() { done <- call.run(ctx) }()
		testenv.Eventually(t, "the script to wait in Redis", func() bool {
			return strings.Contains(r.Client.Info(bg, "clients").Val(), "blocked_clients:1")
		})
		cancel()
		if err := r.Client.Do(bg, "CLIENT", "UNPAUSE").Err(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: %v", call.name, err)
		}
		if n := r.Client.XLen(bg, "{t:queue}").Val(); n != before+1 {
			t.Errorf("%s: %d entries queued, want %d", call.name, n, before+1)
		}
	}
}

// TestReindexCollapse: a datasource reindex triggered while one of the same
// webhook is queued and not yet taken is covered by it; once a worker takes
// the queued one, the next trigger is queued again.
func TestReindexCollapse(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	g := guard.Config{Limit: 100, Window: time.Minute, ReplayWindow: time.Hour, CollapseTTL: time.Hour}
	admit := func(id string) guard.Verdict {
		t.Helper()
		d, err := q.Admit(ctx, redisconn.Bound{}, g, "ds", guard.Delivery{ID: id, Collapse: true}, reindexEntry(id))
		if err != nil {
			t.Fatal(err)
		}
		return d.Verdict
	}
	for _, step := range []struct {
		delivery string
		want     guard.Verdict
	}{{"r-1", guard.Admit}, {"r-2", guard.Collapsed}, {"r-3", guard.Collapsed}, {"r-2", guard.Duplicate}} {
		if got := admit(step.delivery); got != step.want {
			t.Fatalf("%s: verdict %d, want %d", step.delivery, got, step.want)
		}
	}
	if n := r.Client.XLen(ctx, "{t:queue}").Val(); n != 1 {
		t.Fatalf("%d reindexes queued, want 1", n)
	}
	// A workflow of another webhook never collapses.
	if d, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: "w-1"}, entry("w-1")); err != nil || d.Verdict != guard.Admit {
		t.Fatalf("workflow: %+v %v", d, err)
	}
	s := newScripted(succeed)
	start(t, q, s, Events{})
	testenv.Eventually(t, "the queued reindex to be dispatched", func() bool { return s.count("r-1") == 1 })
	// The marker is still there, but its entry has been taken.
	if got := admit("r-4"); got != guard.Admit {
		t.Fatalf("after the reindex was taken: verdict %d, want it queued", got)
	}
	testenv.Eventually(t, "the next reindex to be dispatched", func() bool { return s.count("r-4") == 1 })
	if s.count("r-2")+s.count("r-3") != 0 {
		t.Error("a collapsed trigger was dispatched")
	}
}

// TestCollapseChecksItsMarker: a marker naming an entry that is gone (the
// stream deleted, or another stream's id) covers nothing; a limited or
// refused trigger sets none.
func TestCollapseChecksItsMarker(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxLength = 2
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	g := guard.Config{Limit: 1, Window: time.Minute, ReplayWindow: time.Hour, CollapseTTL: time.Hour}
	r.Client.Set(ctx, "t:{ds}:reindex", "1700000000000-0", 0)
	if d, err := q.Admit(ctx, redisconn.Bound{}, g, "ds", guard.Delivery{ID: "r-1", Collapse: true}, reindexEntry("r-1")); err != nil || d.Verdict != guard.Admit {
		t.Fatalf("with a stale marker: %+v %v, want it queued", d, err)
	}
	marker := ticket(r.Client.Get(ctx, "t:{ds}:reindex").Val())
	if id := marker.entryID(); id == "1700000000000-0" || len(r.Client.XRange(ctx, "{t:queue}", id, id).Val()) != 1 {
		t.Errorf("the marker %q does not name the queued entry", marker)
	}
	// Over the limit: refused before the marker is looked at.
	if d, _ := q.Admit(ctx, redisconn.Bound{}, g, "ds", guard.Delivery{ID: "r-2", Collapse: true}, reindexEntry("r-2")); d.Verdict != guard.Limited {
		t.Errorf("over the limit: verdict %d", d.Verdict)
	}
	// An entry the stream refuses (odd fields) sets no marker and no seen marker.
	r.Client.Del(ctx, "t:{ds}:reindex", "t:{ds}:rl")
	app := q.appendOf(reindexEntry("r-3"))
	app.Fields = []any{"only-a-name"}
	if _, err := guard.AdmitAndAppend(ctx, redisconn.NewRequests(r.Client), redisconn.Bound{}, testConfig.Space, g, "ds", guard.Delivery{ID: "r-3", Collapse: true}, app); err == nil {
		t.Fatal("an odd number of fields was appended")
	}
	if n := r.Client.Exists(ctx, "t:{ds}:reindex", "t:{ds}:seen:r-3").Val(); n != 0 {
		t.Errorf("%d markers left by a trigger that was not queued", n)
	}
}

func reindexEntry(delivery string) Entry {
	e := entry(delivery)
	e.Job.WebhookID, e.Job.ResourceType, e.Job.ResourceID = "ds", "datasource", "ds-1"
	return e
}
