package module_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const bearerToken = "codemie-bearer-3a9d"

// dispatchSite starts Caddy with a real Redis and the fake CodeMie API,
// authorizing calls with upstream (the body of the upstream block).
func dispatchSite(t *testing.T, upstreamBlock string) (*testenv.Caddy, *testenv.Redis, *testenv.CodeMie) {
	t.Helper()
	return dispatchSiteWith(t, testenv.StartCodeMie(t), upstreamBlock)
}

// dispatchSiteWith is dispatchSite in front of api.
func dispatchSiteWith(t *testing.T, api *testenv.CodeMie, upstreamBlock string) (*testenv.Caddy, *testenv.Redis, *testenv.CodeMie) {
	t.Helper()
	r := testenv.StartRedis(t)
	site := testenv.RedisSite(r.Addr, api.URL, "rate_limit off", "delivery sync")
	site.UpstreamBlock = upstreamBlock + "\nheader X-Edge caddy"
	c := testenv.StartCaddy(t, site.String())
	return c, r, api
}

// addWebhook writes an integration signed with ghSecret that triggers
// resourceType resourceID as user-7.
func addWebhook(t *testing.T, r *testenv.Redis, id, resourceType, resourceID string) {
	t.Helper()
	if err := r.Client.HSet(context.Background(), "codemie:webhooks:{"+id+"}", "is_enabled", "true",
		"github_webhook_secret", ghSecret, "resource_type", resourceType, "resource_id", resourceID, "user_id", "user-7").Err(); err != nil {
		t.Fatal(err)
	}
}

// postSigned posts body to webhook id as GitHub would.
func postSigned(t *testing.T, c *testenv.Caddy, id, delivery, body string) (int, http.Header, string) {
	t.Helper()
	headers := []string{"X-Hub-Signature-256: " + testenv.SignGitHub256(ghSecret, body), "X-GitHub-Event: pull_request"}
	if delivery != "" {
		headers = append(headers, "X-GitHub-Delivery: "+delivery)
	}
	return c.Post(t, webhooks+id, body, headers...)
}

func callList(calls []testenv.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.String()+" "+c.Body)
	}
	return out
}

