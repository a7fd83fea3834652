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
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	answers "github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/body"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/expr"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

// ServeHTTP answers a webhook request. It never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	// The request's span, looked up once: a lookup that finds none walks
	// every context Caddy and net/http stacked on the request.
	span := trace.SpanFromContext(r.Context())
	h.tracers.seen(span)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	a := h.serve(w, r, repl, span.IsRecording())
	if repl != nil {
		repl.Set("http.codemie_webhooks.outcome", a.outcome.value())
	}
	a.outcome.counter().Inc()
	h.log(r, a)
	h.record(a, span.SpanContext(), start)
	return nil
}

// answer is how one request ended, for the metrics and the log.
type answer struct {
	outcome    outcome
	status     int
	id         string
	deliveryID string
	delivery   guard.Delivery // what the replay guard tells deliveries apart by
	// redisLeft is what is left of redisDeadline once the integration is
	// loaded, for the guard and the enqueue.
	redisLeft time.Duration
	err       error // what went wrong on our side, if anything
	// vars are what the integration's filter saw, for its prompt; nil
	// when no filter ran.
	vars *expr.Vars
	// For the delivery log: the body's size, its preview (integrations
	// with log_preview), and a sync dispatch's failed step and CodeMie's
	// status.
	bodyBytes      int
	preview        string
	step           string
	upstreamStatus int
	// traced: Caddy's tracing records the request's span.
	traced bool
	// authenticated: the sender proved who it is (or the integration asks
	// for no proof).
	authenticated bool
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, traced bool) answer {
	// Until the body is read to its end, an answer gives net/http
	// unreadGrace to read what is left of it, not as long as the sender
	// takes.
	// A sender waiting for 100 Continue sends nothing before the body is
	// read: an answer before then closes the connection, unread.
	read, waiting := false, awaitsContinue(r)
	if waiting {
		w.Header()["Connection"] = closeConnection
	}
	defer func() {
		if !read && !waiting {
			bodyUnread(w, r)
		}
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeAnswer(w, answer{outcome: outcomeMethodNotAllowed, status: http.StatusMethodNotAllowed}, answers.MethodNotAllowed)
	}
	id := webhookID(r.URL.EscapedPath())
	if !integration.ValidID(id) {
		return writeAnswer(w, answer{outcome: outcomeBadID, status: http.StatusBadRequest}, answers.BadID)
	}
	a := answer{id: id, deliveryID: guard.DeliveryID(r.Header), traced: traced}
	if repl != nil {
		repl.Set("http.codemie_webhooks.id", id)
		repl.Set("http.codemie_webhooks.delivery_id", a.deliveryID)
	}
	if r.ContentLength > h.MaxBody {
		return writeAnswer(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), answers.TooLarge)
	}

	loading := time.Now()
	_, endLoad := a.startSpan(r.Context(), spanLoad)
	in, err := h.integrations.Load(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		endLoad(nil) // an answer, not a failure: a probe of unknown ids makes no error spans
	} else {
		endLoad(err)
	}
	a.redisLeft = redisDeadline - time.Since(loading)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return writeNotFound(w, a.with(outcomeNotFound, http.StatusBadRequest))
	case integration.IsDisabled(err):
		// Malformed, but disabled: answered as any disabled webhook.
		a.err = err
		return writeNotFound(w, a.with(outcomeDisabled, http.StatusBadRequest))
	case integration.IsMalformed(err):
		a.err = err
		return writeAnswer(w, a.with(outcomeMalformed, http.StatusInternalServerError), answers.Failed)
	case err != nil:
		a.err = err
		w.Header().Set("Retry-After", "5")
		return writeAnswer(w, a.with(outcomeStoreUnavailable, http.StatusServiceUnavailable), answers.StoreDown)
	case !in.Enabled:
		return writeNotFound(w, a.with(outcomeDisabled, http.StatusBadRequest))
	}
	if token, ok := verify.GraphValidation(in, r.URL.RawQuery); ok {
		return writeText(w, a.with(outcome(verify.Handshake), http.StatusOK), token)
	}

	if v, refused := verify.RefusedByHeaders(in, r.Header, h.verifyOpts); refused {
		// Answered before the body is read: a sender without the secret
		// holds none of the bodies' memory budget.
		return writeAnswer(w, a.with(outcome(v.Outcome), v.Status), v.Message)
	}
	if waiting { // reading asks for the body: it comes
		delete(w.Header(), "Connection")
		waiting = false
	}
	bp, err := h.bodies.Read(w, r, id)
	held := &heldBody{bodies: h.bodies, bp: bp}
	defer held.release()
	switch {
	case errors.Is(err, body.ErrTooLarge):
		return writeAnswer(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), answers.TooLarge)
	case errors.Is(err, body.ErrBudget):
		w.Header().Set("Retry-After", "5")
		return writeAnswer(w, a.with(outcomeBodyBudget, http.StatusServiceUnavailable), answers.BodyBudget)
	case errors.Is(err, body.ErrTimeout):
		return writeAnswer(w, a.with(outcomeBodyTimeout, http.StatusRequestTimeout), answers.BodyTimeout)
	case err != nil:
		a.err = err
		return writeAnswer(w, a.with(outcomeBadBody, http.StatusBadRequest), answers.BadBody)
	}
	read = true

	payload := bp.Bytes
	a.bodyBytes = len(payload)
	_, endVerify := a.startSpan(r.Context(), spanVerify)
	v := verify.Check(in, r.Header, payload, h.verifyOpts)
	endVerify(nil)
	// A webhook that configures no mechanism authenticates nobody.
	a.authenticated = authenticated(v.Outcome) && !v.Unauthenticated
	if in.LogPreview() && h.records != nil && a.authenticated {
		a.preview = history.Preview(payload, r.Header.Get("Content-Type"), in.SecretValues(), h.DeliveryLog.PreviewBytes)
	}
	if v.Unauthenticated {
		metrics.unauthenticated.Inc()
		h.logger.Warn("webhook has no authentication configured; served without any",
			zap.String("webhook_id", id), zap.String("delivery_id", a.deliveryID))
	}
	if v.Outcome == verify.Handshake && v.Status == http.StatusOK {
		return writeText(w, a.with(outcome(v.Outcome), v.Status), v.Text)
	}
	if v.Expression != "" {
		metrics.expressions.WithLabelValues(v.Expression).Inc()
	}
	a.vars = v.Vars
	if v.Expression == verify.ExpressionError {
		h.logger.Warn("filter expression failed on a delivery; dropped it",
			zap.String("webhook_id", id), zap.String("delivery_id", a.deliveryID), zap.Error(v.Err))
	}
	if v.Outcome != verify.Pass {
		if v.DroppedBy != "" {
			a.err = errors.New("dropped by " + v.DroppedBy)
		}
		return writeAnswer(w, a.with(outcome(v.Outcome), v.Status), v.Message)
	}
	if v.EventID != "" {
		// The signature scheme's own event id, signed by the sender: the
		// best id for the replay guard and the Idempotency-Key.
		a.deliveryID = guard.SafeDeliveryID(v.EventID)
		if repl != nil {
			repl.Set("http.codemie_webhooks.delivery_id", a.deliveryID)
		}
	}
	if *h.ReplayWindow > 0 { // without the replay guard, no digest of the body
		a.delivery = guard.NewDelivery(a.deliveryID, in.HasAuth(), payload)
	}
	// A queued reindex of the datasource covers another trigger (where the
	// guard and the enqueue are one script: not on a Redis Cluster).
	a.delivery.Collapse = in.ResourceType == integration.ResourceDatasource && h.intake != nil && h.intake.OneRoundTrip()
	if !integration.KnownResourceType(in.ResourceType) {
		ans := dispatch.UnsupportedAnswer(in.ResourceType)
		return writeAnswer(w, a.with(outcomeUnsupported, ans.Status), ans.Detail)
	}
	return h.admit(w, r, a, in, held)
}

