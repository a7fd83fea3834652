package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

var refused = dispatch.Result{Class: dispatch.Final, Step: "create workflow execution", Status: 404,
	Reason: "create workflow execution: CodeMie answered 404"}

// burier moves entries to q's dead stream the way a worker does, and
// counts the dead letters it dropped.
type burier struct {
	w       *Workers
	dropped atomic.Int64
}

func newBurier(q *Queue) *burier {
	b := &burier{}
	b.w = &Workers{q: q, logger: zap.NewNop(), now: time.Now,
		events: Events{DeadDropped: func(n int) { b.dropped.Add(int64(n)) }}}
	return b
}

// bury buries e as a worker does after its attempt failed for good.
func (b *burier) bury(t *testing.T, e Entry) {
	t.Helper()
	values := map[string]any{}
	v := e.values()
	for i := 0; i < len(v); i += 2 {
		values[v[i].(string)] = v[i+1]
	}
	before := b.w.q.client.XLen(context.Background(), b.w.q.dead).Val()
	b.w.bury(context.Background(), "0-1", values, e, 1, refused)
	if after := b.w.q.client.XLen(context.Background(), b.w.q.dead).Val(); after == before && b.dropped.Load() == 0 {
		t.Fatalf("%s was not buried", e.Job.DeliveryID)
	}
}

// deadIDs lists the delivery ids in q's dead stream, oldest first.
func deadIDs(t *testing.T, q *Queue) []string {
	t.Helper()
	letters, _, err := q.DeadLetters(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, dl := range letters {
		ids = append(ids, dl.DeliveryID)
	}
	return ids
}

// checkDeadBytes checks that the counter holds the dead stream's size: the
// lengths of every entry's field names and values.
func checkDeadBytes(t *testing.T, q *Queue) int64 {
	t.Helper()
	ctx := context.Background()
	msgs, err := q.client.XRange(ctx, q.dead, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, m := range msgs {
		for k, v := range m.Values {
			want += int64(len(k) + len(v.(string)))
		}
	}
	got, err := q.client.Get(ctx, q.deadBytes).Int64()
	switch {
	case errors.Is(err, redis.Nil) && len(msgs) == 0:
	case err != nil:
		t.Fatalf("reading %s: %v (%d dead letters)", q.deadBytes, err, len(msgs))
	case got != want:
		t.Fatalf("%s = %d, the %d dead letters take %d bytes", q.deadBytes, got, len(msgs), want)
	}
	return want
}

func withDead(limits DeadLimits) Config {
	cfg := testConfig
	cfg.Dead = limits
	return cfg
}

func TestDeadStreamMaxEntries(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, withDead(DeadLimits{MaxEntries: 3}))
	b := newBurier(q)
	for i := range 5 {
		b.bury(t, entry(fmt.Sprint("d-", i)))
	}
	if ids := deadIDs(t, q); !slices.Equal(ids, []string{"d-2", "d-3", "d-4"}) {
		t.Errorf("dead letters %v, want the 3 newest", ids)
	}
	if n := b.dropped.Load(); n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}
	checkDeadBytes(t, q)
}

func TestDeadStreamMaxBytes(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	big := func(id string) Entry {
		e := entry(id)
		e.Job.Body = bytes.Repeat([]byte("b"), 10_000)
		return e
	}
	b := newBurier(NewQueue(r.Client, testConfig))
	b.bury(t, big("d-0"))
	size := checkDeadBytes(t, b.w.q)
	if size < 10_000 {
		t.Fatalf("one dead letter counts %d bytes, its body alone 10000", size)
	}

	// Room for two and a half: the third one pushes the oldest out.
	q := NewQueue(r.Client, withDead(DeadLimits{MaxBytes: 2*size + size/2}))
	b = newBurier(q)
	for i := 1; i < 4; i++ {
		b.bury(t, big(fmt.Sprint("d-", i)))
	}
	if ids := deadIDs(t, q); !slices.Equal(ids, []string{"d-2", "d-3"}) {
		t.Errorf("dead letters %v, want the 2 newest", ids)
	}
	if n := b.dropped.Load(); n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}
	if got := checkDeadBytes(t, q); got > 2*size+size/2 {
		t.Errorf("dead stream holds %d bytes, over its %d", got, 2*size+size/2)
	}

	// An entry over the limit on its own does not stay either.
	q = NewQueue(r.Client, withDead(DeadLimits{MaxBytes: size / 2}))
	b = newBurier(q)
	b.bury(t, big("d-huge"))
	if n, ids := b.dropped.Load(), deadIDs(t, q); n != 3 || len(ids) != 0 {
		t.Errorf("%d dropped, %v left; want all 3 dropped", n, ids)
	}
	if r.Client.Exists(ctx, q.deadBytes).Val() != 0 {
		t.Error("the counter of an empty dead stream was kept")
	}
}