func TestDispatchEachResource(t *testing.T) {
	c, r, api := dispatchSite(t, "bearer_token "+bearerToken) // the API serves testenv.Datasources
	const body = `{"action":"opened","pull_request":{"title":"Fix <b>it</b>"}}`
	for _, tc := range []struct {
		name, resourceType, resourceID string
		calls                          []string
		status                         int
		answer                         string
	}{
		{"assistant", "assistant", "asst-1", []string{
			`POST /v1/conversations {"folder":"job","initial_assistant_id":"asst-1"}`,
			`PUT /v1/conversations/conv-1 {"name":"Webhook: asst-1"}`,
			`POST /v1/assistants/asst-1/model {"content_raw":"<p>{\"action\":\"opened\",\"pull_request\":{\"title\":\"Fix <b>it</b>\"}}</p>","conversation_id":"conv-1","stream":false,"text":"{\"action\":\"opened\",\"pull_request\":{\"title\":\"Fix <b>it</b>\"}}"}`,
		}, 200, invoked},
		{"workflow", "workflow", "wf-1", []string{
			`POST /v1/workflows/wf-1/executions {"user_input":"{\"action\":\"opened\",\"pull_request\":{\"title\":\"Fix <b>it</b>\"}}"}`,
		}, 200, invoked},
		{"datasource provider", "datasource", "ds-provider", []string{"GET /v1/index/ds-provider ", "PUT /v1/index/provider/ds-provider/reindex {}"}, 200, invoked},
		{"datasource code", "datasource", "ds-code", []string{"GET /v1/index/ds-code ", "PUT /v1/application/my%20proj/index/repo%2Fx?full_reindex=true {}"}, 200, invoked},
		{"datasource summary", "datasource", "ds-summary", []string{"GET /v1/index/ds-summary ", "PUT /v1/application/proj/index/repo?full_reindex=true {}"}, 200, invoked},
		{"datasource chunk-summary", "datasource", "ds-chunk", []string{"GET /v1/index/ds-chunk ", "PUT /v1/application/proj/index/repo?full_reindex=true {}"}, 200, invoked},
		{"datasource jira", "datasource", "ds-jira", []string{"GET /v1/index/ds-jira ",
			`PUT /v1/index/knowledge_base/jira?incremental_reindex=true {"jql":"project = KB AND updated >= -1d","name":"jira-kb","project_name":"proj"}`}, 200, invoked},
		{"datasource confluence", "datasource", "ds-confluence", []string{"GET /v1/index/ds-confluence ",
			`PUT /v1/index/knowledge_base/confluence?full_reindex=true {"name":"wiki","project_name":"proj"}`}, 200, invoked},
		{"datasource google", "datasource", "ds-google", []string{"GET /v1/index/ds-google ",
			`PUT /v1/index/knowledge_base/google/reindex {"name":"gdoc","project_name":"proj"}`}, 200, invoked},
		{"datasource not reindexable", "datasource", "ds-file", []string{"GET /v1/index/ds-file "},
			403, `{"detail":"Datasource type 'knowledge_base_file' is not supported via webhook."}`},
		{"datasource unknown", "datasource", "ds-nope", []string{"GET /v1/index/ds-nope "},
			502, `{"detail":"Webhook dispatch failed at step 'read datasource': CodeMie answered 404"}`},
		{"unsupported resource type", "robot", "r-1", nil, 400, `{"detail":"Unsupported resource type 'robot'"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "wh-" + strings.ReplaceAll(tc.name, " ", "-")
			addWebhook(t, r, id, tc.resourceType, tc.resourceID)
			api.Reset()
			delivery := "delivery-" + id
			status, _, answer := postSigned(t, c, id, delivery, body)
			if status != tc.status || answer != tc.answer {
				t.Errorf("answer %d %s, want %d %s", status, answer, tc.status, tc.answer)
			}
			calls := api.Calls()
			if got := callList(calls); !reflect.DeepEqual(got, tc.calls) {
				t.Fatalf("calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.calls, "\n"))
			}
			for i, call := range calls {
				for name, want := range map[string]string{"Authorization": "Bearer " + bearerToken, "User-Id": "user-7",
					"X-Request-Id": delivery, "Idempotency-Key": delivery, "X-Edge": "caddy"} {
					if got := call.Header.Get(name); got != want {
						t.Errorf("call %d (%s): %s = %q, want %q", i, call, name, got, want)
					}
				}
			}
		})
	}
}

func TestDispatchFailuresAnswered(t *testing.T) {
	c, r, api := dispatchSite(t, "bearer_token "+bearerToken+"\n\t\t\t\ttimeout 200ms")
	addWebhook(t, r, "wf", "workflow", "wf-1")
	body := `{"action":"opened"}`
	failing := func(status int) func(testenv.Call) int { return func(testenv.Call) int { return status } }

	for _, tc := range []struct {
		name       string
		fail       func(testenv.Call) int
		hang       bool
		status     int
		answer     string
		retryAfter string
	}{
		{name: "401 from upstream", fail: failing(401), status: 502,
			answer: `{"detail":"Webhook dispatch failed at step 'create workflow execution': CodeMie answered 401"}`},
		{name: "404 resource", fail: failing(404), status: 502,
			answer: `{"detail":"Webhook dispatch failed at step 'create workflow execution': CodeMie answered 404"}`},
		{name: "500", fail: failing(500), status: 503, retryAfter: "5",
			answer: `{"detail":"Webhook dispatch failed at step 'create workflow execution': CodeMie answered 500, retry later"}`},
		{name: "429 with Retry-After", fail: failing(429), status: 503, retryAfter: "7",
			answer: `{"detail":"Webhook dispatch failed at step 'create workflow execution': CodeMie answered 429, retry later"}`},
		{name: "slow beyond timeout", hang: true, status: 503, retryAfter: "5",
			answer: `{"detail":"Webhook dispatch failed at step 'create workflow execution', retry later"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.FailWith(tc.fail)
			api.HangOn(func(testenv.Call) bool { return tc.hang })
			defer api.FailWith(nil)
			defer api.HangOn(nil)
			delivery := "d-" + strings.ReplaceAll(tc.name, " ", "-")
			status, hdr, answer := postSigned(t, c, "wf", delivery, body)
			if status != tc.status || answer != tc.answer || hdr.Get("Retry-After") != tc.retryAfter {
				t.Errorf("got %d %s (Retry-After %q), want %d %s (Retry-After %q)", status, answer, hdr.Get("Retry-After"),
					tc.status, tc.answer, tc.retryAfter)
			}
			// Not accepted: the sender's retry of the same delivery goes through.
			api.FailWith(nil)
			api.HangOn(nil)
			if status, _, answer := postSigned(t, c, "wf", delivery, body); status != 200 {
				t.Errorf("retry of a failed delivery: %d %s, want it dispatched", status, answer)
			}
		})
	}

	for sample, min := range map[string]float64{
		`caddy_codemie_webhooks_dispatch_total{resource_type="workflow",result="final"}`:     2,
		`caddy_codemie_webhooks_dispatch_total{resource_type="workflow",result="retryable"}`: 3,
		`caddy_codemie_webhooks_dispatch_total{resource_type="workflow",result="success"}`:   5,
		`caddy_codemie_webhooks_dispatch_duration_seconds_count{resource_type="workflow"}`:   10,
	} {
		if v := metricValue(t, c, sample); v < min {
			t.Errorf("%s = %v, want at least %v", sample, v, min)
		}
	}
	if logs := c.Logs(t); strings.Contains(logs, bearerToken) || strings.Contains(logs, "fake failure") {
		t.Error("the logs hold the bearer token or the upstream's body")
	}
}

