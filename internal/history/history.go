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
}

// Limits bound the log.
type Limits struct {
	// MaxEntries is the most records kept; the oldest go first.
	MaxEntries int64
	// MaxAge is how long a record is kept; 0: no limit.
	MaxAge time.Duration
}

// Log reads and writes the delivery log, the stream key, through client.
type Log struct {
	client redis.UniversalClient
	key    string
	limits Limits
}

// New returns the log in stream key.
func New(client redis.UniversalClient, key string, limits Limits) *Log {
	return &Log{client: client, key: key, limits: limits}
}

// Limits are the log's bounds.
func (l *Log) Limits() Limits { return l.limits }

// field is the stream field that holds a record's JSON.
const field = "r"

// Append writes records in one round trip: a pipeline of XADDs, then an
// XTRIM to MaxEntries and one of what is older than MaxAge.
func (l *Log) Append(ctx context.Context, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	values := make([]string, len(records))
	for i, r := range records {
		r.ID = ""
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encoding a log record: %w", err)
		}
		values[i] = string(b)
	}
	_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, v := range values {
			p.XAdd(ctx, &redis.XAddArgs{Stream: l.key, Values: []string{field, v}})
		}
		p.XTrimMaxLen(ctx, l.key, max(l.limits.MaxEntries, 1))
		if l.limits.MaxAge > 0 {
			p.XTrimMinID(ctx, l.key, strconv.FormatInt(time.Now().Add(-l.limits.MaxAge).UnixMilli(), 10))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending to the delivery log: %w", err)
	}
	return nil
}

// decode reads a stream message as a record; false when it is not one.
func decode(m redis.XMessage) (Record, bool) {
	s, _ := m.Values[field].(string)
	var r Record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Record{}, false
	}
	r.ID = m.ID
	return r, true
}

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

// ValidID reports whether id looks like a stream id: <ms>-<seq>.
func ValidID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// List returns the records q selects, newest first, and the Before of the
// next page ("" when the log has no older record). It reads the log back
// from q.Before a chunk at a time, at most the log's MaxEntries records.
func (l *Log) List(ctx context.Context, q Query) ([]Record, string, error) {
	if q.Before != "" && !ValidID(q.Before) {
		return nil, "", ErrBadID
	}
	count := q.Count
	if count <= 0 {
		count = 100
	}
	count = min(count, MaxCount)
	end, start := "+", "-"
	if q.Before != "" {
		end = "(" + q.Before
	}
	if !q.Since.IsZero() {
		start = strconv.FormatInt(q.Since.UnixMilli(), 10)
	}
	var out []Record
	budget := max(l.limits.MaxEntries, scanChunk)
	for budget > 0 {
		msgs, err := l.client.XRevRangeN(ctx, l.key, end, start, scanChunk).Result()
		if err != nil {
			return nil, "", fmt.Errorf("reading the delivery log: %w", err)
		}
		budget -= int64(len(msgs))
		for _, m := range msgs {
			r, ok := decode(m)
			if ok && q.Match(r) {
				out = append(out, r)
				if len(out) == count {
					return out, m.ID, nil
				}
			}
			end = "(" + m.ID
		}
		if len(msgs) < scanChunk {
			return out, "", nil
		}
	}
	return out, strings.TrimPrefix(end, "("), nil
}

// Length is how many records the log holds.
func (l *Log) Length(ctx context.Context) (int64, error) {
	n, err := l.client.XLen(ctx, l.key).Result()
	if err != nil {
		return 0, fmt.Errorf("reading the delivery log's length: %w", err)
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

// Counts counts the records of each webhook in n buckets of width each,
// ending now, and returns the top webhooks by total, most first: at most
// top of them. Only what the log still holds is counted.
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
			r, ok := decode(m)
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

// Last is the id of the newest record; "0-0" when the log is empty.
func (l *Log) Last(ctx context.Context) (string, error) {
	msgs, err := l.client.XRevRangeN(ctx, l.key, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading the delivery log: %w", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// After returns the records written after the record id after, oldest
// first, at most scanChunk of them, and the id of the last one read (after
// itself when there is none).
func (l *Log) After(ctx context.Context, after string) ([]Record, string, error) {
	msgs, err := l.client.XRangeN(ctx, l.key, "("+after, "+", scanChunk).Result()
	if err != nil {
		return nil, after, fmt.Errorf("reading the delivery log: %w", err)
	}
	out := make([]Record, 0, len(msgs))
	for _, m := range msgs {
		after = m.ID
		if r, ok := decode(m); ok {
			out = append(out, r)
		}
	}
	return out, after, nil
}

// Follow calls fn with each record q selects that is written after the
// record id after, oldest first, until ctx ends or fn fails. It looks for
// new records every poll: a poll holds no connection while it waits, as a
// blocking read would, so followers never starve the request path of
// Redis connections.
func (l *Log) Follow(ctx context.Context, after string, q Query, poll time.Duration, fn func(Record) error) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		records, last, err := l.After(ctx, after)
		if err != nil && ctx.Err() == nil {
			return err
		}
		after = last
		for _, r := range records {
			if q.Match(r) {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		if len(records) == scanChunk {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
