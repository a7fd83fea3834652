package delivery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestPoisonedDueSet: a member of the due set that names no entry (a bad
// edit) is dropped, and the retries due behind it move on.
func TestPoisonedDueSet(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("wh", "wf-1", "d-1")); err != nil {
		t.Fatal(err)
	}
	got, _, err := q.take(ctx, 1, "holder")
	if err != nil || len(got) != 1 {
		t.Fatalf("take: %v, %v", got, err)
	}
	if err := q.schedule(ctx, got[0].ticket, 1, 5, "holder"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"1|abc|wh|workflow:wf-1", "garbage", "1|"} {
		if err := r.Client.ZAdd(ctx, q.due, redis.Z{Score: 0, Member: bad}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := q.moveDue(ctx, 10, 10); err != nil || n != 4 {
		t.Fatalf("moveDue: %d, %v; want the 4 members gone through", n, err)
	}
	if n := r.Client.ZCard(ctx, q.due).Val(); n != 0 {
		t.Errorf("%d members left in the due set", n)
	}
	if again, _, err := q.take(ctx, 1, "holder"); err != nil || len(again) != 1 || again[0].fields.str(fieldAttempts) != "1" {
		t.Errorf("the retry taken: %v, %v", again, err)
	}
}

// TestPoisonedLane: a lane entry that is no ticket is dropped without
// failing the take, and the tickets around it are taken.
func TestPoisonedLane(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	for i, webhook := range []string{"a", "b", "c"} {
		if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor(webhook, fmt.Sprint("wf-", i), "d-"+webhook)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Client.LPush(ctx, q.lanePrefix+"b", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	var taken []string
	for range 3 {
		got, _, err := q.take(ctx, 3, "holder")
		if err != nil {
			t.Fatalf("take: %v", err)
		}
		for _, g := range got {
			taken = append(taken, strings.Split(string(g.ticket), "|")[1])
		}
	}
	slices.Sort(taken)
	if !slices.Equal(taken, []string{"a", "b", "c"}) {
		t.Errorf("taken %v, want a, b and c once each", taken)
	}
	if n := r.Client.LLen(ctx, q.lanePrefix+"b").Val(); n != 0 {
		t.Errorf("%d left in the poisoned lane", n)
	}
}

// TestDeadBytesNotANumber: a dead-letter byte counter that is not a number
// (a bad edit) is counted again, and each letter is buried once.
func TestDeadBytesNotANumber(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, withDead(DeadLimits{MaxEntries: 10}))
	b := newBurier(q)
	b.bury(t, entry("d-1"))
	if err := r.Client.Set(context.Background(), q.deadBytes, "abc", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b.bury(t, entry("d-2"))
	if ids := deadIDs(t, q); fmt.Sprint(ids) != "[d-1 d-2]" {
		t.Errorf("dead letters %v, want d-1 and d-2 once each", ids)
	}
	checkDeadBytes(t, q)
}

// TestTakeFailsWithoutLoss: a take that fails on a key of the wrong type
// (a bad edit) says so and puts the ticket it took back at the front of
// its lane; once the key is fixed, every entry is taken.
func TestTakeFailsWithoutLoss(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{"{t:queue}:waiting", "{t:queue}:leases", "{t:queue}:holders"} {
		t.Run(key, func(t *testing.T) {
			r := testenv.StartRedis(t)
			q := NewQueue(r.Client, testConfig)
			for _, webhook := range []string{"a", "b"} {
				if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor(webhook, "wf-"+webhook, "d-"+webhook)); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Client.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			if err := r.Client.SAdd(ctx, key, "not what it should be").Err(); err != nil {
				t.Fatal(err)
			}
			if got, _, err := q.take(ctx, 2, "holder"); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || len(got) != 0 {
				t.Fatalf("take: %v, %v; want the WRONGTYPE and nothing taken", got, err)
			}
			if n := r.Client.LLen(ctx, q.lanePrefix+"a").Val() + r.Client.LLen(ctx, q.lanePrefix+"b").Val(); n != 2 {
				t.Errorf("%d tickets left in the lanes, want both", n)
			}
			r.Client.Del(ctx, key)
			if got, _, err := q.take(ctx, 2, "holder"); err != nil || len(got) != 2 {
				t.Errorf("take once the key is fixed: %d taken, %v; want both", len(got), err)
			}
		})
	}
}

// TestIncompleteEntriesDie: an entry written by hand without what the
// intake always writes (a body, a webhook id, a time received) is not
// dispatched: it dies as unreadable, and the entries around it are
// delivered.
func TestIncompleteEntriesDie(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	ctx := context.Background()
	broken := map[string][]any{
		"no-body":    {fieldMeta, `{"webhook_id":"wh","delivery_id":"no-body","received_at":1764200000000}`},
		"meta-null":  {fieldMeta, "null", fieldBody, "{}"},
		"no-webhook": {fieldMeta, `{"delivery_id":"no-webhook","received_at":1764200000000}`, fieldBody, "{}"},
	}
	for delivery, fields := range broken {
		a := q.appendOf(entryFor("wh", "wf", delivery))
		a.Fields = fields
		if err := guard.AppendUnguarded(ctx, q.requests, redisconn.Bound{}, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, redisconn.Bound{}, entryFor("wh", "wf", "whole")); err != nil {
		t.Fatal(err)
	}
	s := newScripted(succeed)
	var dead atomic.Int32
	start(t, q, s, Events{Dead: func() { dead.Add(1) }})
	testenv.Eventually(t, "the whole entry delivered and the others dead", func() bool {
		return s.count("whole") == 1 && dead.Load() == int32(len(broken))
	})
	dl, _, err := q.DeadLetters(ctx, "", 10)
	if err != nil || len(dl) != len(broken) {
		t.Fatalf("dead letters %+v, %v", dl, err)
	}
	for _, d := range dl {
		if d.LastStep != "decode" {
			t.Errorf("dead letter %s died at %q (%s), want decode", d.ID, d.LastStep, d.LastReason)
		}
	}
	if n := len(s.attempts); n != 1 {
		t.Errorf("%d deliveries dispatched, want the whole one alone", n)
	}
}
