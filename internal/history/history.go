// Package history is the delivery log: one compact record per request that
// reached a webhook and per dispatch attempt's outcome, kept in one Redis
// stream bounded by count and age, for the console and the tail.
//
// Records are written off the request's path: Writer.Add hands a record to
// a goroutine that appends a batch of them in one pipelined round trip
// every flushInterval, so the intake keeps its one round trip. A record never
// holds a secret: the handler fills it from the answer and the job, never
// from headers, and a body's preview is redacted (Preview).
package history

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The outcomes a record can have.
const (
	// Accepted: taken in (queued, or dispatched in sync mode: see Reason).
	Accepted = "accepted"
	// Collapsed: a datasource reindex covered by one already queued.
	Collapsed = "collapsed"
	// Filtered: authenticated and dropped by an event filter or a filter
	// expression.
	Filtered = "filtered"
	// Refused: refused before or at authentication (unknown id, disabled,
	// bad signature, too large, bad body...).
	Refused = "refused"
	// Duplicate: a delivery already seen.
	Duplicate = "duplicate"
	// Limited: over the webhook's rate limit.
	Limited = "limited"
	// Failed: not taken in because of a fault on our side or CodeMie's
	// (store or queue unavailable, queue full, sync dispatch failed).
	Failed = "failed"
	// Dispatched: CodeMie was triggered.
	Dispatched = "dispatched"
	// Retried: an attempt failed and another is scheduled.
	Retried = "retried"
	// Dead: attempts given up; the entry is a dead letter.
	Dead = "dead"
)

// Outcomes lists every outcome, in the order the console offers them.
var Outcomes = []string{Accepted, Collapsed, Filtered, Refused, Duplicate, Limited, Failed, Dispatched, Retried, Dead}

// Record is what the log keeps of one event. Zero fields are left out.
type Record struct {
	// ID is the record's stream id; set when read.
	ID string `json:"id,omitempty"`
	// Time is when it happened.
	Time time.Time `json:"time"`
	// WebhookID is the webhook the request was sent to.
	WebhookID string `json:"webhook_id"`
	// DeliveryID is the sender's delivery id, or the edge's.
	DeliveryID string `json:"delivery_id,omitempty"`
	// Outcome is one of Outcomes.
	Outcome string `json:"outcome"`
	// Reason is the finer label: the edge's outcome (the metric's label)
	// or the dispatch's failure reason.
	Reason string `json:"reason,omitempty"`
	// Status is what the edge answered the sender.
	Status int `json:"status,omitempty"`
	// Attempts counts the dispatch attempts made so far.
	Attempts int `json:"attempts,omitempty"`
	// Step is the CodeMie call that failed.
	Step string `json:"step,omitempty"`
	// CodeMieStatus is what CodeMie answered that call.
	CodeMieStatus int `json:"codemie_status,omitempty"`
	// DurationMs is the time spent at the edge, or on the attempt, in ms.
	DurationMs float64 `json:"duration_ms,omitempty"`
	// AgeMs is, for a dispatch outcome, the time since the webhook was
	// received, in ms.
	AgeMs float64 `json:"age_ms,omitempty"`
	// BodyBytes is the size of the request's body.
	BodyBytes int `json:"body_bytes,omitempty"`
	// Preview is the start of the body, redacted, for integrations that
	// opt in (log_preview).
	Preview string `json:"preview,omitempty"`
	// Entry is the queue entry's id, when there is one.
	Entry string `json:"entry,omitempty"`
	// TraceID is the trace the request was part of.
	TraceID string `json:"trace_id,omitempty"`
	// Unauthenticated: the request was refused (or failed) before its
	// sender proved who it is. Such records are kept apart, in a smaller
	// stream, so that nobody without a webhook's secret can push the
	// others out of the log.
	Unauthenticated bool `json:"unauthenticated,omitempty"`
}

// Limits bound the log.
type Limits struct {
	// MaxEntries is the most records kept; the oldest go first.
	// Unauthenticated records are kept apart, at most a tenth as many
	// (and at least minUnauthenticated).
	MaxEntries int64
	// MaxAge is how long a record is kept; 0: no limit.
	MaxAge time.Duration
}

// minUnauthenticated is the least number of unauthenticated records kept.
const minUnauthenticated = 1000

// maxUnauthenticated is the most unauthenticated records kept.
func (lim Limits) maxUnauthenticated() int64 {
	return max(lim.MaxEntries/10, min(lim.MaxEntries, minUnauthenticated), 1)
}

