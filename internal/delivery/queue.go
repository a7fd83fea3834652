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
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// ErrFull says the queue holds its maximum of entries; the sender should
// retry later.
var ErrFull = errors.New("delivery queue is full")

// Config sets the queue's keys, limits and retry policy.
type Config struct {
	// Space names the queue's keys.
	Space keyspace.Space
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
	// MaxInFlight is how many entries for one resource (an assistant, a
	// workflow, a datasource) may be dispatched at once, across every
	// instance; others for it wait in their lanes. 0: no limit.
	MaxInFlight int
	// Consumer names this instance in the consumer group of the earlier
	// versions' queue, whose entries it adopts; unique per process.
	Consumer string
	// Dead bounds the dead stream.
	Dead DeadLimits
}

// DeadLimits bound the dead stream: each time an entry is moved to it, its
// oldest dead letters are dropped while it is over any limit. 0: no limit.
type DeadLimits struct {
	// MaxEntries is the most dead letters kept.
	MaxEntries int64
	// MaxAge is how long a dead letter is kept, from when it died.
	MaxAge time.Duration
	// MaxBytes is the most bytes the dead letters may take in all, counted
	// as the lengths of their field names and values.
	MaxBytes int64
}

// Queue is the Redis side of durable delivery.
type Queue struct {
	client   redis.UniversalClient
	requests redisconn.Requests // for scripts run concurrently: batched into shared round trips
	cfg      Config
	// The stream and its schedule (lanes.go), on one cluster slot.
	stream, ring, waiting, leases, due   string
	lanePrefix, busyPrefix, parkedPrefix string
	parking, holders                     string
	dead                                 string
	deadBytes                            string // the dead stream's size in bytes, on its cluster slot
}

// NewQueue returns the queue in cfg.Space.
func NewQueue(client redis.UniversalClient, cfg Config) *Queue {
	s := cfg.Space
	return &Queue{
		client:       client,
		requests:     redisconn.NewRequests(client),
		cfg:          cfg,
		stream:       s.Queue(),
		ring:         s.Ring(),
		waiting:      s.Waiting(),
		leases:       s.Leases(),
		due:          s.Due(),
		lanePrefix:   s.LanePrefix(),
		busyPrefix:   s.BusyPrefix(),
		parkedPrefix: s.ParkedPrefix(),
		parking:      s.Parking(),
		holders:      s.Holders(),
		dead:         s.Dead(),
		deadBytes:    s.DeadBytes(),
	}
}

// lease is how long a dispatch holds its entry without renewing the lease
// before the entry is handed back for another instance to take.
func (q *Queue) lease() time.Duration { return max(q.cfg.ClaimAfter, 10*time.Millisecond) }

// Name identifies the queue, for the admin API: its key prefix.
func (q *Queue) Name() string { return q.cfg.Space.Prefix }

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
// It waits for Redis within b, whatever ctx says (go-redis's batching
// does not give up on a context): past b's deadline it fails with
// redisconn.ErrDeadline, and e's body may be reused only once b.HandOff's
// release has run; otherwise as soon as it returns.
func (q *Queue) Admit(ctx context.Context, b redisconn.Bound, g guard.Config, id string, d guard.Delivery, e Entry) (guard.Decision, error) {
	decision, err := guard.AdmitAndAppend(ctx, q.requests, b, q.cfg.Space, g, id, d, q.appendOf(e))
	if err != nil {
		return guard.Decision{}, enqueueError(id, err)
	}
	return decision, nil
}

// Enqueue appends e, waiting for Redis within b as Admit does.
func (q *Queue) Enqueue(ctx context.Context, b redisconn.Bound, e Entry) error {
	if err := guard.AppendUnguarded(ctx, q.requests, b, q.appendOf(e)); err != nil {
		return enqueueError(e.Job.WebhookID, err)
	}
	return nil
}