func TestDispatchUpstreamDown(t *testing.T) {
	r := testenv.StartRedis(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + r.Addr, Upstream: "http://127.0.0.1:" + strconv.Itoa(port), Options: []string{"delivery sync"}}.String())
	status, hdr, answer := postSigned(t, c, "wf", "d-1", `{}`)
	if status != 503 || hdr.Get("Retry-After") != "5" ||
		answer != `{"detail":"Webhook dispatch failed at step 'create workflow execution', retry later"}` {
		t.Errorf("got %d %s", status, answer)
	}
	if logs := c.Logs(t); !strings.Contains(logs, `"reason":"dispatch_unavailable"`) || !strings.Contains(logs, "connection refused") {
		t.Errorf("the log line does not say why:\n%s", logs)
	}
}

func TestReplayGuardAfterDispatch(t *testing.T) {
	c, r, api := dispatchSite(t, "bearer_token "+bearerToken)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	body := `{"action":"opened"}`
	if status, _, answer := postSigned(t, c, "wf", "d-once", body); status != 200 || answer != invoked {
		t.Fatalf("first delivery: %d %s", status, answer)
	}
	status, _, answer := postSigned(t, c, "wf", "d-once", body)
	if status != 200 || answer != `{"message":"Duplicate delivery ignored"}` {
		t.Errorf("redelivery: %d %s, want the duplicate answer", status, answer)
	}
	if n := len(api.Calls()); n != 1 {
		t.Errorf("%d dispatches for one delivery id, want 1", n)
	}

	// Without a delivery id, the body tells deliveries apart: each new one is
	// dispatched with an id of its own, and the same one again is a
	// duplicate (a captured request replayed without its delivery header).
	if _, _, answer := postSigned(t, c, "wf", "", body); answer != `{"message":"Duplicate delivery ignored"}` {
		t.Errorf("d-once without its delivery header: %s, want the duplicate answer", answer)
	}
	postSigned(t, c, "wf", "", `{"action":"closed"}`)
	postSigned(t, c, "wf", "", `{"action":"reopened"}`)
	postSigned(t, c, "wf", "", `{"action":"reopened"}`)
	calls := api.Calls()
	if len(calls) != 3 {
		t.Fatalf("calls %v, want 3", callList(calls))
	}
	a, b := calls[1].Header.Get("Idempotency-Key"), calls[2].Header.Get("Idempotency-Key")
	if !strings.HasPrefix(a, "edge-") || !strings.HasPrefix(b, "edge-") || a == b {
		t.Errorf("generated delivery ids %q and %q: want two distinct edge- ids", a, b)
	}
}

func TestDispatchOAuth2(t *testing.T) {
	c, api := oauth2Site(t)

	for i := range 3 {
		if status, _, answer := postSigned(t, c, "wf", "d-"+strconv.Itoa(i), `{}`); status != 200 {
			t.Fatalf("delivery %d: %d %s", i, status, answer)
		}
	}
	if n := api.TokensIssued(); n != 1 {
		t.Errorf("%d tokens fetched for 3 deliveries, want 1 (cached)", n)
	}
	for _, call := range api.Calls() {
		if call.Header.Get("Authorization") != "Bearer access-1" {
			t.Errorf("%s: Authorization %q", call, call.Header.Get("Authorization"))
		}
	}
	if logs := c.Logs(t); strings.Contains(logs, testenv.FakeClientSecret) || strings.Contains(logs, "access-1") {
		t.Error("the logs hold the client secret or a token")
	}
}

func TestDispatchTokenEndpointFailing(t *testing.T) {
	c, api := oauth2Site(t)

	api.FailTokens(http.StatusServiceUnavailable)
	status, _, answer := postSigned(t, c, "wf", "d-1", `{}`)
	if status != 503 || answer != `{"detail":"Webhook dispatch failed at step 'authenticate', retry later"}` {
		t.Errorf("token endpoint down: %d %s", status, answer)
	}
	if len(api.Calls()) != 0 {
		t.Error("the API was called without a token")
	}
	if logs := c.Logs(t); !strings.Contains(logs, "the token endpoint answered 503") {
		t.Errorf("the log does not say the token endpoint failed:\n%s", logs)
	}
	api.FailTokens(0)
	if status, _, answer := postSigned(t, c, "wf", "d-1", `{}`); status != 200 {
		t.Errorf("token endpoint back: %d %s", status, answer)
	}
}

// oauth2Site serves a workflow webhook whose upstream takes tokens from the
// fake API's client-credentials endpoint.
func oauth2Site(t *testing.T) (*testenv.Caddy, *testenv.CodeMie) {
	t.Helper()
	api := testenv.StartCodeMie(t)
	c, r, _ := dispatchSiteWith(t, api, fmt.Sprintf("oauth2 %s/token %s %s", api.URL, testenv.FakeClientID, testenv.FakeClientSecret))
	addWebhook(t, r, "wf", "workflow", "wf-1")
	return c, api
}