// TestDeadStreamMaxAge: dead letters older than MaxAge go, and a dead
// stream from before the byte counter (written here straight to Redis) is
// counted once when the next entry dies.
func TestDeadStreamMaxAge(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	q := NewQueue(r.Client, withDead(DeadLimits{MaxAge: time.Hour}))
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i, id := range []string{fmt.Sprintf("%d-0", old), fmt.Sprintf("%d-1", old), "*"} {
		e := entry(fmt.Sprint("pre-", i))
		if err := r.Client.XAdd(ctx, &redis.XAddArgs{Stream: q.dead, ID: id, Values: e.values()}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := newBurier(q)
	b.bury(t, entry("new"))
	if ids := deadIDs(t, q); !slices.Equal(ids, []string{"pre-2", "new"}) {
		t.Errorf("dead letters %v, want those of the last hour", ids)
	}
	if n := b.dropped.Load(); n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}
	checkDeadBytes(t, q)
}

// TestDeadBytesFollowsDeleteAndReplay: every way out of the dead stream
// takes its entry's size off the counter.
func TestDeadBytesFollowsDeleteAndReplay(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	q := NewQueue(r.Client, testConfig)
	b := newBurier(q)
	for i := range 4 {
		b.bury(t, entry(fmt.Sprint("d-", i)))
	}
	checkDeadBytes(t, q)
	letters, _, err := q.DeadLetters(ctx, "", 10)
	if err != nil || len(letters) != 4 {
		t.Fatalf("%d dead letters, %v", len(letters), err)
	}
	if err := q.DeleteDead(ctx, letters[0].ID); err != nil {
		t.Fatal(err)
	}
	checkDeadBytes(t, q)
	if err := q.DeleteDead(ctx, letters[0].ID); !errors.Is(err, ErrNoSuchEntry) {
		t.Errorf("deleting twice: %v", err)
	}
	checkDeadBytes(t, q)
	if err := q.Replay(ctx, letters[1].ID); err != nil {
		t.Fatal(err)
	}
	checkDeadBytes(t, q)
	if n, _, err := q.ReplayAll(ctx); err != nil || n != 2 {
		t.Fatalf("replay-all: %d, %v", n, err)
	}
	if checkDeadBytes(t, q) != 0 || r.Client.Exists(ctx, q.deadBytes).Val() != 0 {
		t.Error("an empty dead stream kept its counter")
	}

	// A dead stream deleted by hand leaves no count behind.
	b.bury(t, entry("d-4"))
	r.Client.Del(ctx, q.dead)
	b.bury(t, entry("d-5"))
	checkDeadBytes(t, q)
}

func TestDeadLettersOnCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	ctx := context.Background()
	for _, prefix := range []string{"t:", "{t}:", "t}x:"} {
		cfg := withDead(DeadLimits{MaxEntries: 2, MaxAge: time.Hour, MaxBytes: 1 << 20})
		cfg.Space = keyspace.Space{Prefix: prefix}
		q := NewQueue(cl.Client, cfg)
		if a, b := cl.Slot(t, q.dead), cl.Slot(t, q.deadBytes); a != b {
			t.Fatalf("prefix %q: %s on slot %d, %s on %d", prefix, q.dead, a, q.deadBytes, b)
		}
		bu := newBurier(q)
		for i := range 3 {
			bu.bury(t, entry(fmt.Sprint("d-", i)))
		}
		if ids := deadIDs(t, q); !slices.Equal(ids, []string{"d-1", "d-2"}) || bu.dropped.Load() != 1 {
			t.Errorf("prefix %q: dead letters %v, %d dropped", prefix, ids, bu.dropped.Load())
		}
		checkDeadBytes(t, q)
		letters, _, err := q.DeadLetters(ctx, "", 10)
		if err != nil || len(letters) != 2 {
			t.Fatalf("prefix %q: %d dead letters, %v", prefix, len(letters), err)
		}
		if err := q.DeleteDead(ctx, letters[0].ID); err != nil {
			t.Fatal(err)
		}
		if n, _, err := q.ReplayAll(ctx); err != nil || n != 1 {
			t.Errorf("prefix %q: replay-all %d, %v", prefix, n, err)
		}
		checkDeadBytes(t, q)
	}
}

