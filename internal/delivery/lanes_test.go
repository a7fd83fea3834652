package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// entryFor is an entry of webhook webhook for resource workflow:resource.
func entryFor(webhook, resource, delivery string) Entry {
	e := entry(delivery)
	e.Job.WebhookID, e.Job.ResourceID = webhook, resource
	return e
}

// TestScriptsCompile loads every script of the package, so that one that
// does not compile fails here rather than on the path that first runs it.
func TestScriptsCompile(t *testing.T) {
	r := testenv.StartRedis(t)
	for name, s := range map[string]*redis.Script{
		"take": takeScript, "renew": renewScript, "finish": finishScript, "schedule": scheduleScript,
		"moveDue": moveDueScript, "handBack": handBackScript, "lanes": lanesScript, "bury": buryScript,
		"listDead": listDeadScript, "deleteDead": deleteDeadScript, "lastDead": lastDeadScript,
		"dropEmptyLegacy": dropEmptyLegacyScript, "claimLegacyDue": claimLegacyDueScript,
	} {
		if err := s.Load(context.Background(), r.Client).Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestQuietWebhookNotBehindBacklog: with one dispatch slot and 200 entries
// of one webhook queued ahead of a quiet webhook's one, the quiet one is
// the second dispatched: the lanes take turns.
func TestQuietWebhookNotBehindBacklog(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.Workers = 1
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	for i := range 200 {
		if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("noisy", "wf-1", fmt.Sprint("n-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("quiet", "wf-2", "q-1")); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []string
	)
	s := newScripted(func(job dispatch.Job, _ int) dispatch.Result {
		mu.Lock()
		order = append(order, job.DeliveryID)
		mu.Unlock()
		return dispatch.Result{Class: dispatch.Success}
	})
	start(t, q, s, Events{})
	testenv.Eventually(t, "the quiet webhook's delivery", func() bool { return s.count("q-1") == 1 })
	mu.Lock()
	defer mu.Unlock()
	if i := indexOf(order, "q-1"); i > 1 {
		t.Errorf("the quiet webhook's delivery was dispatched %dth, after %v", i+1, order[:i])
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// TestMaxInFlightAcrossInstances: two instances with 8 slots each never
// have more than max_in_flight dispatches of one resource running at once,
// fed by three webhooks; another resource's entries are dispatched
// meanwhile, not held up behind the full one.
func TestMaxInFlightAcrossInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.Workers, cfg.MaxInFlight = 8, 3
	ctx := context.Background()
	var running, peak atomic.Int32
	gate := make(chan struct{})
	s := newScripted(func(job dispatch.Job, _ int) dispatch.Result {
		if job.ResourceID == "busy" {
			n := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-gate
		}
		return dispatch.Result{Class: dispatch.Success}
	})
	var queues []*Queue
	for _, consumer := range []string{"a", "b"} {
		c := cfg
		c.Consumer = consumer
		queues = append(queues, NewQueue(r.Client, c))
	}
	for i := range 30 {
		if err := queues[0].Enqueue(ctx, redisconn.Bound{}, entryFor(fmt.Sprint("wh-", i%3), "busy", fmt.Sprint("b-", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range queues {
		w := q.Start(s.dispatch, Events{}, zap.NewNop())
		defer w.Stop(0)
	}
	testenv.Eventually(t, "3 dispatches of the busy resource", func() bool { return running.Load() == 3 })
	for i := range 10 {
		if err := queues[1].Enqueue(ctx, redisconn.Bound{}, entryFor("other", "free", fmt.Sprint("f-", i))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "the free resource's entries, while the busy one is full", func() bool {
		for i := range 10 {
			if s.count(fmt.Sprint("f-", i)) != 1 {
				return false
			}
		}
		return true
	})
	close(gate)
	testenv.Eventually(t, "every entry to be delivered", func() bool {
		st, err := queues[0].Stats(ctx)
		return err == nil && st.Length == 0
	})
	if p := peak.Load(); p != 3 {
		t.Errorf("peak of %d dispatches of one resource at once, want max_in_flight 3", p)
	}
	for i := range 30 {
		if n := s.count(fmt.Sprint("b-", i)); n != 1 {
			t.Errorf("b-%d dispatched %d times", i, n)
		}
	}
}

// TestStatsPerWebhook: the stats list the webhooks with the most waiting,
// most first, at most TopWebhooks of them, though the intake records a
// lane's length only as it doubles.
func TestStatsPerWebhook(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	enqueue := func(webhook string, n int) {
		t.Helper()
		for j := range n {
			if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor(webhook, "wf", fmt.Sprint(webhook, "-", j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 12 {
		enqueue(fmt.Sprintf("wh-%02d", i), i+1)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Length != 78 || len(st.Webhooks) != TopWebhooks {
		t.Fatalf("length %d, %d webhooks listed; want 78, %d", st.Length, len(st.Webhooks), TopWebhooks)
	}
	for i, w := range st.Webhooks {
		if want := fmt.Sprintf("wh-%02d", 11-i); w.WebhookID != want || w.Waiting != int64(12-i) {
			t.Errorf("webhook %d: %+v, want %s with %d waiting", i, w, want, 12-i)
		}
	}

	// A backlog that grows after the others is listed first, with its
	// length now (300; recorded at 256).
	enqueue("hot", 300)
	if st, err = q.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if w := st.Webhooks; len(w) != TopWebhooks || w[0].WebhookID != "hot" || w[0].Waiting != 300 || w[1].WebhookID != "wh-11" {
		t.Errorf("with a backlog: %+v", w)
	}
}

// ghostHoldsShared queues a-1 and b-1 of webhooks a and b for resource
// workflow:shared, which allows one dispatch at once, and has an instance
// that then dies ("ghost") take a-1: its ticket.
func ghostHoldsShared(t *testing.T) (*testenv.Redis, *Queue, ticket) {
	t.Helper()
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxInFlight = 1
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	for _, e := range []Entry{entryFor("a", "shared", "a-1"), entryFor("b", "shared", "b-1")} {
		if err := q.Enqueue(ctx, redisconn.Bound{}, e); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := q.take(ctx, 1, "ghost")
	if err != nil || len(got) != 1 {
		t.Fatalf("ghost take: %v %v", got, err)
	}
	return r, q, got[0].ticket
}

// TestParkedLaneBackAfterLeaseEnds: with max_in_flight 1, a lane whose
// resource is held by an instance that died is parked, and comes back when
// that lease ends and the entry is handed back: both are delivered.
func TestParkedLaneBackAfterLeaseEnds(t *testing.T) {
	// An instance takes a-1 and dies; b-1's lane is parked on the resource.
	r, q, _ := ghostHoldsShared(t)
	ctx := context.Background()
	if got, lanes, err := q.take(ctx, 1, "test"); err != nil || len(got) != 0 || lanes != 0 {
		t.Fatalf("take while the resource is full: %v, %d lanes in the ring, %v", got, lanes, err)
	}
	if parked := r.Client.LRange(ctx, "{t:queue}:parked:workflow:shared", 0, -1).Val(); len(parked) != 1 || parked[0] != "b" {
		t.Fatalf("parked %v, want b", parked)
	}
	s := newScripted(succeed)
	start(t, q, s, Events{})
	testenv.Eventually(t, "both entries to be delivered", func() bool { return s.count("a-1") == 1 && s.count("b-1") == 1 })
	testenv.Eventually(t, "the schedule to be empty", func() bool {
		n := r.Client.Exists(ctx, "{t:queue}:ring", "{t:queue}:waiting", "{t:queue}:leases", "{t:queue}:parked:workflow:shared",
			"{t:queue}:busy:workflow:shared", "{t:queue}:lane:a", "{t:queue}:lane:b").Val()
		return n == 0
	})
}

// TestScheduleNeedsTheLease: an attempt that ends after its lease did (the
// entry handed back meanwhile) schedules no retry: the ticket stays in one
// place.
func TestScheduleNeedsTheLease(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	if err := q.Enqueue(ctx, redisconn.Bound{}, entry("late")); err != nil {
		t.Fatal(err)
	}
	got, _, err := q.take(ctx, 1, "test")
	if err != nil || len(got) != 1 {
		t.Fatalf("take: %v %v", got, err)
	}
	if moved, err := q.handBack(ctx, "test", string(got[0].ticket)); err != nil || len(moved) != 1 {
		t.Fatalf("hand back: %v %v", moved, err)
	}
	if err := q.schedule(ctx, got[0].ticket, 1, 0, "test"); !errors.Is(err, errLeaseLost) {
		t.Errorf("schedule without the lease: %v, want errLeaseLost", err)
	}
	if n := r.Client.ZCard(ctx, "{t:queue}:due").Val(); n != 0 {
		t.Errorf("%d due: the ticket is in its lane and the due set", n)
	}
}

// TestStaleHolderLeavesTheLease: an instance whose lease ended and was
// taken over by another neither schedules a retry of the entry nor ends the
// other's lease when its attempt ends; the other renews and finishes it.
func TestStaleHolderLeavesTheLease(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxInFlight = 1
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("a", "shared", "a-1")); err != nil {
		t.Fatal(err)
	}
	stale, _, err := q.take(ctx, 1, "stale")
	if err != nil || len(stale) != 1 {
		t.Fatalf("take: %v %v", stale, err)
	}
	waitLeaseEnds(t, r, stale[0].ticket)
	if moved, err := q.handBack(ctx, ""); err != nil || len(moved) != 1 {
		t.Fatalf("reclaim: %v %v", moved, err)
	}
	fresh, _, err := q.take(ctx, 1, "fresh")
	if err != nil || len(fresh) != 1 || fresh[0].ticket != stale[0].ticket {
		t.Fatalf("take over: %v %v", fresh, err)
	}
	tk := string(fresh[0].ticket)
	if err := q.schedule(ctx, stale[0].ticket, 1, 0, "stale"); !errors.Is(err, errLeaseLost) {
		t.Errorf("the stale holder's schedule: %v, want errLeaseLost", err)
	}
	if moved, err := q.handBack(ctx, "stale", tk); err != nil || len(moved) != 0 {
		t.Errorf("the stale holder handed back %v, %v", moved, err)
	}
	if err := q.renew(ctx, []string{tk}, "fresh"); err != nil {
		t.Fatal(err)
	}
	if r.Client.ZScore(ctx, "{t:queue}:leases", tk).Err() != nil || r.Client.ZCard(ctx, "{t:queue}:busy:workflow:shared").Val() != 1 ||
		r.Client.ZCard(ctx, "{t:queue}:due").Val() != 0 {
		t.Errorf("the fresh holder's lease was touched:\n%v", scheduleLeft(t, r))
	}
	if err := q.finish(ctx, fresh[0].ticket, "fresh"); err != nil {
		t.Fatal(err)
	}
	if left := scheduleLeft(t, r); len(left) != 0 {
		t.Errorf("left after the fresh holder's finish: %v", left)
	}
}

// TestLeaseEndingFarAhead: a lease that ends further ahead than a lease
// lasts (Redis's clock went back, a bad edit) is handed back with the
// others that ended, and its resource's room with it.
func TestLeaseEndingFarAhead(t *testing.T) {
	r, q, ghost := ghostHoldsShared(t)
	ctx := context.Background()
	const year3000 = 32503680000000
	tk := string(ghost)
	for _, key := range []string{"{t:queue}:leases", "{t:queue}:busy:workflow:shared"} {
		if err := r.Client.ZAdd(ctx, key, redis.Z{Score: year3000, Member: tk}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := q.take(ctx, 1, "test"); err != nil { // parks b on the full resource
		t.Fatal(err)
	}
	if moved, err := q.handBack(ctx, ""); err != nil || len(moved) != 1 || moved[0] != tk {
		t.Fatalf("handed back %v, %v; want the lease ending in the year 3000", moved, err)
	}
	if n := r.Client.ZCard(ctx, "{t:queue}:busy:workflow:shared").Val(); n != 0 {
		t.Errorf("%d leases still counted against the resource", n)
	}
	if taken, _, err := q.take(ctx, 2, "test"); err != nil || len(taken) != 1 {
		t.Errorf("after the hand-back: took %v, %v; want one (the resource allows one)", taken, err)
	}
}

// TestStrandedLaneBackInRing: lanes that hold tickets while their webhooks
// are out of the ring (the ring deleted by hand) join it again at the
// reclaims, and their entries are taken.
func TestStrandedLaneBackInRing(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	webhooks := make([]string, 3*strandedSample)
	for i := range webhooks {
		webhooks[i] = fmt.Sprint("w-", i)
		if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor(webhooks[i], "wf", "d-"+webhooks[i])); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Client.Del(ctx, q.ring).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "every stranded lane back in the ring", func() bool {
		if _, err := q.handBack(ctx, ""); err != nil {
			t.Fatal(err)
		}
		return r.Client.LLen(ctx, q.ring).Val() == int64(len(webhooks))
	})
	ring := r.Client.LRange(ctx, q.ring, 0, -1).Val()
	slices.Sort(ring)
	sorted := slices.Clone(webhooks)
	slices.Sort(sorted)
	if !slices.Equal(ring, sorted) {
		t.Errorf("ring %v, want each webhook once", ring)
	}
	got, _, err := q.take(ctx, len(webhooks), "holder")
	if err != nil || len(got) != len(webhooks) {
		t.Errorf("took %d, %v; want all %d", len(got), err, len(webhooks))
	}
}
