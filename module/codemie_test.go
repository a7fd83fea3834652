package module_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestFormEncodedDeliveryText: GitHub's form-encoded deliveries are
// verified over the raw bytes, and the workflow is given the payload's JSON
// document, not the raw form; in sync mode and through the queue alike.
func TestFormEncodedDeliveryText(t *testing.T) {
	const doc = `{"action":"opened","pull_request":{"title":"a & b"}}`
	form := "payload=" + url.QueryEscape(doc)
	post := func(c *testenv.Caddy, delivery string) {
		t.Helper()
		status, _, answer := c.Post(t, webhooks+"wf", form, "Content-Type: application/x-www-form-urlencoded",
			"X-Hub-Signature-256: "+testenv.SignGitHub256(ghSecret, form), "X-GitHub-Event: pull_request", "X-GitHub-Delivery: "+delivery)
		if status != 200 || answer != invoked {
			t.Fatalf("%s: %d %s", delivery, status, answer)
		}
	}
	t.Run("sync", func(t *testing.T) {
		c, r, api := dispatchSite(t, "bearer_token "+bearerToken)
		addWebhook(t, r, "wf", "workflow", "wf-1")
		post(c, "form-sync")
		checkUserInput(t, api, doc)
	})
	t.Run("async", func(t *testing.T) {
		r := testenv.StartRedis(t)
		api := testenv.StartCodeMie(t)
		addWebhook(t, r, "wf", "workflow", "wf-1")
		c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
		post(c, "form-async")
		testenv.Eventually(t, "the queued webhook to be dispatched", func() bool { return api.Succeeded()["form-async"] == 1 })
		checkUserInput(t, api, doc)
	})
}

// checkUserInput checks that the one call made started wf-1 with want as
// its user_input.
func checkUserInput(t *testing.T, api *testenv.CodeMie, want string) {
	t.Helper()
	calls := api.Calls()
	var body struct {
		UserInput string `json:"user_input"`
	}
	if len(calls) != 1 || calls[0].String() != "POST /v1/workflows/wf-1/executions" ||
		json.Unmarshal([]byte(calls[0].Body), &body) != nil || body.UserInput != want {
		t.Errorf("calls %v, want one execution with user_input %s", callList(calls), want)
	}
}

