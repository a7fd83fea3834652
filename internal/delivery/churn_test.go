package delivery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// scheduleLeft lists what is left of the queue's schedule and stream.
func scheduleLeft(t *testing.T, r *testenv.Redis) []string {
	t.Helper()
	ctx := context.Background()
	var left []string
	for _, k := range r.Client.Keys(ctx, "{t:queue}*").Val() {
		switch r.Client.Type(ctx, k).Val() {
		case "stream":
			if n := r.Client.XLen(ctx, k).Val(); n > 0 {
				left = append(left, fmt.Sprintf("%s XLEN %d", k, n))
			}
		case "list":
			left = append(left, fmt.Sprintf("%s %v", k, r.Client.LRange(ctx, k, 0, -1).Val()))
		case "zset":
			left = append(left, fmt.Sprintf("%s %v", k, r.Client.ZRangeWithScores(ctx, k, 0, -1).Val()))
		case "set":
			left = append(left, fmt.Sprintf("%s %v", k, r.Client.SMembers(ctx, k).Val()))
		case "hash":
			left = append(left, fmt.Sprintf("%s %v", k, r.Client.HGetAll(ctx, k).Val()))
		}
	}
	return left
}

// waitLeaseEnds waits until ticket tk's lease has ended by Redis's clock.
func waitLeaseEnds(t *testing.T, r *testenv.Redis, tk ticket) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, "the lease to end", func() bool {
		score, err := r.Client.ZScore(ctx, "{t:queue}:leases", string(tk)).Result()
		now, terr := r.Client.Time(ctx).Result()
		return err == nil && terr == nil && float64(now.UnixMilli()) > score
	})
}

// TestChurnLosesNothing: two instances with max_in_flight 1 over three
// resources, a quarter of the attempts failing, instances stopped and
// started, an instance that takes entries and dies, and one that finishes
// after its lease ended: every entry is delivered or dead, and the
// schedule ends empty.
func TestChurnLosesNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var rngMu sync.Mutex
	rnd := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
	cfg := testConfig
	cfg.MaxLength, cfg.ClaimAfter, cfg.Workers, cfg.MaxInFlight = 100000, 150*time.Millisecond, 4, 1
	cfg.FirstBackoff, cfg.MaxBackoff = 5*time.Millisecond, 40*time.Millisecond

	var mu sync.Mutex
	delivered := map[string]int{}
	deliver := func(id string) { mu.Lock(); delivered[id]++; mu.Unlock() }
	dispatchFn := func(dctx context.Context, job dispatch.Job) dispatch.Result {
		select {
		case <-dctx.Done():
			return dispatch.Result{Class: dispatch.Retryable, Reason: "cancelled"}
		case <-time.After(time.Duration(rnd(20)) * time.Millisecond):
		}
		if rnd(4) == 0 {
			return dispatch.Result{Class: dispatch.Retryable, Reason: "flaky"}
		}
		deliver(job.DeliveryID)
		return dispatch.Result{Class: dispatch.Success}
	}
	var queues []*Queue
	for _, c := range []string{"a", "b"} {
		cc := cfg
		cc.Consumer = c
		queues = append(queues, NewQueue(r.Client, cc))
	}
	var wmu sync.Mutex
	workers := []*Workers{queues[0].Start(dispatchFn, Events{}, zap.NewNop()), queues[1].Start(dispatchFn, Events{}, zap.NewNop())}
	defer func() {
		wmu.Lock()
		defer wmu.Unlock()
		for _, w := range workers {
			w.Stop(time.Second)
		}
	}()

	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Add(2)
	go func() { // stop and start an instance now and then
		defer chaos.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rnd(300)) * time.Millisecond):
			}
			i := rnd(2)
			wmu.Lock()
			workers[i].Stop(time.Duration(rnd(3)) * 5 * time.Millisecond)
			workers[i] = queues[i].Start(dispatchFn, Events{}, zap.NewNop())
			wmu.Unlock()
		}
	}()
	go func() { // an instance that takes entries and dies, or finishes too late
		defer chaos.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(50+rnd(250)) * time.Millisecond):
			}
			got, _, err := queues[0].take(ctx, 1+rnd(3), "ghost")
			if err != nil || rnd(2) == 0 {
				continue
			}
			for _, g := range got {
				chaos.Add(1)
				go func() {
					defer chaos.Done()
					time.Sleep(cfg.ClaimAfter + time.Duration(rnd(300))*time.Millisecond)
					if e, err := decodeEntry(g.ticket.entryID(), g.fields); err == nil {
						deliver(e.Job.DeliveryID)
						_ = queues[0].finish(ctx, g.ticket, "ghost")
					}
				}()
			}
		}
	}()
	const entries, webhooks = 200, 12
	for i := range entries {
		wh := rnd(webhooks)
		e := entryFor(fmt.Sprint("wh-", wh), fmt.Sprint("res-", wh%3), fmt.Sprint("d-", i))
		if err := queues[rnd(2)].Enqueue(ctx, redisconn.Bound{}, e); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rnd(4000)) * time.Microsecond)
	}
	close(stop)
	chaos.Wait()
	testenv.Eventually(t, "every entry delivered or dead, and the schedule empty", func() bool {
		return len(scheduleLeft(t, r)) == 0
	})
	dead := map[string]bool{}
	letters, _, _ := queues[0].DeadLetters(ctx, "", 1000)
	for _, dl := range letters {
		dead[dl.DeliveryID] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range entries {
		if id := fmt.Sprint("d-", i); delivered[id] == 0 && !dead[id] {
			t.Errorf("%s neither delivered nor dead", id)
		}
	}
}

