package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// spans is the in-memory exporter that Caddy's own tracing exports to when
// OTEL_TRACES_EXPORTER names it: the tracing under test is configured as
// an operator configures it, with the tracing directive.
var spans = tracetest.NewInMemoryExporter()

func init() {
	autoexport.RegisterSpanExporter("codemie-webhooks-test", func(context.Context) (sdktrace.SpanExporter, error) { return spans, nil })
}

func TestTraceAcrossTheQueue(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "codemie-webhooks-test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10") // ms: export at once
	spans.Reset()
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	c := testenv.StartCaddy(t, fmt.Sprintf(`
	route %s* {
		tracing {
			span webhook
		}
		codemie_webhooks {
			redis %s
			upstream %s
			rate_limit off
		}
	}`, testenv.WebhooksPath, r.Addr, api.URL))

	if status, _, _ := postSigned(t, c, "wf", "d-traced", `{"action":"opened"}`); status != 200 {
		t.Fatal(status)
	}
	testenv.Eventually(t, "the dispatch span to be exported", func() bool { return byName(spans.GetSpans(), "codemie_webhooks.dispatch") != nil })

	got := spans.GetSpans()
	request := byName(got, "webhook")
	if request == nil {
		t.Fatalf("no request span among %v", names(got))
	}
	// The handler's steps are children of the request's span.
	for _, name := range []string{"codemie_webhooks.load", "codemie_webhooks.verify", "codemie_webhooks.admit"} {
		s := byName(got, name)
		if s == nil {
			t.Fatalf("no %s span among %v", name, names(got))
		}
		if s.Parent.SpanID() != request.SpanContext.SpanID() || s.SpanContext.TraceID() != request.SpanContext.TraceID() {
			t.Errorf("%s is not a child of the request's span", name)
		}
	}
	// The attempt is a trace of its own, linked across the queue to the
	// span that accepted the delivery.
	admit, attempt := byName(got, "codemie_webhooks.admit"), byName(got, "codemie_webhooks.dispatch")
	if attempt.Parent.IsValid() {
		t.Errorf("the attempt has a parent: %v", attempt.Parent)
	}
	if len(attempt.Links) != 1 || attempt.Links[0].SpanContext.SpanID() != admit.SpanContext.SpanID() ||
		attempt.Links[0].SpanContext.TraceID() != request.SpanContext.TraceID() {
		t.Errorf("the attempt's links %+v do not name the admit span %v", attempt.Links, admit.SpanContext)
	}
	// The CodeMie call carries the attempt's span as its parent.
	calls := api.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls %v", calls)
	}
	want := fmt.Sprintf("00-%s-%s-01", attempt.SpanContext.TraceID(), attempt.SpanContext.SpanID())
	if tp := calls[0].Header.Get("Traceparent"); tp != want {
		t.Errorf("the call's traceparent is %q, want %q", tp, want)
	}

	// The delivery log names the request's trace, for both records.
	testenv.Eventually(t, "the delivery log to hold both records", func() bool {
		return r.Client.XLen(context.Background(), "codemie:webhooks:log").Val() == 2
	})
	for _, m := range r.Client.XRange(context.Background(), "codemie:webhooks:log", "-", "+").Val() {
		var rec struct {
			Outcome string `json:"outcome"`
			TraceID string `json:"trace_id"`
		}
		_ = json.Unmarshal([]byte(m.Values["r"].(string)), &rec)
		if rec.TraceID != request.SpanContext.TraceID().String() {
			t.Errorf("the %s record names trace %q, want the request's", rec.Outcome, rec.TraceID)
		}
	}
}

func byName(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

func names(spans tracetest.SpanStubs) string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return strings.Join(out, ", ")
}