// TestDeadLettersReadNoBodies: listing dead letters allocates next to
// nothing of their bodies' size, and still says how big each is.
func TestDeadLettersReadNoBodies(t *testing.T) {
	r := testenv.StartRedis(t)
	q := NewQueue(r.Client, testConfig)
	b := newBurier(q)
	const bodySize = 2 << 20
	for i := range 10 {
		e := entry(fmt.Sprint("d-", i))
		e.Job.Body = bytes.Repeat([]byte{'x'}, bodySize)
		b.bury(t, e)
	}
	ctx := context.Background()
	if _, _, err := q.DeadLetters(ctx, "", 1); err != nil { // loads the script
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	letters, _, err := q.DeadLetters(ctx, "", 100)
	runtime.ReadMemStats(&after)
	if err != nil || len(letters) != 10 {
		t.Fatalf("%d dead letters, %v", len(letters), err)
	}
	for _, dl := range letters {
		if dl.BodyBytes != bodySize || dl.Headers["X-Github-Event"] != "push" || dl.LastStatus != 404 {
			t.Errorf("dead letter %+v", dl)
		}
	}
	n := after.TotalAlloc - before.TotalAlloc
	t.Logf("listing 10 dead letters of 2 MiB allocated %d bytes", n)
	if n > 1<<20 {
		t.Errorf("listing 10 dead letters of 2 MiB allocated %d bytes, want under 1 MiB", n)
	}
}

// TestDeadLetterReleasesReplayMarker: a delivery that dies no longer counts
// as seen, so the sender's redelivery of it is admitted.
func TestDeadLetterReleasesReplayMarker(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	q := NewQueue(r.Client, testConfig)
	g := guard.Config{ReplayWindow: time.Hour}
	byID := entry("d-1")
	byKey := entry("d-2")
	byKey.ReplayKey = "sha256:0a1b"
	for _, c := range []struct {
		key string
		e   Entry
	}{{"d-1", byID}, {"sha256:0a1b", byKey}} {
		if d, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: c.key}, c.e); err != nil || d.Verdict != guard.Admit {
			t.Fatalf("admitting %s: %+v, %v", c.key, d, err)
		}
	}
	markers := []string{keyspace.Space{Prefix: "t:"}.Seen("wh", "d-1"), keyspace.Space{Prefix: "t:"}.Seen("wh", "sha256:0a1b")}
	if n := r.Client.Exists(ctx, markers...).Val(); n != 2 {
		t.Fatalf("%d of 2 deliveries marked as seen", n)
	}
	var dead atomic.Int32
	start(t, q, newScripted(func(dispatch.Job, int) dispatch.Result { return refused }), Events{Dead: func() { dead.Add(1) }})
	testenv.Eventually(t, "both deliveries to die", func() bool { return dead.Load() == 2 })
	for _, m := range markers {
		if r.Client.Exists(ctx, m).Val() != 0 {
			t.Errorf("%s is still set: a redelivery would be a duplicate", m)
		}
	}
	if d, err := q.Admit(ctx, redisconn.Bound{}, g, "wh", guard.Delivery{ID: "d-1"}, entry("d-1")); err != nil || d.Verdict != guard.Admit {
		t.Errorf("the redelivery: %+v, %v; want admitted", d, err)
	}
}