// TestTakeUnparksAfterItsVisit: when a take finds a lease that ended and
// makes room while visiting a lane, the lane it brings back from parking
// stays in the ring and the visited one is where it belongs.
func TestTakeUnparksAfterItsVisit(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxInFlight = 1
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	for _, e := range []Entry{entryFor("x", "shared", "x-1"), entryFor("b", "shared", "b-1")} {
		if err := q.Enqueue(ctx, redisconn.Bound{}, e); err != nil {
			t.Fatal(err)
		}
	}
	ghost, _, err := q.take(ctx, 1, "ghost") // taken by an instance that dies
	if err != nil || len(ghost) != 1 {
		t.Fatalf("ghost take: %v %v", ghost, err)
	}
	if got, _, _ := q.take(ctx, 1, "test"); len(got) != 0 { // b parks
		t.Fatalf("took %v", got)
	}
	if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("a", "shared", "a-1")); err != nil {
		t.Fatal(err)
	}
	waitLeaseEnds(t, r, ghost[0].ticket)
	if got, _, err := q.take(ctx, 1, "test"); err != nil || len(got) != 1 || got[0].ticket.entryID() == "" {
		t.Fatalf("take: %v %v", got, err)
	}
	ring := r.Client.LRange(ctx, "{t:queue}:ring", 0, -1).Val()
	parked := r.Client.LRange(ctx, "{t:queue}:parked:workflow:shared", 0, -1).Val()
	if indexOf(ring, "b") < 0 && indexOf(parked, "b") < 0 {
		t.Errorf("lane b holds tickets but is neither in the ring %v nor parked %v", ring, parked)
	}
	if indexOf(ring, "a") >= 0 {
		t.Errorf("lane a is empty but in the ring %v", ring)
	}
}

// TestLateFinishDoesNotStrandParkedLanes: an entry finished late by an
// instance whose lease had ended leaves its ticket, handed back, without an
// entry; when its lane's turn comes, the turn passes on to the next lane
// parked on the resource, which is dispatched.
func TestLateFinishDoesNotStrandParkedLanes(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := testConfig
	cfg.MaxInFlight = 1
	q := NewQueue(r.Client, cfg)
	ctx := context.Background()
	enq := func(wh, id string) {
		t.Helper()
		if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor(wh, "shared", id)); err != nil {
			t.Fatal(err)
		}
	}
	take := func(n, want int) []taken {
		t.Helper()
		got, _, err := q.take(ctx, n, "test")
		if err != nil || len(got) != want {
			t.Fatalf("take %d: %v %v, want %d", n, got, err, want)
		}
		return got
	}
	enq("a", "a-1")
	got, _, err := q.take(ctx, 1, "slow") // an instance dispatches a-1; its heartbeat stalls
	if err != nil || len(got) != 1 {
		t.Fatalf("take: %v %v", got, err)
	}
	slow := got[0]
	enq("b", "b-1")
	enq("c", "c-1")
	take(2, 0) // b, c parked
	waitLeaseEnds(t, r, slow.ticket)
	if moved, err := q.handBack(ctx, ""); err != nil || len(moved) != 1 { // a-1 back in lane a; b unparked
		t.Fatalf("reclaim: %v %v", moved, err)
	}
	b := take(2, 1)[0] // b-1 taken; a parked behind c
	enq("d", "d-1")
	take(1, 0)                                                 // d parked behind a
	if err := q.finish(ctx, slow.ticket, "slow"); err != nil { // the late finish deletes a-1
		t.Fatal(err)
	}
	if err := q.finish(ctx, b.ticket, "test"); err != nil { // unparks c
		t.Fatal(err)
	}
	c := take(1, 1)[0]
	if err := q.finish(ctx, c.ticket, "test"); err != nil { // unparks a, whose ticket has no entry
		t.Fatal(err)
	}
	s := newScripted(succeed)
	start(t, q, s, Events{})
	testenv.Eventually(t, "d-1, parked behind the lane of the deleted entry", func() bool { return s.count("d-1") == 1 })
}
