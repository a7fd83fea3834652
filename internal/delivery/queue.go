package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// Group is the consumer group every instance's workers belong to.
const Group = "dispatchers"

// ErrFull says the queue holds its maximum of entries; the sender should
// retry later.
var ErrFull = errors.New("delivery queue is full")

// Config sets the queue's keys, limits and retry policy.
type Config struct {
	// Prefix starts every key.
	Prefix string
	// MaxLength is the most entries the queue holds (waiting, in flight or
	// waiting to retry); beyond it, Enqueue fails with ErrFull rather than
	// dropping anything. 0: no limit.
	MaxLength int64
	// MaxAge is how old an entry may get before it is moved to the dead
	// stream instead of dispatched. 0: no limit.
	MaxAge time.Duration
	// Attempts is how many dispatch attempts an entry gets in all.
	Attempts int
	// FirstBackoff and MaxBackoff bound the exponential backoff between
	// attempts; each wait is drawn uniformly below the bound (full jitter).
	FirstBackoff, MaxBackoff time.Duration
	// ClaimAfter is how long an entry may sit in flight without its
	// consumer showing signs of life before another consumer takes it.
	ClaimAfter time.Duration
	// Workers is how many entries one instance dispatches at once.
	Workers int
	// Consumer names this instance in the consumer group; unique per
	// process, the same across config reloads.
	Consumer string
}

// Queue is the Redis side of durable delivery.
type Queue struct {
	client   redis.UniversalClient
	requests redis.Scripter // for scripts run concurrently: batched into shared round trips
	cfg      Config
	stream   string
	retry    string
	dead     string
}

// NewQueue returns the queue under cfg.Prefix.
func NewQueue(client redis.UniversalClient, cfg Config) *Queue {
	return &Queue{
		client:   client,
		requests: redisconn.Batching(client),
		cfg:      cfg,
		stream:   cfg.Prefix + "deliveries",
		retry:    cfg.Prefix + "deliveries:retry",
		dead:     cfg.Prefix + "dead",
	}
}

// Name identifies the queue, for the admin API: its key prefix.
func (q *Queue) Name() string { return q.cfg.Prefix }

// enqueueScript appends an entry unless the queue is full.
// KEYS[1] the stream; ARGV[1] max length (0: none); ARGV[2..] fields.
var enqueueScript = redis.NewScript(`
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('XLEN', KEYS[1]) >= limit then
  return redis.error_reply('QUEUEFULL delivery queue is full')
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
`)

// admitScript is the guard and the enqueue in one round trip, for a single
// Redis (or a Sentinel's master): on a Redis Cluster the stream and the
// webhook's keys are on different slots.
// KEYS[1], KEYS[2] and ARGV[1..4] as for guard.Lua; KEYS[3] the stream;
// ARGV[5] max length (0: none); ARGV[6..] the entry's fields.
// Returns the guard's {1, 0} or {2, ms}, or {0, 0} once queued.
var admitScript = redis.NewScript(`
local cap = tonumber(ARGV[5])
if cap > 0 and redis.call('XLEN', KEYS[3]) >= cap then
  return redis.error_reply('QUEUEFULL delivery queue is full')
end
` + guard.Lua + `
local ok, err = pcall(redis.call, 'XADD', KEYS[3], '*', unpack(ARGV, 6))
if not ok then
  if ARGV[4] == '1' then
    redis.call('DEL', KEYS[2]) -- not queued: the sender's retry must not be a duplicate
  end
  return redis.error_reply(type(err) == 'table' and err.err or tostring(err))
end
return {0, 0}
`)

// OneRoundTrip reports whether Admit can guard and enqueue in one round
// trip: on anything but a Redis Cluster.
func (q *Queue) OneRoundTrip() bool {
	_, cluster := q.client.(*redis.ClusterClient)
	return !cluster
}

// Admit runs the rate limit and replay guard g for a request to webhook id
// and, if it is admitted, enqueues e, all in one atomic script: a delivery
// is marked as seen exactly when it is queued. Only when OneRoundTrip.
//
// Like Enqueue, it returns only once Redis has answered, even when ctx
// ends first (go-redis's batching waits for the batch), so e's body may be
// reused as soon as it returns.
func (q *Queue) Admit(ctx context.Context, g guard.Config, id, deliveryID string, e Entry) (guard.Decision, error) {
	keys, args := g.ScriptArgs(q.cfg.Prefix, id, deliveryID)
	args = append(append(args, q.cfg.MaxLength), e.values()...)
	reply, err := admitScript.Run(ctx, q.requests, append(keys, q.stream), args...).Slice()
	if err != nil {
		return guard.Decision{}, enqueueError(id, err)
	}
	d, err := guard.ParseDecision(reply)
	if err != nil {
		return guard.Decision{}, enqueueError(id, err)
	}
	return d, nil
}

// Enqueue appends e and returns its entry id once Redis holds it.
func (q *Queue) Enqueue(ctx context.Context, e Entry) (string, error) {
	args := append([]any{q.cfg.MaxLength}, e.values()...)
	id, err := enqueueScript.Run(ctx, q.requests, []string{q.stream}, args...).Text()
	if err != nil {
		return "", enqueueError(e.Job.WebhookID, err)
	}
	return id, nil
}

