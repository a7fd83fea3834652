// Package delivery makes accepted webhooks durable: each is appended to a
// Redis stream before its sender is answered, and workers in every Caddy
// instance take it from its webhook's lane in turn (lanes.go), within its
// resource's max in flight, dispatch it, retry it with backoff, and move it
// to a dead-letter stream when it cannot be delivered.
//
// Its keys are keyspace.Space's Queue and the keys named after it (Lane,
// Ring, Parked, Parking, Waiting, Leases, Holders, Busy, Due), Dead and
// DeadBytes; it adopts what the earlier versions' Deliveries and Retry hold
// (adopt.go). Every step is one script on one cluster slot, or an ordered
// sequence of them in which a crash can only cause a second dispatch, never
// a lost entry: the delivery is at-least-once, and every dispatch carries
// the delivery id as Idempotency-Key so CodeMie can drop a repeat.
package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/jsontext"
)

// Stream field names. An entry is two fields, its metadata as one JSON
// object and its body, so that enqueueing it costs Redis and the request
// path little; the attempts made are a third field once there are any.
const (
	fieldMeta     = "meta"
	fieldBody     = "body"
	fieldAttempts = "attempts"
	// fieldForward holds, in forward mode, the headers that CodeMie's own
	// webhook verifies the delivery with (dispatch.Job.Forward: sealed
	// when a secrets key is configured).
	fieldForward = "forward"

	// Dead letters also carry:
	fieldDeadAt     = "dead_at"
	fieldLastStatus = "last_status"
	fieldLastStep   = "last_step"
	fieldLastReason = "last_reason"
)

// Entry is one accepted webhook.
type Entry struct {
	Job        dispatch.Job
	ReceivedAt time.Time
	// ReplayKey is what the replay guard marked the delivery as seen
	// under; "" when it is the job's delivery id. A dead letter releases
	// it, so that the sender's redelivery is accepted.
	ReplayKey string
	// Attempts is how many dispatch attempts were made before this one.
	Attempts int
	// Headers are the request's kept headers.
	Headers map[string]string
}

// NewEntry builds an entry for job from its request's headers. Headers
// named in omit (any case) are never kept, whatever they are called: an
// integration's secret-bearing headers may have the name of a kept one.
func NewEntry(job dispatch.Job, h http.Header, omit []string, receivedAt time.Time) Entry {
	kept := map[string]string{}
	for _, name := range headers.Kept {
		if v := h.Get(name); v != "" && !headers.Named(omit, name) {
			kept[name] = v
		}
	}
	return Entry{Job: job, ReceivedAt: receivedAt, Headers: kept}
}

// replayKey is the key the replay guard marked the entry's delivery with.
func (e Entry) replayKey() string {
	if e.ReplayKey != "" {
		return e.ReplayKey
	}
	return e.Job.DeliveryID
}

// meta is an entry's metadata as the meta field stores it.
type meta struct {
	WebhookID    string            `json:"webhook_id"`
	ResourceType string            `json:"resource_type"`
	ResourceID   string            `json:"resource_id"`
	UserID       string            `json:"user_id"`
	DeliveryID   string            `json:"delivery_id"`
	ReplayKey    string            `json:"replay_key,omitempty"`
	Trace        string            `json:"trace,omitempty"`
	ReceivedAt   int64             `json:"received_at"` // Unix milliseconds
	Headers      map[string]string `json:"headers"`
}

// values returns the entry as stream field/value pairs.
func (e Entry) values() []any {
	v := []any{fieldMeta, e.appendMeta(make([]byte, 0, e.metaSize())), fieldBody, e.Job.Body}
	if e.Job.Forward != "" {
		v = append(v, fieldForward, e.Job.Forward)
	}
	if e.Attempts > 0 {
		v = append(v, fieldAttempts, strconv.Itoa(e.Attempts))
	}
	return v
}

// metaSize is about the length of the entry's meta field (more when its
// strings need escaping): what to allocate for it, once.
func (e Entry) metaSize() int {
	n := 176 + len(e.Job.WebhookID) + len(e.Job.ResourceType) + len(e.Job.ResourceID) + len(e.Job.UserID) +
		len(e.Job.DeliveryID) + len(e.ReplayKey) + len(e.Job.TraceParent)
	for name, v := range e.Headers {
		n += len(name) + len(v) + 6
	}
	return n
}

// appendMeta appends the entry's meta field: the JSON encoding of meta,
// written by hand because it is on every accepted request's path.
func (e Entry) appendMeta(b []byte) []byte {
	b = append(b, `{"webhook_id":`...)
	b = jsontext.AppendString(b, e.Job.WebhookID)
	b = append(b, `,"resource_type":`...)
	b = jsontext.AppendString(b, e.Job.ResourceType)
	b = append(b, `,"resource_id":`...)
	b = jsontext.AppendString(b, e.Job.ResourceID)
	b = append(b, `,"user_id":`...)
	b = jsontext.AppendString(b, e.Job.UserID)
	b = append(b, `,"delivery_id":`...)
	b = jsontext.AppendString(b, e.Job.DeliveryID)
	if e.ReplayKey != "" {
		b = append(b, `,"replay_key":`...)
		b = jsontext.AppendString(b, e.ReplayKey)
	}
	if e.Job.TraceParent != "" {
		b = append(b, `,"trace":`...)
		b = jsontext.AppendString(b, e.Job.TraceParent)
	}
	b = append(b, `,"received_at":`...)
	b = strconv.AppendInt(b, e.ReceivedAt.UnixMilli(), 10)
	b = append(b, `,"headers":{`...)
	first := true
	for _, name := range headers.Kept {
		v, ok := e.Headers[name]
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsontext.AppendString(b, name)
		b = append(b, ':')
		b = jsontext.AppendString(b, v)
	}
	return append(b, "}}"...)
}