// Log reads and writes the delivery log: the stream key, and the stream
// unauthenticated for the records of requests whose sender never proved
// who it is, through client.
type Log struct {
	client               redis.UniversalClient
	key, unauthenticated string
	limits               Limits
}

// New returns the log in stream key, with its unauthenticated records in
// stream unauthenticated.
func New(client redis.UniversalClient, key, unauthenticated string, limits Limits) *Log {
	return &Log{client: client, key: key, unauthenticated: unauthenticated, limits: limits}
}

// Limits are the log's bounds.
func (l *Log) Limits() Limits { return l.limits }

// field is the stream field that holds a record's JSON.
const field = "r"

// appendLua appends records to one stream and bounds it: KEYS[1] the
// stream, ARGV[1] its most entries, ARGV[2] the least id it keeps ("":
// no age limit), ARGV[3..] the records. One script per stream and batch
// costs the edge one command where an XADD per record cost one each.
const appendLua = `
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', '` + field + `', ARGV[i])
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
end
return 0
`

// Append writes records in one round trip: for each of the two streams,
// one script that appends its records and trims it to its count and of
// what is older than MaxAge.
func (l *Log) Append(ctx context.Context, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	cutoff := ""
	if l.limits.MaxAge > 0 {
		cutoff = strconv.FormatInt(time.Now().Add(-l.limits.MaxAge).UnixMilli(), 10)
	}
	main := []any{max(l.limits.MaxEntries, 1), cutoff}
	unauthenticated := []any{l.limits.maxUnauthenticated(), cutoff}
	buf := make([]byte, 0, 512)
	for _, r := range records {
		buf = appendRecord(buf[:0], r)
		if r.Unauthenticated {
			unauthenticated = append(unauthenticated, string(buf))
		} else {
			main = append(main, string(buf))
		}
	}
	_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		// EVAL, not EVALSHA: a batch is rare enough that sending the script
		// costs nothing, and Redis keeps it cached by its digest.
		p.Eval(ctx, appendLua, []string{l.key}, main...)
		p.Eval(ctx, appendLua, []string{l.unauthenticated}, unauthenticated...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending to the delivery log: %w", err)
	}
	return nil
}

// decode reads a stream message of the stream tag names as a record;
// false when it is not one.
func decode(m redis.XMessage, tag string) (Record, bool) {
	s, _ := m.Values[field].(string)
	var r Record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Record{}, false
	}
	r.ID = tag + m.ID
	return r, true
}

// unauthenticatedTag starts the ids of the unauthenticated stream's
// records: a record id names its stream, and no two records of the log
// share one (the streams number their entries apart).
const unauthenticatedTag = "u"

// Query selects records. Empty fields select all.
type Query struct {
	WebhookID  string
	Outcome    string
	DeliveryID string
	// Since: only records written at or after it.
	Since time.Time
	// Before: only records older than this record id.
	Before string
	// Count is the most records returned; default 100, at most MaxCount.
	Count int
}

// MaxCount bounds Query.Count.
const MaxCount = 1000

// scanChunk is how many records one read of List or Counts takes.
const scanChunk = 500

// Match reports whether r is selected by q's webhook, outcome and delivery.
func (q Query) Match(r Record) bool {
	return (q.WebhookID == "" || r.WebhookID == q.WebhookID) &&
		(q.Outcome == "" || r.Outcome == q.Outcome) &&
		(q.DeliveryID == "" || r.DeliveryID == q.DeliveryID)
}

// ErrBadID says a record id is not a stream id.
var ErrBadID = errors.New("not a record id")