// enqueueError is ErrFull when the queue was full, else err in context.
func enqueueError(webhookID string, err error) error {
	if redis.HasErrorPrefix(err, "QUEUEFULL") {
		return ErrFull
	}
	return fmt.Errorf("enqueueing delivery of webhook %q: %w", webhookID, err)
}

// ensureGroup creates the consumer group (and the stream) if missing. The
// group starts at the stream's beginning, so nothing enqueued before it
// existed is skipped.
func (q *Queue) ensureGroup(ctx context.Context) error {
	err := q.client.XGroupCreateMkStream(ctx, q.stream, Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("creating consumer group: %w", err)
	}
	return nil
}

// Stats describe the queue.
type Stats struct {
	// Length counts entries in the deliveries stream: waiting, in flight,
	// or waiting to retry.
	Length int64 `json:"length"`
	// Pending counts entries read by a consumer and not yet finished.
	Pending int64 `json:"pending"`
	// Retrying counts entries waiting for their next attempt.
	Retrying int64 `json:"retrying"`
	// Dead counts entries in the dead stream.
	Dead int64 `json:"dead"`
	// OldestAgeSeconds is the age of the oldest entry in the deliveries
	// stream; 0 when it is empty.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Stats reads the queue's figures in one pipeline.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var (
		length, retrying, dead *redis.IntCmd
		pending                *redis.XPendingCmd
		oldest                 *redis.XMessageSliceCmd
	)
	_, err := q.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		length = p.XLen(ctx, q.stream)
		pending = p.XPending(ctx, q.stream, Group)
		retrying = p.ZCard(ctx, q.retry)
		dead = p.XLen(ctx, q.dead)
		oldest = p.XRangeN(ctx, q.stream, "-", "+", 1)
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
		return Stats{}, fmt.Errorf("reading queue stats: %w", err)
	}
	s := Stats{Length: length.Val(), Retrying: retrying.Val(), Dead: dead.Val()}
	if p := pending.Val(); p != nil {
		s.Pending = p.Count
	}
	if msgs := oldest.Val(); len(msgs) == 1 {
		if t, ok := idTime(msgs[0].ID); ok {
			s.OldestAgeSeconds = max(time.Since(t).Seconds(), 0)
		}
	}
	return s, nil
}

// idTime is when a stream entry id was made.
func idTime(id string) (time.Time, bool) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// DeadLetters returns up to count dead letters after entry id after ("" to
// start at the oldest), and the id to pass for the next page ("" at the end).
func (q *Queue) DeadLetters(ctx context.Context, after string, count int64) ([]DeadLetter, string, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := q.client.XRangeN(ctx, q.dead, start, "+", count).Result()
	if err != nil {
		return nil, "", fmt.Errorf("listing dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		dl, err := decodeDeadLetter(m.ID, m.Values)
		if err != nil {
			return nil, "", err
		}
		out = append(out, dl)
	}
	next := ""
	if int64(len(msgs)) == count && count > 0 {
		next = msgs[len(msgs)-1].ID
	}
	return out, next, nil
}

// ErrNoSuchEntry says a dead letter id is not in the dead stream.
var ErrNoSuchEntry = errors.New("no such dead letter")

// Replay moves dead letter id back into the queue, as a new entry with no
// attempts made. It is appended before it is removed, so a failure between
// the two can at most replay it twice.
func (q *Queue) Replay(ctx context.Context, id string) error {
	msgs, err := q.client.XRange(ctx, q.dead, id, id).Result()
	if err != nil {
		return fmt.Errorf("reading dead letter %s: %w", id, err)
	}
	if len(msgs) == 0 {
		return ErrNoSuchEntry
	}
	e, err := decodeEntry(id, msgs[0].Values)
	if err != nil {
		return err
	}
	e.Attempts = 0
	if err := q.client.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, Values: e.values()}).Err(); err != nil {
		return fmt.Errorf("replaying dead letter %s: %w", id, err)
	}
	if err := q.client.XDel(ctx, q.dead, id).Err(); err != nil {
		return fmt.Errorf("removing replayed dead letter %s: %w", id, err)
	}
	return nil
}

// ReplayAll replays every dead letter and returns how many it replayed.
func (q *Queue) ReplayAll(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		page, next, err := q.DeadLetters(ctx, after, 100)
		if err != nil {
			return n, err
		}
		for _, dl := range page {
			if err := q.Replay(ctx, dl.ID); err != nil && !errors.Is(err, ErrNoSuchEntry) {
				return n, err
			}
			n++
		}
		if next == "" {
			return n, nil
		}
		after = next
	}
}

// DeleteDead removes dead letter id for good.
func (q *Queue) DeleteDead(ctx context.Context, id string) error {
	n, err := q.client.XDel(ctx, q.dead, id).Result()
	if err != nil {
		return fmt.Errorf("deleting dead letter %s: %w", id, err)
	}
	if n == 0 {
		return ErrNoSuchEntry
	}
	return nil
}
