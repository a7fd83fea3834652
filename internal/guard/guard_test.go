package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

var testConfig = Config{Limit: 3, Window: time.Minute, ReplayWindow: time.Hour}

// checkSemantics runs the same story against any Guard.
func checkSemantics(t *testing.T, g Guard) {
	ctx := context.Background()
	for i, step := range []struct {
		id, delivery string
		want         Verdict
	}{
		{"a", "d1", Admit},
		{"a", "d1", Duplicate}, // not counted
		{"a", "d2", Admit},
		{"a", "", Admit}, // no delivery id: only counted
		{"a", "d3", Limited},
		{"a", "d3", Limited}, // a limited delivery was not marked seen
		{"a", "d1", Duplicate},
		{"b", "d1", Admit}, // delivery ids are per webhook; limits too
	} {
		d, err := g.Check(ctx, step.id, Delivery{ID: step.delivery})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if d.Verdict != step.want {
			t.Fatalf("step %d (%s %q): verdict %d, want %d", i, step.id, step.delivery, d.Verdict, step.want)
		}
		if step.want == Limited && (d.RetryAfter <= 0 || d.RetryAfter > testConfig.Window) {
			t.Fatalf("step %d: retry after %v, want within the window", i, d.RetryAfter)
		}
	}
	if err := g.Forget(ctx, "b", Delivery{ID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.Check(ctx, "b", Delivery{ID: "d1"}); d.Verdict != Admit {
		t.Errorf("a forgotten delivery: verdict %d, want Admit", d.Verdict)
	}
}

func TestRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	g := NewRedis(r.Client, keyspace.Space{Prefix: "p:"}, testConfig)
	checkSemantics(t, g)

	ctx := context.Background()
	if ttl := r.Client.PTTL(ctx, "p:{a}:rl").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("rate-limit window TTL %v, want within a minute", ttl)
	}
	if ttl := r.Client.PTTL(ctx, "p:{a}:seen:d1").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("replay marker TTL %v, want about an hour", ttl)
	}
	keys := r.Client.Keys(ctx, "*").Val()
	for _, k := range keys {
		if !strings.HasPrefix(k, "p:{a}:") && !strings.HasPrefix(k, "p:{b}:") {
			t.Errorf("key %q is outside the webhook's hash tag", k)
		}
	}

	r.Stop()
	d, err := g.Check(ctx, "a", Delivery{ID: "d9"})
	if err == nil || d.Verdict != Admit {
		t.Errorf("Redis down: %+v, %v; want Admit (fail open) and an error", d, err)
	}
}

