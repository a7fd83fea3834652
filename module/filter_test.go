package module_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestFilterExpression: an integration's filter takes only the deliveries
// it is true for; false and an evaluation error are answered as the other
// filters answer, nothing queued, and counted; set refuses an expression
// that does not compile, and says why.
func TestFilterExpression(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "pr", "workflow", "wf-1")
	const filter = `event == "pull_request" && body.action in ["opened","synchronize"] && !body.pull_request.draft && body.pull_request.base.ref == "main"`
	r.Client.HSet(context.Background(), "codemie:webhooks:{pr}", "filter", filter)
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	for _, tc := range []struct {
		name, body string
		queued     bool
	}{
		{"opened on main", `{"action":"opened","pull_request":{"draft":false,"base":{"ref":"main"}}}`, true},
		{"draft", `{"action":"opened","pull_request":{"draft":true,"base":{"ref":"main"}}}`, false},
		{"closed", `{"action":"closed","pull_request":{"draft":false,"base":{"ref":"main"}}}`, false},
		{"no pull_request: an error", `{"action":"opened"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, answer := postSigned(t, c, "pr", "d-"+strings.ReplaceAll(tc.name, " ", "-"), tc.body)
			want := `{"message":"Webhook received, event filtered out"}`
			if tc.queued {
				want = invoked
			}
			if status != 200 || answer != want {
				t.Errorf("got %d %s, want 200 %s", status, answer, want)
			}
		})
	}
	testenv.Eventually(t, "the one taken to be dispatched", func() bool { return api.Succeeded()["d-opened-on-main"] == 1 })
	if n := len(api.Calls()); n != 1 {
		t.Errorf("%d calls to CodeMie, want 1", n)
	}
	for result, want := range map[string]float64{"pass": 1, "drop": 2, "error": 1} {
		if v := metricValue(t, c, `caddy_codemie_webhooks_filter_expressions_total{result="`+result+`"}`); v != want {
			t.Errorf("expressions %s: %v, want %v", result, v, want)
		}
	}

	out := runCLI(t, cliEnv(r, cliKey), "", 2, "set", "pr", "--filter", `body.action ==`)
	if !strings.Contains(out, "filter") || !strings.Contains(out, "CEL") {
		t.Errorf("set with a broken filter: %s", out)
	}
	if f := r.Client.HGet(context.Background(), "codemie:webhooks:{pr}", "filter").Val(); f != filter {
		t.Errorf("the broken filter was stored: %q", f)
	}
}

// TestPromptSentInsteadOfBody: with a prompt, the workflow's user_input
// and the assistant's text are the rendered prompt, queued as such; without
// one, the body as before.
func TestPromptSentInsteadOfBody(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	addWebhook(t, r, "wf", "workflow", "wf-1")
	addWebhook(t, r, "plain", "workflow", "wf-2")
	r.Client.HSet(ctx, "codemie:webhooks:{wf}", "prompt", `Review {{body.pull_request.html_url}}: {{body.pull_request.title}}\n\n{{body.pull_request.body}}`)
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	body := `{"action":"opened","pull_request":{"html_url":"https://github.com/o/r/pull/7","title":"Fix","body":"Why: because","avatar_url":"` +
		strings.Repeat("x", 2000) + `"}}`
	for _, id := range []string{"wf", "plain"} {
		if status, _, answer := postSigned(t, c, id, "d-"+id, body); status != 200 || answer != invoked {
			t.Fatalf("%s: %d %s", id, status, answer)
		}
	}
	testenv.Eventually(t, "both to be dispatched", func() bool { return api.Succeeded()["d-wf"] == 1 && api.Succeeded()["d-plain"] == 1 })
	for _, call := range api.Calls() {
		var want string
		switch call.String() {
		case "POST /v1/workflows/wf-1/executions":
			want = `{"user_input":"Review https://github.com/o/r/pull/7: Fix\n\nWhy: because"}`
		case "POST /v1/workflows/wf-2/executions":
			b, _ := json.Marshal(map[string]string{"user_input": body})
			want = string(b)
		default:
			t.Errorf("unexpected call %s", call)
			continue
		}
		if call.Body != want {
			t.Errorf("%s sent %.200s, want %.200s", call, call.Body, want)
		}
	}
}
