package dispatch

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestForward: the delivery's body and headers (its secure header
// included, sealed or not) reach CodeMie's webhook endpoint, which checks
// them; its answers are classified as any call's.
func TestForward(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.SetWebhook("hdr", testenv.Webhook{SecureHeaderName: "X-Webhook-Key", SecureHeaderValue: "s3cret"})
	keys, err := seal.ParseKeys("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")
	if err != nil {
		t.Fatal(err)
	}
	req := http.Header{"X-Webhook-Key": {"s3cret"}, "Content-Type": {"application/json"}, "Authorization": {"Bearer not-forwarded"}}
	for _, tc := range []struct {
		name    string
		keys    *seal.Keys
		id      string
		value   string
		class   Class
		status  int
		clearOK bool
	}{
		{"sealed", keys, "hdr", "s3cret", Success, 200, false},
		{"in clear without a key", nil, "hdr", "s3cret", Success, 200, true},
		{"refused by CodeMie", keys, "hdr", "wrong", Final, 401, false},
		{"unknown to CodeMie", keys, "nope", "s3cret", Final, 400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.Reset()
			h := req.Clone()
			h.Set("X-Webhook-Key", tc.value)
			fw := SealForward(tc.id, h, []string{"X-Webhook-Key"}, tc.keys)
			if strings.Contains(fw, tc.value) != tc.clearOK {
				t.Errorf("forwarded headers stored as %q", fw)
			}
			c := newClient(t, api.URL, nil)
			c.cfg.Forward, c.cfg.Keys = true, tc.keys
			j := job("workflow", "wf", `{"n":1}`)
			j.WebhookID, j.Forward = tc.id, fw
			res := c.Dispatch(context.Background(), j)
			if res.Class != tc.class || res.Status != tc.status {
				t.Fatalf("result %+v, want %v %d", res, tc.class, tc.status)
			}
			call := api.Calls()[0]
			if call.String() != "POST /v1/webhooks/"+tc.id || call.Body != `{"n":1}` || call.Header.Get("Authorization") != "" {
				t.Errorf("call %s %s %v", call, call.Body, call.Header)
			}
		})
	}
}

// TestForwardKeepsTheEdgesHeaders: an integration's secure header named
// like a header the edge sends (user-id, the operator's, the ids) does not
// replace it; the sender's own headers CodeMie verifies with do.
func TestForwardKeepsTheEdgesHeaders(t *testing.T) {
	api := testenv.StartCodeMie(t)
	sent := http.Header{"User-Id": {"admin"}, "X-Env": {"other-tenant"}, "Idempotency-Key": {"forged"},
		"Content-Type": {"application/x-www-form-urlencoded"}}
	fw := SealForward("wh", sent, []string{"User-Id", "X-Env", "Idempotency-Key"}, nil)
	c := newClient(t, api.URL, nil)
	c.cfg.Forward = true
	j := job("workflow", "wf", "payload=%7B%7D")
	j.Forward = fw
	c.Dispatch(context.Background(), j)
	calls := api.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	for name, want := range map[string]string{"User-Id": "user-1", "X-Env": "test", "Idempotency-Key": "delivery-1",
		"Content-Type": "application/x-www-form-urlencoded"} {
		if got := calls[0].Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