// streamFields are a stream entry's fields as go-redis reads them.
type streamFields map[string]any

// fieldsOf reads a script's reply of an entry's fields, {name, value, ...}.
func fieldsOf(flat []any) streamFields {
	fields := make(streamFields, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		if name, ok := flat[i].(string); ok {
			fields[name] = flat[i+1]
		}
	}
	return fields
}

// str returns field name's value; "" when there is none.
func (f streamFields) str(name string) string {
	s, _ := f[name].(string)
	return s
}

// decodeEntry reads an entry from stream fields: the meta field, or the
// separate fields that entries had before it (enqueued by an older
// instance during a rolling upgrade).
func decodeEntry(id string, fields streamFields) (Entry, error) {
	str := fields.str
	var m meta
	if raw, ok := fields[fieldMeta].(string); ok {
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return Entry{}, fmt.Errorf("entry %s: field %s: %v", id, fieldMeta, err)
		}
	} else if err := m.fromFields(str); err != nil {
		return Entry{}, fmt.Errorf("entry %s: %v", id, err)
	}
	attempts := 0
	if s := str(fieldAttempts); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n < 0 {
			err = errors.New("negative")
		}
		if err != nil {
			return Entry{}, fmt.Errorf("entry %s: field %s: %v", id, fieldAttempts, err)
		}
		attempts = n
	}
	return Entry{
		Job: dispatch.Job{
			WebhookID:    m.WebhookID,
			ResourceType: m.ResourceType,
			ResourceID:   m.ResourceID,
			UserID:       m.UserID,
			DeliveryID:   m.DeliveryID,
			Body:         []byte(str(fieldBody)),
			ContentType:  m.Headers["Content-Type"],
			Forward:      str(fieldForward),
			TraceParent:  m.Trace,
		},
		ReceivedAt: time.UnixMilli(m.ReceivedAt),
		ReplayKey:  m.ReplayKey,
		Attempts:   attempts,
		Headers:    m.Headers,
	}, nil
}

// readEntry reads an entry to dispatch or to queue again: decodeEntry's,
// refused when it lacks what every entry the intake writes holds (a body,
// the webhook's id, when it was received), so that one written by hand
// ("meta" null, the body left out) dies as unreadable rather than being
// dispatched empty or buried as expired. decodeEntry alone reads the dead
// letters' listing, which leaves their bodies out.
func readEntry(id string, fields streamFields) (Entry, error) {
	e, err := decodeEntry(id, fields)
	if err != nil {
		return Entry{}, err
	}
	if _, ok := fields[fieldBody].(string); !ok {
		return Entry{}, fmt.Errorf("entry %s: no field %s", id, fieldBody)
	}
	if e.Job.WebhookID == "" || e.ReceivedAt.UnixMilli() <= 0 {
		return Entry{}, fmt.Errorf("entry %s: field %s: no webhook id or time received", id, fieldMeta)
	}
	return e, nil
}

// fromFields reads meta from the separate fields of the earlier layout.
func (m *meta) fromFields(str func(string) string) error {
	received, err := strconv.ParseInt(str("received_at"), 10, 64)
	if err != nil {
		return fmt.Errorf("field received_at: %v", err)
	}
	*m = meta{WebhookID: str("webhook_id"), ResourceType: str("resource_type"), ResourceID: str("resource_id"),
		UserID: str("user_id"), DeliveryID: str("delivery_id"), ReceivedAt: received}
	if h := str("headers"); h != "" {
		if err := json.Unmarshal([]byte(h), &m.Headers); err != nil {
			return fmt.Errorf("field headers: %v", err)
		}
	}
	return nil
}

// DeadLetter is an entry that could not be delivered, as the admin API
// lists it: everything but the body, which only its size stands for.
type DeadLetter struct {
	ID           string            `json:"id"`
	WebhookID    string            `json:"webhook_id"`
	ResourceType string            `json:"resource_type"`
	ResourceID   string            `json:"resource_id"`
	UserID       string            `json:"user_id"`
	DeliveryID   string            `json:"delivery_id"`
	ReceivedAt   time.Time         `json:"received_at"`
	DeadAt       time.Time         `json:"dead_at"`
	Attempts     int               `json:"attempts"`
	LastStatus   int               `json:"last_status"`
	LastStep     string            `json:"last_step"`
	LastReason   string            `json:"last_reason"`
	Headers      map[string]string `json:"headers"`
	BodyBytes    int               `json:"body_bytes"`
}

// decodeDeadLetter reads a dead letter from its stream fields, all but
// the body, whose length is bodyBytes.
func decodeDeadLetter(id string, fields streamFields, bodyBytes int) DeadLetter {
	// One that could not be read (the reason it died) is listed with
	// what can be.
	e, _ := decodeEntry(id, fields)
	str := fields.str
	deadAt, _ := strconv.ParseInt(str(fieldDeadAt), 10, 64)
	status, _ := strconv.Atoi(str(fieldLastStatus))
	return DeadLetter{
		ID: id, WebhookID: e.Job.WebhookID, ResourceType: e.Job.ResourceType, ResourceID: e.Job.ResourceID,
		UserID: e.Job.UserID, DeliveryID: e.Job.DeliveryID, ReceivedAt: e.ReceivedAt, DeadAt: time.UnixMilli(deadAt),
		Attempts: e.Attempts, LastStatus: status, LastStep: str(fieldLastStep), LastReason: str(fieldLastReason),
		Headers: e.Headers, BodyBytes: bodyBytes,
	}
}