// appendOf is what appends e to the stream, its ticket to its lane.
func (q *Queue) appendOf(e Entry) guard.Append {
	return guard.Append{
		Stream: q.stream, Lane: q.lanePrefix + e.Job.WebhookID, Ring: q.ring, Waiting: q.waiting, Member: e.Job.WebhookID,
		TicketTail: ticketTail(e), MaxLength: q.cfg.MaxLength, Fields: e.values(),
	}
}

// enqueueError is ErrFull when the queue was full, else err in context.
func enqueueError(webhookID string, err error) error {
	if errors.Is(err, guard.ErrStreamFull) {
		return ErrFull
	}
	return fmt.Errorf("enqueueing delivery of webhook %q: %w", webhookID, err)
}

// Stats describe the queue.
type Stats struct {
	// Length counts entries in the queue: waiting, in flight, or waiting
	// to retry.
	Length int64 `json:"length"`
	// Pending counts entries being dispatched.
	Pending int64 `json:"pending"`
	// Retrying counts entries waiting for their next attempt.
	Retrying int64 `json:"retrying"`
	// Dead counts entries in the dead stream.
	Dead int64 `json:"dead"`
	// OldestAgeSeconds is the age of the oldest entry in the queue; 0 when
	// it is empty.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Webhooks are the webhooks with the most entries waiting, most first:
	// at most TopWebhooks of them. The candidates are ranked by the lengths
	// the waiting set holds (recorded as a lane doubles, not on every
	// request), so a lane within a factor of two of the last one listed
	// may be left out.
	Webhooks []WebhookStats `json:"webhooks"`
}

// WebhookStats describe one webhook's lane.
type WebhookStats struct {
	WebhookID string `json:"webhook_id"`
	// Waiting counts the webhook's entries waiting to be dispatched (not
	// in flight, not waiting to retry).
	Waiting int64 `json:"waiting"`
	// OldestAgeSeconds is the age of the oldest of them.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// TopWebhooks is how many webhooks Stats lists: the bound on the metrics'
// per-webhook label values.
const TopWebhooks = 10

// lanesScript returns the id of the queue's oldest entry ("" when it is
// empty), and for the ARGV[2] lanes with the most tickets, most first,
// {webhook id, tickets, the first ticket}: of twice as many candidates
// taken from the waiting set, whose lengths may be behind by up to half
// (admit.lua), those whose lanes are longest now. KEYS[1] the stream,
// KEYS[2] the waiting set; ARGV[1] the lane prefix. No entry's body leaves
// Redis.
var lanesScript = redis.NewScript(`
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local out = {}
local want = tonumber(ARGV[2])
for _, webhook in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, 2 * want - 1)) do
  local lane = ARGV[1] .. webhook
  out[#out + 1] = {webhook, redis.call('LLEN', lane), redis.call('LINDEX', lane, 0) or ''}
end
table.sort(out, function(a, b)
  if a[2] ~= b[2] then
    return a[2] > b[2]
  end
  return a[1] < b[1]
end)
for i = #out, want + 1, -1 do
  out[i] = nil
end
return {first and first[1] or '', out}
`)

// Stats reads the queue's figures in one pipeline.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var (
		length, pending, retrying, dead *redis.IntCmd
		lanes                           *redis.Cmd
	)
	_, err := q.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		length = p.XLen(ctx, q.stream)
		pending = p.ZCard(ctx, q.leases)
		retrying = p.ZCard(ctx, q.due)
		dead = p.XLen(ctx, q.dead)
		lanes = lanesScript.Eval(ctx, p, []string{q.stream, q.waiting}, q.lanePrefix, TopWebhooks)
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("reading queue stats: %w", err)
	}
	s := Stats{Length: length.Val(), Pending: pending.Val(), Retrying: retrying.Val(), Dead: dead.Val()}
	reply, _ := lanes.Val().([]any)
	if len(reply) != 2 {
		return Stats{}, fmt.Errorf("reading queue stats: unexpected reply %v", lanes.Val())
	}
	first, _ := reply[0].(string)
	s.OldestAgeSeconds = ageSeconds(first)
	rows, _ := reply[1].([]any)
	for _, r := range rows {
		row, _ := r.([]any)
		if len(row) != 3 {
			continue
		}
		id, _ := row[0].(string)
		n, _ := row[1].(int64)
		t, _ := row[2].(string)
		s.Webhooks = append(s.Webhooks, WebhookStats{WebhookID: id, Waiting: n, OldestAgeSeconds: ageSeconds(ticket(t).entryID())})
	}
	return s, nil
}

