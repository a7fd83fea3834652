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