// heldBody is a request's body and who gives its buffer back: the request
// once it is answered, or a Redis call still sending it after the request
// stopped waiting for it.
type heldBody struct {
	bodies    *body.Reader
	bp        *body.Body
	handedOff bool
}

// handOff makes the caller of the returned function give the buffer back,
// instead of the request.
func (hb *heldBody) handOff() func() {
	hb.handedOff = true
	return func() { hb.bodies.Release(hb.bp) }
}

func (hb *heldBody) release() {
	if !hb.handedOff {
		hb.bodies.Release(hb.bp)
	}
}

// redisDeadline bounds the time one request waits for Redis (loading the
// integration, the guard, the enqueue), well under the 10 s a GitHub
// sender waits: past it the answer is 503, and the sender's retry is a
// duplicate exactly when the webhook was queued after all (Redis runs a
// script it has read even once the caller gave up, and no script is sent
// twice: see redisconn). Loading is bounded by go-redis's own timeouts.
const redisDeadline = 6 * time.Second

// admit runs the guard over a verified request and hands it on: in one
// round trip with the enqueue when the queue allows it, else the guard
// first (failing open) and then the dispatch or the enqueue.
//
// None of it is cut short when the sender goes away. Where the guard and
// the enqueue are two round trips (a Redis Cluster), a cancelled context
// could fail the enqueue after the guard marked the delivery as seen, and
// then the forgetting too: the sender's retry would be answered as a
// duplicate of a webhook that was never queued. redisDeadline and Redis's
// own timeouts bound the wait.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, a answer, in *integration.Integration, held *heldBody) answer {
	// go-redis bounds each round trip with its own timeouts, and its
	// batching ignores a context's deadline: the Bound keeps the deadline.
	ctx := context.WithoutCancel(r.Context())
	deadline := time.Now().Add(max(a.redisLeft, time.Second))
	bound := redisconn.Bound{Deadline: deadline, HandOff: held.handOff}
	job := h.job(r, a, in, held.bp.Bytes)
	a.deliveryID = job.DeliveryID
	if h.intake != nil && h.intake.OneRoundTrip() {
		ctx, end := a.startSpan(ctx, spanAdmit)
		job.TraceParent = a.traceParent(ctx)
		e := h.entry(r, a, in, job)
		d, err := h.intake.Admit(ctx, bound, h.guardConfig(), a.id, a.delivery, e)
		end(err)
		if err != nil {
			// Past the deadline, queued or not, the script runs at most
			// once: the sender's retry is a duplicate exactly when it was
			// queued.
			return h.enqueueFailed(w, a, err)
		}
		if res, stop := h.answerGuard(w, a, d); stop {
			return res
		}
		return writeAnswer(w, a.with(outcomeEnqueued, http.StatusOK), answers.Invoked)
	}

	guardCtx, endGuard := a.startSpan(ctx, spanGuard)
	d, err := redisconn.Wait(redisconn.Bound{Deadline: deadline}, func() (guard.Decision, error) { return h.guard.Check(guardCtx, a.id, a.delivery) })
	endGuard(err)
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
		ctx, end := a.startSpan(ctx, spanEnqueue)
		job.TraceParent = a.traceParent(ctx)
		e := h.entry(r, a, in, job)
		err := h.intake.Enqueue(ctx, bound, e)
		end(err)
		res = h.enqueued(w, a, err)
	} else {
		// A sender that gives up must not leave the calls half made.
		res = h.answerDispatch(w, a, h.dispatch(ctx, job))
	}
	if res.status >= 300 {
		// Not accepted after all: the sender's retry must not be a duplicate.
		_, err := redisconn.Wait(redisconn.Bound{Deadline: time.Now().Add(redisDeadline)}, func() (struct{}, error) {
			return struct{}{}, h.guard.Forget(ctx, a.id, a.delivery)
		})
		if err != nil {
			h.logger.Warn("forgetting a delivery that was not accepted", zap.String("webhook_id", a.id), zap.Error(err))
		}
	}
	return res
}