// ageSeconds is the age of the stream entry id; 0 for none.
func ageSeconds(id string) float64 {
	if t, ok := idTime(id); ok {
		return max(time.Since(t).Seconds(), 0)
	}
	return 0
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

// deadBytesLua keeps the dead stream's byte counter: the sum over its
// entries of the lengths of their field names and values. KEYS[1] the dead
// stream, KEYS[2] the counter.
//
// deadBytes returns the counter once it agrees with the stream: dropped
// when the stream is empty (it was deleted by hand, or emptied), and
// counted entry by entry when it is missing while the stream is not (a
// dead stream from before the counter), or is not a number. A counter exists only while the
// stream has entries.
const deadBytesLua = `
local function entrySize(fields, from)
  local n = 0
  for i = from, #fields do
    n = n + #fields[i]
  end
  return n
end

local function idMillis(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function deadBytes()
  local n = redis.call('GET', KEYS[2])
  if redis.call('XLEN', KEYS[1]) == 0 then
    if n then
      redis.call('DEL', KEYS[2])
    end
    return 0
  end
  if tonumber(n) then
    return tonumber(n)
  end
  n = 0 -- none, or not a number (a bad edit): counted again
  local start = '-'
  while true do
    local e = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1)[1]
    if not e then
      break
    end
    n = n + entrySize(e[2], 1)
    start = '(' .. e[1]
  end
  redis.call('SET', KEYS[2], n)
  return n
end
`

// listDeadScript returns up to ARGV[3] dead letters from ARGV[1] ("-" or
// "(<id>") to ARGV[2] ("+" or an id), each as {id, {field, value, ...}
// without the body and the forwarded headers (which may hold secrets), the
// body's length}. It reads one entry at a time, so that it never holds
// more than one body.
var listDeadScript = redis.NewScript(`
local out, start = {}, ARGV[1]
for _ = 1, tonumber(ARGV[3]) do
  local e = redis.call('XRANGE', KEYS[1], start, ARGV[2], 'COUNT', 1)[1]
  if not e then
    break
  end
  local fields, body = {}, 0
  for i = 1, #e[2], 2 do
    if e[2][i] == '` + fieldBody + `' then
      body = #e[2][i + 1]
    elseif e[2][i] ~= '` + fieldForward + `' then
      fields[#fields + 1] = e[2][i]
      fields[#fields + 1] = e[2][i + 1]
    end
  end
  out[#out + 1] = {e[1], fields, body}
  start = '(' .. e[1]
end
return out
`)

// MaxDeadPage bounds how many dead letters one listing returns.
const MaxDeadPage = 1000

// ValidEntryID reports whether id looks like a stream entry's id:
// <ms>-<seq>.
func ValidEntryID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// DeadPage reads the page of dead letters a listing asks for, as the
// admin API and the console take it: after, an entry id or "" (from the
// oldest); count, 1 to MaxDeadPage, or "" for 100. The error says what is
// wrong with them.
func DeadPage(after, count string) (string, int64, error) {
	n := int64(100)
	if count != "" {
		c, err := strconv.ParseInt(count, 10, 64)
		if err != nil || c < 1 || c > MaxDeadPage {
			return "", 0, fmt.Errorf("count must be 1 to %d", MaxDeadPage)
		}
		n = c
	}
	if after != "" && !ValidEntryID(after) {
		return "", 0, errors.New("after must be an entry id")
	}
	return after, n, nil
}

// DeadLetters returns up to count dead letters after entry id after ("" to
// start at the oldest), and the id to pass for the next page ("" at the end).
// Their bodies are not read: only their sizes.
func (q *Queue) DeadLetters(ctx context.Context, after string, count int64) ([]DeadLetter, string, error) {
	return q.deadLetters(ctx, after, "+", count)
}

// deadLetters lists dead letters after entry id after, up to entry id last
// ("+": to the end).
func (q *Queue) deadLetters(ctx context.Context, after, last string, count int64) ([]DeadLetter, string, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	reply, err := listDeadScript.Run(ctx, q.client, []string{q.dead}, start, last, count).Slice()
	if err != nil {
		return nil, "", fmt.Errorf("listing dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(reply))
	for _, r := range reply {
		row, _ := r.([]any)
		if len(row) != 3 {
			return nil, "", fmt.Errorf("listing dead letters: unexpected reply %v", r)
		}
		id, _ := row[0].(string)
		flat, _ := row[1].([]any)
		bodyBytes, _ := row[2].(int64)
		out = append(out, decodeDeadLetter(id, fieldsOf(flat), int(bodyBytes)))
	}
	next := ""
	if int64(len(out)) == count && count > 0 {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// ErrNoSuchEntry says a dead letter id is not in the dead stream.
var ErrNoSuchEntry = errors.New("no such dead letter")

// ErrUnreadable says a dead letter cannot be read as an entry (it was
// buried because it could not be): it cannot be replayed, only deleted.
var ErrUnreadable = errors.New("the dead letter cannot be read as a webhook")

// deleteDeadScript removes dead letter ARGV[1] and takes its size off the
// counter. Returns 1, or 0 when there was no such entry.
var deleteDeadScript = redis.NewScript(deadBytesLua + `
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not e then
  return 0
end
deadBytes()
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('DECRBY', KEYS[2], entrySize(e[2], 1))
end
return 1
`)

// deleteDead removes dead letter id, if it is there, and reports whether it was.
func (q *Queue) deleteDead(ctx context.Context, id string) (bool, error) {
	n, err := deleteDeadScript.Run(ctx, q.client, []string{q.dead, q.deadBytes}, id).Int64()
	return n == 1, err
}

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
	e, err := readEntry(id, msgs[0].Values)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	e.Attempts = 0
	if err := q.Enqueue(ctx, redisconn.Bound{}, e); err != nil {
		return fmt.Errorf("replaying dead letter %s: %w", id, err)
	}
	if _, err := q.deleteDead(ctx, id); err != nil {
		return fmt.Errorf("removing replayed dead letter %s: %w", id, err)
	}
	return nil
}

// lastDeadScript returns the id of the dead stream's newest entry, or nil
// when it is empty, without sending its body.
var lastDeadScript = redis.NewScript(`
local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if e then
  return e[1]
end
return false
`)

// ReplayAll replays the dead letters present when it is called, and
// returns how many it replayed and how many it left because they cannot
// be read as entries (ErrUnreadable: delete them). Entries that die while
// it runs, replayed ones among them, are left for later.
func (q *Queue) ReplayAll(ctx context.Context) (replayed, unreadable int, err error) {
	last, err := lastDeadScript.Run(ctx, q.client, []string{q.dead}).Text()
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading the newest dead letter: %w", err)
	}
	after := ""
	for {
		page, next, err := q.deadLetters(ctx, after, last, 100)
		if err != nil {
			return replayed, unreadable, err
		}
		for _, dl := range page {
			switch err := q.Replay(ctx, dl.ID); {
			case err == nil:
				replayed++
			case errors.Is(err, ErrUnreadable):
				unreadable++
			case !errors.Is(err, ErrNoSuchEntry):
				return replayed, unreadable, err
			}
		}
		if next == "" {
			return replayed, unreadable, nil
		}
		after = next
	}
}

// DeleteDead removes dead letter id for good.
func (q *Queue) DeleteDead(ctx context.Context, id string) error {
	ok, err := q.deleteDead(ctx, id)
	if err != nil {
		return fmt.Errorf("deleting dead letter %s: %w", id, err)
	}
	if !ok {
		return ErrNoSuchEntry
	}
	return nil
}