// onFirstReplay is a go-redis hook that runs fn once, before the first
// command that appends to the stream stream.
type onFirstReplay struct {
	stream string
	once   sync.Once
	fn     func()
}

func (h *onFirstReplay) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *onFirstReplay) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.seen(cmd)
		return next(ctx, cmd)
	}
}

func (h *onFirstReplay) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.seen(cmd)
		}
		return next(ctx, cmds)
	}
}

// seen runs fn once cmd is the first to name the stream.
func (h *onFirstReplay) seen(cmd redis.Cmder) {
	for _, a := range cmd.Args() {
		if a == h.stream {
			h.once.Do(h.fn)
			return
		}
	}
}

// TestReplayAllStopsAtStart: entries that die while replay-all runs (here
// 100, as soon as it replays its first) are not replayed by it.
func TestReplayAllStopsAtStart(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	b := newBurier(NewQueue(r.Client, testConfig))
	for i := range 150 {
		b.bury(t, entry(fmt.Sprint("before-", i)))
	}
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(&onFirstReplay{stream: "{t:queue}", fn: func() {
		for i := range 100 {
			b.bury(t, entry(fmt.Sprint("during-", i)))
		}
	}})
	n, _, err := NewQueue(client, testConfig).ReplayAll(ctx)
	if err != nil || n != 150 {
		t.Errorf("replay-all: %d, %v; want the 150 dead when it started", n, err)
	}
	ids := deadIDs(t, b.w.q)
	if len(ids) != 100 || !strings.HasPrefix(ids[0], "during-") {
		t.Errorf("%d dead letters left, first %v; want the 100 that died during the call", len(ids), ids[:min(len(ids), 1)])
	}
	if l := r.Client.XLen(ctx, "{t:queue}").Val(); l != 150 {
		t.Errorf("%d entries queued, want 150", l)
	}
}

