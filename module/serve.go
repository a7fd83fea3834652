package module

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

// ServeHTTP answers a webhook request. It never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	a := h.serve(w, r, repl)
	if repl != nil {
		repl.Set("http.codemie_webhooks.outcome", a.outcome.value())
	}
	a.outcome.counter().Inc()
	h.log(r, a)
	return nil
}

// answer is how one request ended, for the metrics and the log.
type answer struct {
	outcome    outcome
	status     int
	id         string
	deliveryID string
	err        error // what went wrong on our side, if anything
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer) answer {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeDetail(w, answer{outcome: outcomeMethodNotAllowed, status: http.StatusMethodNotAllowed}, msgMethod)
	}
	id := webhookID(r.URL.EscapedPath())
	if !integration.ValidID(id) {
		return writeDetail(w, answer{outcome: outcomeBadID, status: http.StatusBadRequest}, msgBadID)
	}
	a := answer{id: id, deliveryID: guard.DeliveryID(r.Header)}
	if repl != nil {
		repl.Set("http.codemie_webhooks.id", id)
		repl.Set("http.codemie_webhooks.delivery_id", a.deliveryID)
	}
	if r.ContentLength > h.MaxBody {
		return writeDetail(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), msgTooLarge)
	}

	in, err := h.integrations.Load(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return writeNotFound(w, a.with(outcomeNotFound, http.StatusBadRequest))
	case integration.IsMalformed(err):
		a.err = err
		return writeDetail(w, a.with(outcomeMalformed, http.StatusInternalServerError), msgFailed)
	case err != nil:
		a.err = err
		w.Header().Set("Retry-After", "5")
		return writeDetail(w, a.with(outcomeStoreUnavailable, http.StatusServiceUnavailable), msgStoreDown)
	case !in.Enabled:
		return writeNotFound(w, a.with(outcomeDisabled, http.StatusBadRequest))
	}

	bp, err := readBody(r, h.MaxBody)
	defer releaseBody(bp) // the body is copied out before serve returns
	body := *bp
	if errors.Is(err, errBodyTooLarge) {
		return writeDetail(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), msgTooLarge)
	}
	if err != nil {
		a.err = err
		return writeDetail(w, a.with(outcomeBadBody, http.StatusBadRequest), msgBadBody)
	}

	v := verify.Check(in, r.Header, body, h.verifyOpts)
	if v.Unauthenticated {
		metrics.unauthenticated.Inc()
		h.logger.Warn("webhook has no authentication configured; served without any",
			zap.String("webhook_id", id), zap.String("delivery_id", a.deliveryID))
	}
	if v.Outcome != verify.Pass {
		return writeResult(w, a.with(outcome(v.Outcome), v.Status), v.Message)
	}
	if v.EventID != "" {
		// The signature scheme's own event id, signed by the sender: the
		// best id for the replay guard and the Idempotency-Key.
		a.deliveryID = guard.SafeDeliveryID(v.EventID)
		if repl != nil {
			repl.Set("http.codemie_webhooks.delivery_id", a.deliveryID)
		}
	}
	if !dispatch.Supported(in.ResourceType) {
		ans := dispatch.UnsupportedAnswer(in.ResourceType)
		return writeDetail(w, a.with(outcomeUnsupported, ans.Status), ans.Detail)
	}
	return h.admit(w, r, a, in, body)
}

// admit runs the guard over a verified request and hands it on: in one
// round trip with the enqueue when the queue allows it, else the guard
// first (failing open) and then the dispatch or the enqueue.
//
// None of it is cut short when the sender goes away. Where the guard and
// the enqueue are two round trips (a Redis Cluster), a cancelled context
// could fail the enqueue after the guard marked the delivery as seen, and
// then the forgetting too: the sender's retry would be answered as a
// duplicate of a webhook that was never queued. Redis's own timeouts bound
// the wait.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, a answer, in *integration.Integration, body []byte) answer {
	ctx := context.WithoutCancel(r.Context())
	job := h.job(r, a, in, body)
	if h.intake != nil && h.intake.OneRoundTrip() {
		d, err := h.intake.Admit(ctx, h.guardConfig(), a.id, a.deliveryID, delivery.NewEntry(job, r.Header, time.Now()))
		if err != nil {
			return h.enqueueFailed(w, a, err)
		}
		if res, stop := h.answerGuard(w, a, d); stop {
			return res
		}
		return writeResult(w, a.with(outcomeEnqueued, http.StatusOK), msgInvoked)
	}

	d, err := h.guard.Check(ctx, a.id, a.deliveryID)
	if err != nil {
		// Fail open: an unreachable Redis must not stop verified webhooks.
		metrics.guardErrors.Inc()
		h.logger.Warn("rate limit and replay guard unavailable; admitting", zap.String("webhook_id", a.id), zap.Error(err))
	}
	if res, stop := h.answerGuard(w, a, d); stop {
		return res
	}
	var res answer
	if h.intake != nil {
		res = h.enqueue(ctx, w, r, a, job)
	} else {
		// A sender that gives up must not leave the calls half made.
		res = h.answerDispatch(w, a, h.dispatch(ctx, job))
	}
	if res.status >= 300 {
		// Not accepted after all: the sender's retry must not be a duplicate.
		if err := h.guard.Forget(ctx, a.id, a.deliveryID); err != nil {
			h.logger.Warn("forgetting a delivery that was not accepted", zap.String("webhook_id", a.id), zap.Error(err))
		}
	}
	return res
}

