// Package delivery makes accepted webhooks durable: each is appended to a
// Redis stream before its sender is answered, and workers in every Caddy
// instance (one consumer group) dispatch it, retry it with backoff, and move
// it to a dead-letter stream when it cannot be delivered.
//
// Keys, for a key prefix P:
//
//	Pdeliveries        STREAM  entries waiting, in flight or waiting to retry
//	Pdeliveries:retry  ZSET    "<entry id>|<attempts made>" scored by when to retry (ms)
//	Pdead              STREAM  entries that could not be delivered
//
// Every step is a single-key operation, or an ordered sequence of them in
// which a crash can only cause a second dispatch, never a lost entry: the
// delivery is at-least-once, and every dispatch carries the delivery id as
// Idempotency-Key so CodeMie can drop a repeat.
package delivery

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
)

// Stream field names.
const (
	fieldWebhookID    = "webhook_id"
	fieldResourceType = "resource_type"
	fieldResourceID   = "resource_id"
	fieldUserID       = "user_id"
	fieldDeliveryID   = "delivery_id"
	fieldReceivedAt   = "received_at"
	fieldAttempts     = "attempts"
	fieldHeaders      = "headers"
	fieldBody         = "body"

	// Dead letters also carry:
	fieldDeadAt     = "dead_at"
	fieldLastStatus = "last_status"
	fieldLastStep   = "last_step"
	fieldLastReason = "last_reason"
)

// keptHeaders are the request headers stored with an entry: what tells ops
// which delivery it was. None carries a secret.
var keptHeaders = []string{
	"Content-Type",
	"User-Agent",
	"X-Github-Event",
	"X-Github-Delivery",
	"X-Github-Hook-Id",
	"X-Gitlab-Event",
	"X-Gitlab-Event-Uuid",
	"X-Atlassian-Webhook-Identifier",
	"Webhook-Id",
}

// Entry is one accepted webhook.
type Entry struct {
	Job        dispatch.Job
	ReceivedAt time.Time
	// Attempts is how many dispatch attempts were made before this one.
	Attempts int
	// Headers are the request's kept headers.
	Headers map[string]string
}

// NewEntry builds an entry for job from its request's headers.
func NewEntry(job dispatch.Job, h http.Header, receivedAt time.Time) Entry {
	kept := map[string]string{}
	for _, name := range keptHeaders {
		if v := h.Get(name); v != "" {
			kept[name] = v
		}
	}
	return Entry{Job: job, ReceivedAt: receivedAt, Headers: kept}
}

// values returns the entry as stream field/value pairs.
func (e Entry) values() []any {
	headers, _ := json.Marshal(e.Headers)
	return []any{
		fieldWebhookID, e.Job.WebhookID,
		fieldResourceType, e.Job.ResourceType,
		fieldResourceID, e.Job.ResourceID,
		fieldUserID, e.Job.UserID,
		fieldDeliveryID, e.Job.DeliveryID,
		fieldReceivedAt, strconv.FormatInt(e.ReceivedAt.UnixMilli(), 10),
		fieldAttempts, strconv.Itoa(e.Attempts),
		fieldHeaders, string(headers),
		fieldBody, e.Job.Body,
	}
}

// decodeEntry reads an entry from stream fields.
func decodeEntry(id string, fields map[string]any) (Entry, error) {
	str := func(name string) string {
		s, _ := fields[name].(string)
		return s
	}
	received, err := strconv.ParseInt(str(fieldReceivedAt), 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("entry %s: field %s: %v", id, fieldReceivedAt, err)
	}
	attempts, err := strconv.Atoi(str(fieldAttempts))
	if err != nil {
		return Entry{}, fmt.Errorf("entry %s: field %s: %v", id, fieldAttempts, err)
	}
	e := Entry{
		Job: dispatch.Job{
			WebhookID:    str(fieldWebhookID),
			ResourceType: str(fieldResourceType),
			ResourceID:   str(fieldResourceID),
			UserID:       str(fieldUserID),
			DeliveryID:   str(fieldDeliveryID),
			Body:         []byte(str(fieldBody)),
		},
		ReceivedAt: time.UnixMilli(received),
		Attempts:   attempts,
	}
	if h := str(fieldHeaders); h != "" {
		if err := json.Unmarshal([]byte(h), &e.Headers); err != nil {
			return Entry{}, fmt.Errorf("entry %s: field %s: %v", id, fieldHeaders, err)
		}
	}
	return e, nil
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

func decodeDeadLetter(id string, fields map[string]any) (DeadLetter, error) {
	e, err := decodeEntry(id, fields)
	if err != nil {
		return DeadLetter{}, err
	}
	str := func(name string) string {
		s, _ := fields[name].(string)
		return s
	}
	deadAt, _ := strconv.ParseInt(str(fieldDeadAt), 10, 64)
	status, _ := strconv.Atoi(str(fieldLastStatus))
	return DeadLetter{
		ID: id, WebhookID: e.Job.WebhookID, ResourceType: e.Job.ResourceType, ResourceID: e.Job.ResourceID,
		UserID: e.Job.UserID, DeliveryID: e.Job.DeliveryID, ReceivedAt: e.ReceivedAt, DeadAt: time.UnixMilli(deadAt),
		Attempts: e.Attempts, LastStatus: status, LastStep: str(fieldLastStep), LastReason: str(fieldLastReason),
		Headers: e.Headers, BodyBytes: len(e.Job.Body),
	}, nil
}
