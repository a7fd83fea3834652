package module

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// capturingIntake records what the handler hands to the queue, and whether
// the context it came with was already cancelled.
type capturingIntake struct {
	oneRoundTrip bool
	cancelled    bool
	body         []byte
}

func (c *capturingIntake) OneRoundTrip() bool { return c.oneRoundTrip }
func (c *capturingIntake) Admit(ctx context.Context, _ redisconn.Bound, _ guard.Config, _ string, _ guard.Delivery, e delivery.Entry) (guard.Decision, error) {
	c.record(ctx, e)
	return guard.Decision{Verdict: guard.Admit}, nil
}
func (c *capturingIntake) Enqueue(ctx context.Context, _ redisconn.Bound, e delivery.Entry) error {
	c.record(ctx, e)
	return nil
}
func (c *capturingIntake) record(ctx context.Context, e delivery.Entry) {
	c.cancelled = ctx.Err() != nil
	c.body = bytes.Clone(e.Job.Body)
}

// TestSenderGoneDoesNotCutEnqueueShort: the request's context is cancelled
// when its sender hangs up, but the enqueue must not be: after the guard
// has marked the delivery as seen, a failed enqueue would make the
// sender's retry a "duplicate" of a webhook never queued.
func TestSenderGoneDoesNotCutEnqueueShort(t *testing.T) {
	for _, oneRoundTrip := range []bool{true, false} {
		h := provisioned(t, &Handler{IntegrationsFile: writeBenchIntegrations(t), Upstream: &Upstream{URL: "http://127.0.0.1:1"}})
		in := &capturingIntake{oneRoundTrip: oneRoundTrip}
		h.intake = in
		body, sig := benchBody()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/code-assistant-api/v1/webhooks/bench", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sig)
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-GitHub-Delivery", "gone-1")
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, req, nil)
		if w.Code != http.StatusOK || in.cancelled || !bytes.Equal(in.body, body) {
			t.Errorf("one round trip %v: status %d, enqueued with a cancelled context: %v, body intact: %v",
				oneRoundTrip, w.Code, in.cancelled, bytes.Equal(in.body, body))
		}
	}
}