// TestReplayAllPassesUnreadable: a dead letter that cannot be read as an
// entry (buried for that) is counted and left, and the others are
// replayed; replayed alone, it is ErrUnreadable.
func TestReplayAllPassesUnreadable(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	q := NewQueue(r.Client, testConfig)
	b := newBurier(q)
	b.bury(t, entry("d-1"))
	bad, err := r.Client.XAdd(ctx, &redis.XAddArgs{Stream: q.dead, Values: []any{fieldMeta, "{not json", fieldBody, "x"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	b.bury(t, entry("d-2"))
	if replayed, unreadable, err := q.ReplayAll(ctx); err != nil || replayed != 2 || unreadable != 1 {
		t.Errorf("replay-all: %d replayed, %d unreadable, %v; want 2 and 1", replayed, unreadable, err)
	}
	if err := q.Replay(ctx, bad); !errors.Is(err, ErrUnreadable) {
		t.Errorf("replaying the unreadable one: %v", err)
	}
	if l := r.Client.XLen(ctx, q.dead).Val(); l != 1 {
		t.Errorf("%d dead letters left, want the unreadable one", l)
	}
}

// TestAdoptEarlierQueue: what the earlier versions' queue holds and no
// consumer is dispatching (an unread entry, one held by a consumer gone
// silent, a due retry) is delivered, attempts counted; an entry that cannot
// be read becomes a dead letter; the emptied stream is deleted.
func TestAdoptEarlierQueue(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	space := keyspace.Space{Prefix: "t:"}
	legacy, retry := space.Deliveries(), space.Retry()
	if err := r.Client.XGroupCreateMkStream(ctx, legacy, keyspace.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	add := func(values ...any) string {
		t.Helper()
		id, err := r.Client.XAdd(ctx, &redis.XAddArgs{Stream: legacy, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	read := func(consumer string) {
		t.Helper()
		if err := r.Client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: keyspace.Group, Consumer: consumer,
			Streams: []string{legacy, ">"}, Count: 1, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add(entry("held-by-ghost").values()...)
	read("ghost")
	retried := add(entry("retried").values()...)
	read("old-instance")
	r.Client.XAck(ctx, legacy, keyspace.Group, retried)
	r.Client.ZAdd(ctx, retry, redis.Z{Score: 0, Member: retried + "|2"})
	add(entry("unread").values()...)
	add("not-an-entry", "x")

	cfg := testConfig
	cfg.ClaimAfter = 100 * time.Millisecond
	q := NewQueue(r.Client, cfg)
	s := newScripted(succeed)
	var dead atomic.Int32
	start(t, q, s, Events{Dead: func() { dead.Add(1) }})
	testenv.Eventually(t, "every adoptable entry to be delivered", func() bool {
		return s.count("held-by-ghost") == 1 && s.count("retried") == 1 && s.count("unread") == 1
	})
	testenv.Eventually(t, "the unreadable entry to die and the old stream to go", func() bool {
		return dead.Load() == 1 && r.Client.Exists(ctx, legacy, retry).Val() == 0
	})
	if n := r.Client.XLen(ctx, space.Queue()).Val(); n != 0 {
		t.Errorf("%d entries left in the queue", n)
	}
	dl, _, err := q.DeadLetters(ctx, "", 10)
	if err != nil || len(dl) != 1 || dl[0].LastStep != "decode" {
		t.Errorf("dead letters %+v, %v; want the unreadable entry", dl, err)
	}

}

// TestOmittedHeadersNotStored: a header named in omit is not kept, even
// with the name of a header that is.
func TestOmittedHeadersNotStored(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	q := NewQueue(r.Client, testConfig)
	job := dispatch.Job{WebhookID: "wh", ResourceType: "workflow", ResourceID: "wf", DeliveryID: "d-1", Body: []byte("{}")}
	h := http.Header{
		"User-Agent":     {"secure-value-7f3a"},
		"X-Github-Event": {"secret-event-91c2"},
		"Content-Type":   {"application/json"},
	}
	if err := q.Enqueue(ctx, redisconn.Bound{}, NewEntry(job, h, []string{"User-Agent", "x-github-event"}, time.Now())); err != nil {
		t.Fatal(err)
	}
	msgs, err := r.Client.XRange(ctx, "{t:queue}", "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d entries, %v", len(msgs), err)
	}
	raw := fmt.Sprint(msgs[0].Values)
	if strings.Contains(raw, "secure-value-7f3a") || strings.Contains(raw, "secret-event-91c2") {
		t.Errorf("an omitted header was stored: %s", raw)
	}
	e, err := decodeEntry(msgs[0].ID, msgs[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if e.Headers["Content-Type"] != "application/json" || len(e.Headers) != 1 {
		t.Errorf("kept headers %v, want Content-Type alone", e.Headers)
	}
}

// TestAdoptWithoutGroupAndInBulk: a stream of the earlier versions without
// its consumer group (recreated by an earlier version's enqueue after it
// was deleted) is adopted, and a backlog of 300 is adopted at once, not a
// batch per claim_after.
func TestAdoptWithoutGroupAndInBulk(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	legacy := keyspace.Space{Prefix: "t:"}.Deliveries()
	for i := range 300 {
		if err := r.Client.XAdd(ctx, &redis.XAddArgs{Stream: legacy, Values: entry(fmt.Sprint("old-", i)).values()}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig
	cfg.ClaimAfter, cfg.Workers = time.Hour, 64 // one adoption round in the test's time
	s := newScripted(succeed)
	start(t, NewQueue(r.Client, cfg), s, Events{})
	testenv.Eventually(t, "the 300 to be delivered", func() bool {
		for i := range 300 {
			if s.count(fmt.Sprint("old-", i)) != 1 {
				return false
			}
		}
		return true
	})
}
