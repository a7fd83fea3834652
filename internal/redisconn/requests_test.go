package redisconn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

var incrScript = NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)

// incr is a run of incrScript: key incremented by by.
func incr(key string, by any) *Call {
	c := incrScript.Call(2)
	c.Keys(key)
	c.Args(by)
	return c
}

// TestRequestsRun: a script's reply through the autopipeliner and through
// the client (a cluster's path), with and without a deadline, and again
// after Redis has lost its scripts.
func TestRequestsRun(t *testing.T) {
	r := testenv.StartRedis(t)
	cluster := testenv.StartRedisCluster(t)
	batched := NewRequests(r.Client)
	if batched.batch == nil {
		t.Fatal("a single node's requests are not batched")
	}
	if NewRequests(cluster.Client).batch != nil {
		t.Fatal("a cluster's requests are batched")
	}
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		req    Requests
		client redis.UniversalClient
	}{
		{"batched", batched, r.Client},
		{"through the client", Requests{Scripter: r.Client, client: r.Client}, r.Client},
		{"cluster", NewRequests(cluster.Client), cluster.Client},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "n-" + c.name
			for i, b := range []Bound{{}, {Deadline: time.Now().Add(time.Minute)}} {
				v, err := c.req.Run(ctx, b, incr(key, 2))
				if err != nil || v != int64(2*(i+1)) {
					t.Fatalf("bound %d: %v, %v; want %d", i, v, err, 2*(i+1))
				}
			}
			if err := c.client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			run := ctx
			if c.req.batch != nil {
				// The autopipeliner does not give up on a cancelled
				// context: nor must the reload.
				cancelled, cancel := context.WithCancel(ctx)
				cancel()
				run = cancelled
			}
			if v, err := c.req.Run(run, Bound{Deadline: time.Now().Add(time.Minute)}, incr(key, 1)); err != nil || v != int64(5) {
				t.Fatalf("after SCRIPT FLUSH: %v, %v; want 5", v, err)
			}
			if _, err := c.req.Run(ctx, Bound{}, incr("not-a-number", "x")); err == nil || !strings.Contains(err.Error(), "not an integer") {
				t.Fatalf("a script's error: %v", err)
			}
		})
	}
}

// TestRequestsDeadline: past the deadline Run returns ErrDeadline without
// waiting for Redis, hands off, and releases once the script has run.
func TestRequestsDeadline(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		req  Requests
	}{
		{"batched", NewRequests(r.Client)},
		{"through the client", Requests{Scripter: r.Client, client: r.Client}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := incrScript.Load(ctx, r.Client).Err(); err != nil {
				t.Fatal(err)
			}
			if err := r.Client.Do(ctx, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			var handedOff, released atomic.Bool
			b := Bound{Deadline: time.Now().Add(200 * time.Millisecond), HandOff: func() func() {
				handedOff.Store(true)
				return func() { released.Store(true) }
			}}
			key := "paused-" + c.name
			if _, err := c.req.Run(ctx, b, incr(key, 1)); !errors.Is(err, ErrDeadline) {
				t.Fatalf("err = %v, want ErrDeadline", err)
			}
			if !handedOff.Load() || released.Load() {
				t.Fatalf("handed off %v, released %v: want handed off, not yet released", handedOff.Load(), released.Load())
			}
			if err := r.Client.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, "the release once the script has run", released.Load)
			if n, _ := r.Client.Get(ctx, key).Int(); n != 1 {
				t.Errorf("the script ran %d times, want once", n)
			}
		})
	}
}

// TestDeadlineReused: a deadline whose timer fired without its waiter
// taking the signal is released clean: the next one is not done early.
func TestDeadlineReused(t *testing.T) {
	d := newDeadline(time.Now())
	testenv.Eventually(t, "the deadline to pass", d.passed.Load)
	if d.Err() != errDeadlinePassed {
		t.Fatalf("Err = %v", d.Err())
	}
	d.release() // takes the signal nobody took
	next := newDeadline(time.Now().Add(time.Hour))
	select {
	case <-next.Done():
		t.Fatal("a reused deadline was done at once")
	default:
	}
	if next.Err() != nil {
		t.Fatalf("a reused deadline's Err = %v", next.Err())
	}
	next.release()
}