// ValidID reports whether id looks like a record id: a stream id,
// <ms>-<seq>, with unauthenticatedTag before it for the unauthenticated
// stream's records.
func ValidID(id string) bool {
	ms, seq, ok := strings.Cut(strings.TrimPrefix(id, unauthenticatedTag), "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// streams are the streams q reads: both but where its outcome is only
// ever in one.
func (l *Log) streams(q Query) []string {
	switch q.Outcome {
	case "":
		return []string{l.key, l.unauthenticated}
	case Refused, Failed, Filtered:
		return []string{l.key, l.unauthenticated} // a handshake is filtered before authentication
	}
	return []string{l.key}
}

// List returns the records q selects, newest first across both streams,
// and the Before of the next page ("" when the log has no older record).
// It reads the streams back from q.Before a chunk at a time, at most as
// many records as the log keeps.
func (l *Log) List(ctx context.Context, q Query) ([]Record, string, error) {
	if q.Before != "" && !ValidID(q.Before) {
		return nil, "", ErrBadID
	}
	count := q.Count
	if count <= 0 {
		count = 100
	}
	count = min(count, MaxCount)
	start := "-"
	if !q.Since.IsZero() {
		start = strconv.FormatInt(q.Since.UnixMilli(), 10)
	}
	var cursors []*cursor
	for _, key := range l.streams(q) {
		c := &cursor{client: l.client, key: key, end: "+", start: start}
		if key == l.unauthenticated {
			c.tag = unauthenticatedTag
		}
		if q.Before != "" {
			c.end = c.before(q.Before)
		}
		cursors = append(cursors, c)
	}
	var out []Record
	last := ""
	budget := int64(math.MaxInt64) // a reader that does not know the limits reads to the end
	if l.limits.MaxEntries > 0 {
		budget = l.limits.MaxEntries + l.limits.maxUnauthenticated()
	}
	for ; budget > 0; budget-- {
		m, ok, err := newest(ctx, cursors)
		if err != nil {
			return nil, "", fmt.Errorf("reading the delivery log: %w", err)
		}
		if !ok {
			return out, "", nil
		}
		last = m.tag + m.ID
		if r, ok := decode(m.XMessage, m.tag); ok && q.Match(r) {
			out = append(out, r)
			if len(out) == count {
				return out, last, nil
			}
		}
	}
	return out, last, nil
}

// cursor reads one stream back, newest first, a chunk at a time.
type cursor struct {
	client     redis.UniversalClient
	key, tag   string // tag starts its records' ids
	end, start string
	buf        []redis.XMessage
	done       bool
}

// before is the cursor's end for the records older than record id: the
// log orders records by stream id, and at the same stream id the
// unauthenticated stream's record is the newer.
func (c *cursor) before(id string) string {
	tagged := strings.HasPrefix(id, unauthenticatedTag)
	id = strings.TrimPrefix(id, unauthenticatedTag)
	if tagged && c.tag == "" {
		return id // the main record with that stream id is older: included
	}
	return "(" + id
}

// taggedMessage is a message and the tag of its stream.
type taggedMessage struct {
	redis.XMessage
	tag string
}

// peek is the cursor's next message; false when the stream has no more.
func (c *cursor) peek(ctx context.Context) (redis.XMessage, bool, error) {
	if len(c.buf) == 0 && !c.done {
		msgs, err := c.client.XRevRangeN(ctx, c.key, c.end, c.start, scanChunk).Result()
		if err != nil {
			return redis.XMessage{}, false, err
		}
		c.buf, c.done = msgs, len(msgs) < scanChunk
		if len(msgs) > 0 {
			c.end = "(" + msgs[len(msgs)-1].ID
		}
	}
	if len(c.buf) == 0 {
		return redis.XMessage{}, false, nil
	}
	return c.buf[0], true, nil
}

// newest takes the newest next message of cursors; false when none has
// one.
func newest(ctx context.Context, cursors []*cursor) (taggedMessage, bool, error) {
	var pick *cursor
	var msg taggedMessage
	for _, c := range cursors {
		m, ok, err := c.peek(ctx)
		if err != nil {
			return taggedMessage{}, false, err
		}
		if ok && (pick == nil || compareIDs(c.tag+m.ID, msg.tag+msg.ID) > 0) {
			pick, msg = c, taggedMessage{m, c.tag}
		}
	}
	if pick == nil {
		return taggedMessage{}, false, nil
	}
	pick.buf = pick.buf[1:]
	return msg, true, nil
}

// compareIDs orders record ids: by stream id, <ms>-<seq>, numerically,
// and at the same stream id the unauthenticated stream's as the newer.
func compareIDs(a, b string) int {
	at, bt := strings.HasPrefix(a, unauthenticatedTag), strings.HasPrefix(b, unauthenticatedTag)
	ams, aseq, _ := strings.Cut(strings.TrimPrefix(a, unauthenticatedTag), "-")
	bms, bseq, _ := strings.Cut(strings.TrimPrefix(b, unauthenticatedTag), "-")
	am, _ := strconv.ParseUint(ams, 10, 64)
	bm, _ := strconv.ParseUint(bms, 10, 64)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	as, _ := strconv.ParseUint(aseq, 10, 64)
	bs, _ := strconv.ParseUint(bseq, 10, 64)
	if c := cmp.Compare(as, bs); c != 0 {
		return c
	}
	switch {
	case at == bt:
		return 0
	case at:
		return 1
	}
	return -1
}

// Length is how many records the log holds, both streams.
func (l *Log) Length(ctx context.Context) (int64, error) {
	var n int64
	for _, key := range []string{l.key, l.unauthenticated} {
		m, err := l.client.XLen(ctx, key).Result()
		if err != nil {
			return 0, fmt.Errorf("reading the delivery log's length: %w", err)
		}
		n += m
	}
	return n, nil
}

// WebhookCounts is one webhook's records over a span of time, in buckets.
type WebhookCounts struct {
	WebhookID string `json:"webhook_id"`
	Total     int    `json:"total"`
	// Buckets count the records of each bucket, oldest first.
	Buckets []int `json:"buckets"`
}

// Counts counts the authenticated records of each webhook in n buckets of
// width each, ending now, and returns the top webhooks by total, most
// first: at most top of them. Only what the log still holds is counted,
// so the count is bounded by MaxEntries and by the integrations: an
// unknown id or a forged request never reaches the chart.
func (l *Log) Counts(ctx context.Context, now time.Time, width time.Duration, n, top int) ([]WebhookCounts, error) {
	from := now.Add(-width * time.Duration(n))
	byWebhook := map[string]*WebhookCounts{}
	start := strconv.FormatInt(from.UnixMilli(), 10)
	for {
		msgs, err := l.client.XRangeN(ctx, l.key, start, "+", scanChunk).Result()
		if err != nil {
			return nil, fmt.Errorf("reading the delivery log: %w", err)
		}
		for _, m := range msgs {
			r, ok := decode(m, "")
			if !ok || r.Time.Before(from) {
				continue
			}
			i := min(int(r.Time.Sub(from)/width), n-1)
			c := byWebhook[r.WebhookID]
			if c == nil {
				c = &WebhookCounts{WebhookID: r.WebhookID, Buckets: make([]int, n)}
				byWebhook[r.WebhookID] = c
			}
			c.Buckets[i]++
			c.Total++
		}
		if len(msgs) < scanChunk {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	out := make([]WebhookCounts, 0, len(byWebhook))
	for _, c := range byWebhook {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b WebhookCounts) int {
		if a.Total != b.Total {
			return cmp.Compare(b.Total, a.Total)
		}
		return strings.Compare(a.WebhookID, b.WebhookID)
	})
	return out[:min(len(out), top)], nil
}

// Position is where a reader of the log is: the last record id read in
// each stream.
type Position struct{ main, unauthenticated string }

// Now is the position after the newest records.
func (l *Log) Now(ctx context.Context) (Position, error) {
	var p Position
	for _, s := range []struct {
		key string
		id  *string
	}{{l.key, &p.main}, {l.unauthenticated, &p.unauthenticated}} {
		msgs, err := l.client.XRevRangeN(ctx, s.key, "+", "-", 1).Result()
		if err != nil {
			return Position{}, fmt.Errorf("reading the delivery log: %w", err)
		}
		*s.id = "0-0"
		if len(msgs) > 0 {
			*s.id = msgs[0].ID
		}
	}
	return p, nil
}

// After returns the records written after position p, oldest first, at
// most scanChunk of each stream, and the position after them.
func (l *Log) After(ctx context.Context, p Position) ([]Record, Position, error) {
	var out []Record
	for _, s := range []struct {
		key, tag string
		id       *string
	}{{l.key, "", &p.main}, {l.unauthenticated, unauthenticatedTag, &p.unauthenticated}} {
		msgs, err := l.client.XRangeN(ctx, s.key, "("+*s.id, "+", scanChunk).Result()
		if err != nil {
			return nil, p, fmt.Errorf("reading the delivery log: %w", err)
		}
		if len(msgs) > 0 {
			*s.id = msgs[len(msgs)-1].ID
		}
		for _, m := range msgs {
			if r, ok := decode(m, s.tag); ok {
				out = append(out, r)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Record) int { return compareIDs(a.ID, b.ID) })
	return out, p, nil
}

// Follow calls fn with each record q selects that is written after
// position from, oldest first, until ctx ends or fn fails. It looks for
// new records every poll: a poll holds no connection while it waits, as a
// blocking read would, so followers never starve the request path of
// Redis connections.
func (l *Log) Follow(ctx context.Context, from Position, q Query, poll time.Duration, fn func(Record) error) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		records, next, err := l.After(ctx, from)
		if err != nil && ctx.Err() == nil {
			return err
		}
		more := next != from && len(records) >= scanChunk
		from = next
		for _, r := range records {
			if q.Match(r) {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		if more {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