func TestRedisOff(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	limitOnly := NewRedis(r.Client, keyspace.Space{Prefix: "p:"}, Config{Limit: 1, Window: time.Minute})
	if d, _ := limitOnly.Check(ctx, "a", Delivery{ID: "d1"}); d.Verdict != Admit {
		t.Fatal("first request not admitted")
	}
	if d, _ := limitOnly.Check(ctx, "a", Delivery{ID: "d1"}); d.Verdict != Limited {
		t.Error("without a replay guard a repeated delivery is counted and limited")
	}
	replayOnly := NewRedis(r.Client, keyspace.Space{Prefix: "q:"}, Config{ReplayWindow: time.Minute})
	for range 20 {
		if d, _ := replayOnly.Check(ctx, "a", Delivery{}); d.Verdict != Admit {
			t.Fatal("without a limit every request is admitted")
		}
	}
	r.Stop()
	if _, err := NewRedis(r.Client, keyspace.Space{Prefix: "p:"}, Config{}).Check(ctx, "a", Delivery{ID: "d"}); err != nil {
		t.Errorf("both guards off still talk to Redis: %v", err)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestMemory(t *testing.T) {
	g := NewMemory(testConfig)
	checkSemantics(t, g)

	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g = NewMemory(testConfig)
	g.now = clk.now
	ctx := context.Background()
	for range 3 {
		g.Check(ctx, "a", Delivery{})
	}
	clk.t = clk.t.Add(40 * time.Second)
	if d, _ := g.Check(ctx, "a", Delivery{}); d.Verdict != Limited || d.RetryAfter != 20*time.Second {
		t.Errorf("over the limit: %+v, want Limited for the 20s left", d)
	}
	clk.t = clk.t.Add(20 * time.Second)
	if d, _ := g.Check(ctx, "a", Delivery{ID: "x"}); d.Verdict != Admit {
		t.Errorf("next window: %+v, want Admit", d)
	}
	clk.t = clk.t.Add(time.Hour)
	if d, _ := g.Check(ctx, "a", Delivery{ID: "x"}); d.Verdict != Admit {
		t.Errorf("after the replay window: %+v, want Admit", d)
	}
}

// TestMemoryBound: at most maxSeen markers are kept, the oldest forgotten
// first, and the expired ones as soon as another is set.
func TestMemoryBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := NewMemory(Config{ReplayWindow: time.Hour})
	g.now = clk.now
	ctx := context.Background()
	id := func(i int) Delivery { return Delivery{ID: "d" + strconv.Itoa(i)} }
	for i := range maxSeen + 10 {
		g.Check(ctx, "a", id(i))
	}
	if len(g.seen) > maxSeen {
		t.Errorf("%d markers and %d in order, the bound is %d", len(g.seen), len(g.order), maxSeen)
	}
	for _, tc := range []struct {
		i    int
		want Verdict
	}{{maxSeen + 9, Duplicate}, {10, Duplicate}, {9, Admit}, {0, Admit}} {
		if d, _ := g.Check(ctx, "a", id(tc.i)); d.Verdict != tc.want {
			t.Errorf("delivery %d: %v, want %v (the oldest forgotten first)", tc.i, d.Verdict, tc.want)
		}
	}

	clk.t = clk.t.Add(time.Hour)
	g.Check(ctx, "a", Delivery{ID: "after"})
	if len(g.seen) != 1 {
		t.Errorf("%d markers and %d in order an hour later, want only the new one", len(g.seen), len(g.order))
	}
}

// TestMemoryMarkerSetAgain: a marker set again lives its whole window,
// although an older entry of it is forgotten first.
func TestMemoryMarkerSetAgain(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := NewMemory(Config{ReplayWindow: time.Hour})
	g.now = clk.now
	ctx := context.Background()
	body := Delivery{ID: "first", Digest: "sha256:same"}
	g.Check(ctx, "a", body)
	clk.t = clk.t.Add(30 * time.Minute)
	g.Check(ctx, "a", Delivery{ID: "second", Digest: "sha256:same"}) // the same body again: its digest set again
	clk.t = clk.t.Add(45 * time.Minute)
	g.Check(ctx, "a", Delivery{ID: "third"}) // the first two markers expire
	if d, _ := g.Check(ctx, "a", Delivery{Digest: "sha256:same"}); d.Verdict != Duplicate {
		t.Errorf("the body replayed without an id 45 minutes after it was seen again: %v, want Duplicate", d.Verdict)
	}
}

// BenchmarkMemoryFull admits deliveries into a guard that keeps maxSeen
// markers: each costs as much as into an empty one.
func BenchmarkMemoryFull(b *testing.B) {
	g := NewMemory(Config{ReplayWindow: time.Hour})
	ctx := context.Background()
	for i := range maxSeen {
		g.Check(ctx, "a", Delivery{ID: "fill" + strconv.Itoa(i)})
	}
	b.ResetTimer()
	for i := range b.N {
		g.Check(ctx, "a", Delivery{ID: "d" + strconv.Itoa(i), Digest: "sha256:" + strconv.Itoa(i)})
	}
}

func TestDeliveryID(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{}, ""},
		{http.Header{"X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"}, "Idempotency-Key": {"k"}}, "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{http.Header{"X-Gitlab-Event-Uuid": {"g"}, "Idempotency-Key": {"k"}}, "g"},
		{http.Header{"Idempotency-Key": {"k"}, "Webhook-Id": {"w"}}, "k"},
		{http.Header{"X-Atlassian-Webhook-Identifier": {"j"}, "Webhook-Id": {"w"}}, "j"},
		{http.Header{"Webhook-Id": {"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"}}, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"},
		{http.Header{"X-Github-Delivery": {""}, "Webhook-Id": {"w"}}, "w"},
		{http.Header{"X-Github-Delivery": {"a", "b"}, "Webhook-Id": {"w"}}, "w"},
		{http.Header{"Webhook-Id": {"has space"}}, "sha256:" + "47b5c36fc0b017ba576f10f988d0cbcbc78256dab5de0e4689980898e7c715e3"},
	} {
		if got := DeliveryID(tc.h); got != tc.want {
			t.Errorf("DeliveryID(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
	long := DeliveryID(http.Header{"Webhook-Id": {strings.Repeat("x", 129)}})
	if !strings.HasPrefix(long, "sha256:") || len(long) != 7+64 {
		t.Errorf("a long id gave %q, want its digest", long)
	}
}

// FuzzDeliveryID: whatever a sender puts in the delivery headers, the id is
// empty, or printable ASCII of at most 128 bytes (safe in keys, logs and
// headers), or a digest.
func FuzzDeliveryID(f *testing.F) {
	f.Add("72d3162e-cc78-11e3-81ab-4c9367dc0958", "")
	f.Add("", "a b")
	f.Add("\x00\xff", strings.Repeat("x", 300))
	f.Fuzz(func(t *testing.T, github, webhookID string) {
		h := http.Header{}
		if github != "" {
			h["X-Github-Delivery"] = []string{github}
		}
		if webhookID != "" {
			h["Webhook-Id"] = []string{webhookID}
		}
		id := DeliveryID(h)
		if strings.HasPrefix(id, "sha256:") {
			return
		}
		if len(id) > maxDeliveryID || !integration.PrintableASCII(id) {
			t.Fatalf("delivery id %q is neither short printable ASCII nor a digest", id)
		}
	})
}

// BenchmarkRedisCheck is one guard decision: one EVALSHA on a real Redis.
func BenchmarkRedisCheck(b *testing.B) {
	r := testenv.StartRedis(b)
	g := NewRedis(r.Client, keyspace.Space{Prefix: "b:"}, Config{Limit: 1 << 30, Window: time.Hour, ReplayWindow: time.Hour})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if d, err := g.Check(ctx, "wh", Delivery{ID: "d-" + strconv.Itoa(i)}); err != nil || d.Verdict != Admit {
			b.Fatal(d, err)
		}
	}
}

func TestDeliveryKeys(t *testing.T) {
	body := []byte(`{"action":"opened"}`)
	digest := "sha256:" + func() string { s := sha256.Sum256(body); return hex.EncodeToString(s[:]) }()
	for _, tc := range []struct {
		name          string
		deliveryID    string
		authenticated bool
		key, also     string
	}{
		{"the sender's id, and the digest besides", "delivery-1", true, "delivery-1", digest},
		{"no id: the body's digest", "", true, digest, ""},
		{"unauthenticated with an id", "delivery-1", false, "delivery-1", ""},
		{"unauthenticated with no id: no guard", "", false, "", ""},
	} {
		d := NewDelivery(tc.deliveryID, tc.authenticated, body)
		if d.Key() != tc.key || d.also() != tc.also {
			t.Errorf("%s: Key %q also %q, want %q and %q", tc.name, d.Key(), d.also(), tc.key, tc.also)
		}
	}
}

// TestReplayWithoutItsID: a delivery recorded with its id is a duplicate
// when replayed without the id (its digest was recorded too), but another
// delivery id with the same body is not.
func TestReplayWithoutItsID(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	body := []byte(`{"n":1}`)
	for name, g := range map[string]Guard{"redis": NewRedis(r.Client, keyspace.Space{Prefix: "p:"}, testConfig), "memory": NewMemory(testConfig)} {
		for _, step := range []struct {
			id   string
			want Verdict
		}{
			{"d-1", Admit},
			{"", Duplicate},
			{"d-1", Duplicate},
			{"d-2", Admit},
		} {
			d, err := g.Check(ctx, "wh-"+name, NewDelivery(step.id, true, body))
			if err != nil || d.Verdict != step.want {
				t.Errorf("%s, id %q: %v %v, want %v", name, step.id, d.Verdict, err, step.want)
			}
		}
		// Forgotten (not accepted after all): both markers go.
		if err := g.Forget(ctx, "wh-"+name, NewDelivery("d-1", true, body)); err != nil {
			t.Fatal(err)
		}
		if d, _ := g.Check(ctx, "wh-"+name, NewDelivery("", true, body)); d.Verdict != Admit {
			t.Errorf("%s: after Forget, the same body without id: %v, want admitted", name, d.Verdict)
		}
	}
}
