package module

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
)

// tracerName names the handler's spans' instrumentation scope.
const tracerName = "github.com/codemie-edge/caddy-webhooks"

// Span names: the handler's steps, children of the request's span when
// Caddy's tracing is on, and each dispatch attempt.
const (
	spanLoad     = "codemie_webhooks.load"
	spanVerify   = "codemie_webhooks.verify"
	spanAdmit    = "codemie_webhooks.admit" // the guard and the enqueue, in one round trip
	spanGuard    = "codemie_webhooks.guard"
	spanEnqueue  = "codemie_webhooks.enqueue"
	spanDispatch = "codemie_webhooks.dispatch"
)

// tracers remembers the tracer provider of Caddy's tracing, as seen on
// traced requests: the workers' attempts, which no request carries, make
// their spans with it. (Caddy's tracing does not set OpenTelemetry's
// global provider; its spans carry theirs.)
type tracers struct{ v atomic.Value } // of providerBox

type providerBox struct{ tp trace.TracerProvider }

// seen remembers the provider of a request's span, when it records.
func (t *tracers) seen(span trace.Span) {
	if !span.IsRecording() {
		return
	}
	tp := span.TracerProvider()
	if old, ok := t.v.Load().(providerBox); !ok || old.tp != tp {
		t.v.Store(providerBox{tp})
	}
}

// provider is the provider last seen; nil before any traced request.
func (t *tracers) provider() trace.TracerProvider {
	b, _ := t.v.Load().(providerBox)
	return b.tp
}

// noEnd ends no span.
func noEnd(error) {}

// startSpan starts a span named name, a child of ctx's span, for a
// request whose answer is a. Nothing is looked up, started or allocated
// for an untraced request: a lookup that finds no span walks every context
// of the request, and one through context.WithoutCancel allocates. The
// returned function ends the span, marking it failed when given an error.
func (a answer) startSpan(ctx context.Context, name string) (context.Context, func(error)) {
	if !a.traced {
		return ctx, noEnd
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noEnd
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, name)
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// traceParent is traceParent for a request whose answer is a.
func (a answer) traceParent(ctx context.Context) string {
	if !a.traced {
		return ""
	}
	return traceParent(ctx)
}

// traceParent is the W3C traceparent of ctx's span; "" when it has none.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// traceIDOf is the trace id of W3C traceparent tp; "" when it has none.
func traceIDOf(tp string) string {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp}))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// dispatchSpan starts the span of one attempt at job: a child of ctx's
// span (a sync dispatch, inside its request), or, for a queued job that
// was traced, the root of a trace linked to the span that accepted it.
func (h *Handler) dispatchSpan(ctx context.Context, job dispatch.Job) (context.Context, func(dispatch.Result)) {
	attrs := []attribute.KeyValue{
		attribute.String("codemie_webhooks.webhook_id", job.WebhookID),
		attribute.String("codemie_webhooks.delivery_id", job.DeliveryID),
		attribute.String("codemie_webhooks.resource_type", job.ResourceType),
	}
	var span trace.Span
	switch parent := trace.SpanFromContext(ctx); {
	case parent.IsRecording():
		ctx, span = parent.TracerProvider().Tracer(tracerName).Start(ctx, spanDispatch, trace.WithAttributes(attrs...))
	case job.TraceParent != "" && h.tracers.provider() != nil:
		accepted := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": job.TraceParent}))
		if !accepted.IsValid() {
			return ctx, func(dispatch.Result) {}
		}
		ctx, span = h.tracers.provider().Tracer(tracerName).Start(ctx, spanDispatch, trace.WithNewRoot(),
			trace.WithLinks(trace.Link{SpanContext: accepted}), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	default:
		return ctx, func(dispatch.Result) {}
	}
	return ctx, func(res dispatch.Result) {
		span.SetAttributes(attribute.String("codemie_webhooks.result", res.Class.String()),
			attribute.Int("codemie_webhooks.codemie_status", res.Status))
		if res.Class != dispatch.Success {
			span.SetStatus(codes.Error, res.Reason)
		}
		span.End()
	}
}