// answerGuard answers a duplicate or a limited request; stop says it did.
func (h *Handler) answerGuard(w http.ResponseWriter, a answer, d guard.Decision) (answer, bool) {
	switch d.Verdict {
	case guard.Duplicate:
		return writeResult(w, a.with(outcomeDuplicate, http.StatusOK), msgDuplicate), true
	case guard.Limited:
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
		return writeDetail(w, a.with(outcomeRateLimited, http.StatusTooManyRequests), h.limitedMsg), true
	}
	return a, false
}

// job is what triggering the integration's resource takes. The sender's
// delivery id (or, without one, a new id) is the Idempotency-Key of every
// call.
func (h *Handler) job(r *http.Request, a answer, in *integration.Integration, body []byte) dispatch.Job {
	deliveryID := a.deliveryID
	if deliveryID == "" {
		deliveryID = "edge-" + uuid.NewString()
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.codemie_webhooks.delivery_id", deliveryID)
		}
	}
	return dispatch.Job{WebhookID: in.ID, ResourceType: in.ResourceType, ResourceID: in.ResourceID,
		UserID: in.UserID, DeliveryID: deliveryID, Body: body}
}

// dispatch makes one attempt and records it.
func (h *Handler) dispatch(ctx context.Context, job dispatch.Job) dispatch.Result {
	start := time.Now()
	res := h.dispatcher.Dispatch(ctx, job)
	metrics.dispatches.WithLabelValues(job.ResourceType, res.Class.String()).Inc()
	metrics.dispatchDuration.WithLabelValues(job.ResourceType).Observe(time.Since(start).Seconds())
	if res.Warning != "" {
		h.logger.Warn("webhook dispatched with a warning", zap.String("webhook_id", job.WebhookID),
			zap.String("delivery_id", job.DeliveryID), zap.String("warning", res.Warning))
	}
	return res
}

// answerDispatch tells the sender how a synchronous dispatch went: never
// the upstream's body, only the step that failed and CodeMie's status.
func (h *Handler) answerDispatch(w http.ResponseWriter, a answer, res dispatch.Result) answer {
	if res.Class == dispatch.Success {
		return writeResult(w, a.with(outcomeDispatched, http.StatusOK), msgInvoked)
	}
	a.err = errors.New(res.Reason)
	if res.Answer != nil {
		return writeDetail(w, a.with(outcomeDispatchRefused, res.Answer.Status), res.Answer.Detail)
	}
	msg := "Webhook dispatch failed at step '" + res.Step + "'"
	if res.Status != 0 {
		msg += ": CodeMie answered " + strconv.Itoa(res.Status)
	}
	if res.Class == dispatch.Final {
		return writeDetail(w, a.with(outcomeDispatchFailed, http.StatusBadGateway), msg)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(max(res.RetryAfter, 5*time.Second)/time.Second)))
	return writeDetail(w, a.with(outcomeDispatchUnavailable, http.StatusServiceUnavailable), msg+", retry later")
}

func (a answer) with(o outcome, status int) answer {
	a.outcome, a.status = o, status
	return a
}

// log writes one line per request that did not trigger anything: an error
// for a fault on our side, a warning for a refused sender, info for other
// rejections, debug for answers that are not failures (pong, filtered,
// duplicate). Triggered webhooks are for the access log. It never logs a
// secret or the body.
func (h *Handler) log(r *http.Request, a answer) {
	if a.outcome == outcomeEnqueued || a.outcome == outcomeDispatched {
		return
	}
	lvl := zapcore.DebugLevel
	switch {
	case a.status >= 500:
		lvl = zapcore.ErrorLevel
	case a.status == http.StatusUnauthorized || a.status == http.StatusTooManyRequests:
		lvl = zapcore.WarnLevel
	case a.status >= 400:
		lvl = zapcore.InfoLevel
	}
	c := h.logger.Check(lvl, "webhook not triggered")
	if c == nil {
		return
	}
	remote := r.RemoteAddr
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		remote = ip
	}
	fields := []zap.Field{
		zap.String("webhook_id", a.id),
		zap.String("reason", string(a.outcome)),
		zap.Int("status", a.status),
		zap.String("remote_ip", remote),
		zap.String("delivery_id", a.deliveryID),
	}
	if a.err != nil {
		fields = append(fields, zap.Error(a.err))
	}
	c.Write(fields...)
}

// webhookID returns the last segment of an escaped path.
func webhookID(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}
