package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func TestLoad(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	p := keyspace.Space{Prefix: "test:"}
	r.Client.HSet(ctx, p.Record("good"), "webhook_id", "good", "is_enabled", "true", "resource_type", "workflow", "resource_id", "wf-1", "github_webhook_secret", "s3cret")
	r.Client.HSet(ctx, p.Record("bad"), "is_enabled", "s3cret-looking-value")
	r.Client.Set(ctx, p.Record("str"), "x", 0)
	s := New(r.Client, p, nil, zap.NewNop())

	got, err := s.Load(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "good" || !got.Enabled || got.ResourceType != "workflow" || string(got.GitHubSecret[0]) != "s3cret" {
		t.Errorf("got %+v", got)
	}
	if _, err := s.Load(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: err = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"bad", "str"} {
		if _, err := s.Load(ctx, id); !integration.IsMalformed(err) {
			t.Errorf("%s: err = %v, want malformed", id, err)
		}
	}

	r.Stop()
	_, err = s.Load(ctx, "good")
	if err == nil || errors.Is(err, store.ErrNotFound) || integration.IsMalformed(err) {
		t.Errorf("redis down: err = %v, want an unreachable error", err)
	}
}

func TestWatch(t *testing.T) {
	r := testenv.StartRedis(t)
	p := keyspace.Space{Prefix: "test:"}
	// A client of its own, as in production: the test's client stays usable.
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, p, nil, zap.NewNop())

	ctx, cancel := context.WithCancel(context.Background())
	changed, all := make(chan string, 10), make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		s.Watch(ctx, func(id string) { changed <- id }, func() { all <- struct{}{} })
		close(done)
	}()

	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	wait("the first subscription", all)

	publish := func(msg string) {
		t.Helper()
		if err := r.Client.Publish(context.Background(), p.Changed(), msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	publish("wh-1")
	select {
	case id := <-changed:
		if id != "wh-1" {
			t.Errorf("changed(%q), want wh-1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the published id")
	}
	publish("not/an/id")
	wait("all() for an unreadable message", all)

	r.Restart()
	wait("all() after resubscribing to a restarted server", all)

	cancel()
	wait("Watch to return on cancel", done)
}
