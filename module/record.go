package module

import (
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

// logBuffer is how many records wait, at most, to be written to the
// delivery log; more are dropped (and counted) rather than waited for.
const logBuffer = 8192

// startLog opens the delivery log and starts writing to it.
func (h *Handler) startLog() {
	h.history = history.New(h.redisClient, h.space.Log(), h.space.LogUnauthenticated(), history.Limits{
		MaxEntries: h.DeliveryLog.MaxEntries,
		MaxAge:     time.Duration(h.DeliveryLog.MaxAge),
	})
	h.records = h.history.StartWriter(logBuffer, func(n int) { metrics.logDropped.Add(float64(n)) }, h.logger.Named("delivery_log"))
	logs.add(h.space.Prefix, h.history)
}

// logOutcomes are the delivery log's outcomes of the requests' outcomes;
// an outcome not listed is history.Refused.
var logOutcomes = map[outcome]string{
	outcomeEnqueued:            history.Accepted,
	outcomeDispatched:          history.Dispatched,
	outcomeCollapsed:           history.Collapsed,
	outcome(verify.Filtered):   history.Filtered,
	outcome(verify.Ping):       history.Filtered,
	outcome(verify.Handshake):  history.Filtered,
	outcomeDuplicate:           history.Duplicate,
	outcomeRateLimited:         history.Limited,
	outcomeMalformed:           history.Failed,
	outcomeStoreUnavailable:    history.Failed,
	outcomeBodyBudget:          history.Failed,
	outcomeUnsupported:         history.Failed,
	outcomeDispatchRefused:     history.Failed,
	outcomeDispatchFailed:      history.Failed,
	outcomeDispatchUnavailable: history.Failed,
	outcomeQueueFull:           history.Failed,
	outcomeQueueUnavailable:    history.Failed,
}

// record writes what became of a request to a webhook, whose span's
// context is sc, to the delivery log. A request without a webhook id (bad
// method, bad id) has none.
func (h *Handler) record(a answer, sc trace.SpanContext, start time.Time) {
	if h.records == nil || a.id == "" {
		return
	}
	o, ok := logOutcomes[a.outcome]
	if !ok {
		o = history.Refused
	}
	rec := history.Record{
		Time: start, WebhookID: a.id, DeliveryID: a.deliveryID, Outcome: o, Reason: string(a.outcome),
		Status: a.status, DurationMs: millis(time.Since(start)), BodyBytes: a.bodyBytes, Preview: a.preview,
		Step: a.step, CodeMieStatus: a.upstreamStatus, Unauthenticated: !a.authenticated,
	}
	if sc.IsValid() {
		rec.TraceID = sc.TraceID().String()
	}
	h.records.Add(rec)
}

// attemptOutcomes are the delivery log's outcomes of dispatch attempts.
var attemptOutcomes = map[string]string{
	delivery.AttemptDelivered: history.Dispatched,
	delivery.AttemptRetried:   history.Retried,
	delivery.AttemptDead:      history.Dead,
}

// attemptedFunc is the workers' Events.Attempted: nil without a log.
func (h *Handler) attemptedFunc() func(delivery.Attempt) {
	if h.records == nil {
		return nil
	}
	return h.attempted
}

// attempted writes what became of a dispatch attempt to the delivery log.
func (h *Handler) attempted(a delivery.Attempt) {
	rec := history.Record{
		Time: time.Now(), WebhookID: a.Job.WebhookID, DeliveryID: a.Job.DeliveryID, Outcome: attemptOutcomes[a.Outcome],
		Attempts: a.Attempts, CodeMieStatus: a.Result.Status, DurationMs: millis(a.Duration), AgeMs: millis(a.Age),
		Entry: a.EntryID, TraceID: traceIDOf(a.Job.TraceParent),
	}
	if a.Outcome != delivery.AttemptDelivered {
		rec.Step, rec.Reason = a.Result.Step, a.Result.Reason
	}
	h.records.Add(rec)
}

// millis is d in milliseconds.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