// answerGuard answers a duplicate or a limited request; stop says it did.
func (h *Handler) answerGuard(w http.ResponseWriter, a answer, d guard.Decision) (answer, bool) {
	switch d.Verdict {
	case guard.Duplicate:
		return writeAnswer(w, a.with(outcomeDuplicate, http.StatusOK), answers.Duplicate), true
	case guard.Collapsed:
		return writeAnswer(w, a.with(outcomeCollapsed, http.StatusOK), answers.Invoked), true
	case guard.Limited:
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
		return writeAnswer(w, a.with(outcomeRateLimited, http.StatusTooManyRequests), h.limitedMsg), true
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
	job := dispatch.Job{WebhookID: in.ID, ResourceType: in.ResourceType, ResourceID: in.ResourceID,
		UserID: in.UserID, DeliveryID: deliveryID, Body: body, ContentType: r.Header.Get("Content-Type")}
	if p := in.Prompt(); p != nil && !h.Upstream.Forward && in.ResourceType != integration.ResourceDatasource {
		// The text sent on, and queued, instead of the body.
		vars := a.vars
		if vars == nil {
			v := verify.ExpressionVars(in, r.Header, body)
			vars = &v
		}
		job.Body = []byte(p.Render(*vars))
		job.ContentType = promptContentType
	}
	if h.Upstream.Forward {
		var secureHeader []string
		if in.SecureHeader != nil {
			secureHeader = []string{in.SecureHeader.Name}
		}
		job.Forward = dispatch.SealForward(in.ID, r.Header, secureHeader, h.keys)
	}
	return job
}

// promptContentType is the content type of a job whose body is a rendered
// prompt.
const promptContentType = "text/plain; charset=utf-8"

// entry is the queue entry of an accepted webhook. The integration's own
// secret-bearing headers are never kept, whatever they are called.
func (h *Handler) entry(r *http.Request, a answer, in *integration.Integration, job dispatch.Job) delivery.Entry {
	e := delivery.NewEntry(job, r.Header, in.SecretHeaders(), time.Now())
	if job.ContentType == promptContentType {
		e.Headers["Content-Type"] = promptContentType // the body is the prompt
	}
	if key := a.delivery.Key(); key != job.DeliveryID {
		e.ReplayKey = key
	}
	return e
}

// dispatch makes one attempt and records it.
func (h *Handler) dispatch(ctx context.Context, job dispatch.Job) dispatch.Result {
	start := time.Now()
	ctx, end := h.dispatchSpan(ctx, job)
	res := h.dispatcher.Dispatch(ctx, job)
	end(res)
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
		return writeAnswer(w, a.with(outcomeDispatched, http.StatusOK), answers.Invoked)
	}
	a.err = errors.New(res.Reason)
	a.step, a.upstreamStatus = res.Step, res.Status
	if res.Answer != nil {
		return writeAnswer(w, a.with(outcomeDispatchRefused, res.Answer.Status), res.Answer.Detail)
	}
	if res.Class == dispatch.Final {
		return writeAnswer(w, a.with(outcomeDispatchFailed, http.StatusBadGateway), answers.DispatchFailed(res.Step, res.Status, false))
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(max(res.RetryAfter, 5*time.Second)/time.Second)))
	return writeAnswer(w, a.with(outcomeDispatchUnavailable, http.StatusServiceUnavailable), answers.DispatchFailed(res.Step, res.Status, true))
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
	if a.outcome == outcomeEnqueued || a.outcome == outcomeCollapsed || a.outcome == outcomeDispatched {
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

// authenticated reports whether a verification outcome means the sender
// proved who it is (or the integration asks for no proof).
func authenticated(o verify.Outcome) bool {
	return o == verify.Pass || o == verify.Filtered || o == verify.Ping
}

// webhookID returns the last segment of an escaped path.
func webhookID(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}