// TestHandshakesAnsweredAtTheEdge: Slack's signed url_verification and
// Microsoft Graph's validation are answered with their token, text/plain,
// and never dispatched; Graph's only where the integration allows it.
func TestHandshakesAnsweredAtTheEdge(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	r.Client.HSet(ctx, "codemie:webhooks:{slack}", "is_enabled", "true", "signature_scheme", "slack",
		"signature_secret", "slack-signing-secret", "resource_type", "workflow", "resource_id", "wf-1")
	r.Client.HSet(ctx, "codemie:webhooks:{graph}", "is_enabled", "true", "graph_validation", "true",
		"resource_type", "workflow", "resource_id", "wf-2")
	addWebhook(t, r, "gh", "workflow", "wf-3")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	const handshakes = `caddy_codemie_webhooks_requests_total{outcome="handshake"}`
	before := max(metricValue(t, c, handshakes), 0) // counters outlive configs

	body := `{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := "v0=" + hex.EncodeToString(testenv.HMACSHA256([]byte("slack-signing-secret"), "v0:"+ts+":"+body))
	for _, tc := range []struct {
		name, path, body string
		headers          []string
		status           int
		contentType      string
		answer           string
	}{
		{"slack challenge", webhooks + "slack", body, []string{"X-Slack-Request-Timestamp: " + ts, "X-Slack-Signature: " + sig},
			200, "text/plain; charset=utf-8", "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
		{"slack challenge unsigned", webhooks + "slack", body, nil, 401, "application/json", `{"detail":"Missing webhook signature"}`},
		{"graph validation", webhooks + "graph?validationToken=Validation%3A%20Testing%20client%20application", "", []string{"Content-Type: text/plain"},
			200, "text/plain; charset=utf-8", "Validation: Testing client application"},
		{"graph validation where not allowed", webhooks + "gh?validationToken=abc", "", nil,
			401, "application/json", `{"detail":"Missing GitHub webhook signature header"}`},
	} {
		status, header, answer := c.Post(t, tc.path, tc.body, tc.headers...)
		if status != tc.status || header.Get("Content-Type") != tc.contentType || answer != tc.answer {
			t.Errorf("%s: %d %q %s, want %d %q %s", tc.name, status, header.Get("Content-Type"), answer, tc.status, tc.contentType, tc.answer)
		}
	}
	if v := metricValue(t, c, handshakes) - before; v != 2 {
		t.Errorf("handshake outcomes: %v, want 2", v)
	}
	if l, _, _ := queueState(t, r); l != 0 || len(api.Calls()) != 0 {
		t.Errorf("a handshake was queued (%d) or dispatched (%v)", l, callList(api.Calls()))
	}
}

// TestActAsOwner: with act_as owner every call to CodeMie carries a token
// whose subject is the integration's owner, exchanged at the identity
// provider; an owner it refuses ends in the dead stream as a final
// failure that names the owner.
func TestActAsOwner(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	kc := testenv.StartKeycloak(t, map[string]string{"kc-7": "user-7"})
	addWebhook(t, r, "asst", "assistant", "asst-1") // owned by user-7
	r.Client.HSet(context.Background(), "codemie:webhooks:{orphan}", "is_enabled", "true", "github_webhook_secret", ghSecret,
		"resource_type", "workflow", "resource_id", "wf-1", "user_id", "ghost")
	site := strings.Replace(asyncSite(r.Addr, api.URL, ""), "upstream "+api.URL, fmt.Sprintf(`upstream %s {
				oauth2 %s %s %s
				act_as owner
			}`, api.URL, kc.TokenURL, testenv.KeycloakClientID, testenv.KeycloakClientSecret), 1)
	c := testenv.StartCaddy(t, site)

	for i, id := range []string{"asst", "asst"} {
		if status, _, answer := postSigned(t, c, id, fmt.Sprint("owner-", i), fmt.Sprintf(`{"n":%d}`, i)); status != 200 {
			t.Fatalf("%d %s", status, answer)
		}
	}
	testenv.Eventually(t, "both webhooks to be dispatched", func() bool { return api.Succeeded()["owner-0"] == 3 && api.Succeeded()["owner-1"] == 3 })
	for _, call := range api.Calls() {
		token := strings.TrimPrefix(call.Header.Get("Authorization"), "Bearer ")
		if who := kc.Subject(token); who != "kc-7" || call.Header.Get("X-Auth-Request-Access-Token") != token {
			t.Errorf("%s carried a token of %q (and %q as X-Auth-Request-Access-Token), want the owner kc-7's in both",
				call, who, call.Header.Get("X-Auth-Request-Access-Token"))
		}
	}
	if n := kc.Exchanges(); n != 1 {
		t.Errorf("%d token exchanges for one owner, want 1 (kept until it expires)", n)
	}

	// An owner the identity provider does not know: final, named.
	api.Reset()
	if status, _, answer := postSigned(t, c, "orphan", "orphan-1", `{}`); status != 200 {
		t.Fatalf("%d %s", status, answer)
	}
	testenv.Eventually(t, "the orphan's webhook to die", func() bool { return deadDeliveries(t, r)["orphan-1"] })
	msgs, _ := r.Client.XRange(context.Background(), "codemie:webhooks:dead", "-", "+").Result()
	reason, _ := msgs[len(msgs)-1].Values["last_reason"].(string)
	if !strings.Contains(reason, `owner "ghost"`) || !strings.Contains(reason, "403") {
		t.Errorf("dead letter reason %q: want one naming owner \"ghost\" and the 403", reason)
	}
	if len(api.Calls()) != 0 {
		t.Errorf("calls made without the owner's token: %v", callList(api.Calls()))
	}
	logs := c.Logs(t)
	if strings.Contains(logs, testenv.KeycloakClientSecret) || strings.Contains(logs, "kctok-") {
		t.Error("a client secret or a token reached the log")
	}
}

// TestForwardToCodeMiesWebhook: in forward mode the worker hands each
// verified, queued delivery to CodeMie's own POST /v1/webhooks/{id} with
// its raw body and the headers CodeMie verifies it with (the fake checks
// them as CodeMie does), after CodeMie was down for a while; the
// forwarded headers are kept sealed in Redis. A delivery CodeMie refuses
// (401) is final.
func TestForwardToCodeMiesWebhook(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	addWebhook(t, r, "gh", "assistant", "asst-1")
	r.Client.HSet(ctx, "codemie:webhooks:{gl}", "is_enabled", "true", "gitlab_webhook_token", glToken,
		"resource_type", "workflow", "resource_id", "wf-1", "user_id", "user-7")
	r.Client.HSet(ctx, "codemie:webhooks:{stale}", "is_enabled", "true", "github_webhook_secret", ghSecret,
		"resource_type", "workflow", "resource_id", "wf-2", "user_id", "user-7")
	api.SetWebhook("gh", testenv.Webhook{GitHubSecret: ghSecret})
	api.SetWebhook("gl", testenv.Webhook{GitLabToken: glToken})
	api.SetWebhook("stale", testenv.Webhook{GitHubSecret: "rotated-in-codemie-only"})
	site := strings.Replace(asyncSite(r.Addr, api.URL, "secrets_key "+cliKey), "upstream "+api.URL, "upstream "+api.URL+` {
				forward
			}`, 1)
	c := testenv.StartCaddy(t, site)

	api.SetDown(true)
	ghBody := `{"action":"opened","number":1}`
	if status, _, answer := postSigned(t, c, "gh", "fw-gh", ghBody); status != 200 {
		t.Fatalf("github: %d %s", status, answer)
	}
	glBody := `{"object_kind":"merge_request","object_attributes":{"action":"open"}}`
	if status, _, answer := c.Post(t, webhooks+"gl", glBody, "X-Gitlab-Token: "+glToken, "X-Gitlab-Event: Merge Request Hook",
		"X-Gitlab-Event-UUID: fw-gl", "Content-Type: application/json"); status != 200 {
		t.Fatalf("gitlab: %d %s", status, answer)
	}
	testenv.Eventually(t, "CodeMie's refusals to be retried", func() bool { _, retrying, _ := queueState(t, r); return retrying > 0 || len(api.Calls()) >= 2 })
	msgs, _ := r.Client.XRange(ctx, "{codemie:webhooks:queue}", "-", "+").Result()
	for _, m := range msgs {
		fw, _ := m.Values["forward"].(string)
		if !strings.HasPrefix(fw, "enc:v1:") || strings.Contains(fw, glToken) {
			t.Errorf("entry %s keeps the forwarded headers as %q, want them sealed", m.ID, fw)
		}
	}

	api.SetDown(false)
	testenv.Eventually(t, "both deliveries to reach CodeMie's webhook", func() bool {
		return api.Succeeded()["fw-gh"] == 1 && api.Succeeded()["fw-gl"] == 1
	})
	for _, call := range api.Calls() {
		if call.Status != 200 {
			continue
		}
		switch call.Path {
		case "/v1/webhooks/gh":
			if call.Body != ghBody || call.Header.Get("X-Github-Event") != "pull_request" || call.Header.Get("Authorization") != "" {
				t.Errorf("github forwarded as %s %v", call.Body, call.Header)
			}
		case "/v1/webhooks/gl":
			if call.Body != glBody || call.Header.Get("X-Gitlab-Event") != "Merge Request Hook" {
				t.Errorf("gitlab forwarded as %s %v", call.Body, call.Header)
			}
		default:
			t.Errorf("unexpected call %s", call)
		}
	}

	// CodeMie refuses the delivery for good: the dead stream.
	if status, _, answer := postSigned(t, c, "stale", "fw-stale", `{}`); status != 200 {
		t.Fatalf("stale: %d %s", status, answer)
	}
	testenv.Eventually(t, "the refused delivery to die", func() bool { return deadDeliveries(t, r)["fw-stale"] })
	testenv.Eventually(t, "the queue to empty", func() bool { l, rt, _ := queueState(t, r); return l == 0 && rt == 0 })
}

// TestServiceAccountWarned: acting as the service account is never
// silent: provisioning logs it at warn level; act_as owner does not.
func TestServiceAccountWarned(t *testing.T) {
	const warning = "calls to CodeMie carry the service account's identity"
	c, _, _ := dispatchSite(t, "bearer_token "+bearerToken)
	if logs := c.Logs(t); !strings.Contains(logs, warning) || !strings.Contains(logs, `"level":"warn"`) {
		t.Errorf("no warning about the service account in the log")
	}
}
