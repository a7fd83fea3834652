package module_test

import (
	"context"
	"encoding/json"
	"os"
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
	expressions := func(result string) float64 {
		return max(metricValue(t, c, `caddy_codemie_webhooks_filter_expressions_total{result="`+result+`"}`), 0)
	}
	before := map[string]float64{}
	for _, result := range []string{"pass", "drop", "error"} {
		before[result] = expressions(result) // counters outlive configs
	}
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
		if v := expressions(result) - before[result]; v != want {
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
	file := t.TempDir() + "/integrations.json"
	if err := os.WriteFile(file, []byte(`[{"webhook_id":"new","is_enabled":true,"resource_type":"workflow","resource_id":"wf",`+
		`"github_webhook_secret":"s","prompt":"{{body.x"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := runCLI(t, cliEnv(r, cliKey), "", 2, "import", file); !strings.Contains(out, "prompt") {
		t.Errorf("import of a broken prompt: %s", out)
	}
	if n := r.Client.Exists(context.Background(), "codemie:webhooks:{new}").Val(); n != 0 {
		t.Error("import wrote a record whose prompt does not compile")
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

// TestCheckDryRun: check --payload says whether the filter takes a
// delivery and what the prompt would send, and sends nothing.
func TestCheckDryRun(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	addWebhook(t, r, "pr", "assistant", "asst-1")
	r.Client.HSet(ctx, "codemie:webhooks:{pr}", "filter", `event == "pull_request" && !body.pull_request.draft`,
		"prompt", `Review {{body.pull_request.html_url}}`)
	dir := t.TempDir()
	write := func(name, body string) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ready := write("ready.json", `{"pull_request":{"draft":false,"html_url":"https://github.com/o/r/pull/7"}}`)
	draft := write("draft.json", `{"pull_request":{"draft":true}}`)
	env := cliEnv(r, cliKey)
	out := runCLI(t, env, "", 0, "check", "pr", "--payload", ready, "--event", "pull_request")
	for _, want := range []string{"this filter is true are taken", `event == "pull_request" && !body.pull_request.draft`, "filter: taken", "prompt: 36 bytes sent instead of the 75 of the body:\nReview https://github.com/o/r/pull/7"} {
		if !strings.Contains(out, want) {
			t.Errorf("check of a ready pull request does not say %q:\n%s", want, out)
		}
	}
	if out := runCLI(t, env, "", 0, "check", "pr", "--payload", draft, "--event", "pull_request"); !strings.Contains(out, "filter: dropped (false)") {
		t.Errorf("check of a draft:\n%s", out)
	}
	if out := runCLI(t, env, "", 0, "check", "pr", "--payload", ready, "--event", "push"); !strings.Contains(out, "filter: dropped (false)") {
		t.Errorf("check of a push:\n%s", out)
	}
}

// TestFilterSenders: the issue's example filters over payloads shaped as
// GitLab and Jira document them, through Caddy: a GitLab note on a merge
// request mentioning @codemie, a Jira issue whose priority is High.
func TestFilterSenders(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	r.Client.HSet(ctx, "codemie:webhooks:{gl}", "is_enabled", "true", "gitlab_webhook_token", "gl-token",
		"resource_type", "workflow", "resource_id", "wf-gl", "user_id", "u",
		"filter", `event == "Note Hook" && body.object_attributes.noteable_type == "MergeRequest" && body.object_attributes.note.contains("@codemie")`)
	r.Client.HSet(ctx, "codemie:webhooks:{jira}", "is_enabled", "true", "secure_header_name", "X-Webhook-Key",
		"secure_header_value", "jira-key", "resource_type", "workflow", "resource_id", "wf-jira", "user_id", "u",
		"filter", `body.webhookEvent == "jira:issue_updated" && body.issue.fields.priority.name == "High"`)
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	// GitLab's "Note Hook" (docs.gitlab.com, webhook events: comment on a merge request), trimmed.
	note := func(text string) string {
		return `{"object_kind":"note","event_type":"note","user":{"id":1,"name":"Administrator","username":"root"},` +
			`"project_id":5,"object_attributes":{"id":1244,"note":"` + text + `","noteable_type":"MergeRequest",` +
			`"noteable_id":7,"url":"http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244"},` +
			`"merge_request":{"id":7,"iid":1,"title":"Tempora et eos debitis quae laborum et.","state":"opened"}}`
	}
	// Jira Cloud's issue_updated webhook (developer.atlassian.com, webhooks), trimmed.
	issue := func(priority string) string {
		return `{"timestamp":1700000000000,"webhookEvent":"jira:issue_updated","issue_event_type_name":"issue_generic",` +
			`"issue":{"id":"10001","key":"ABC-1","fields":{"summary":"Crash on login","priority":{"name":"` + priority + `","id":"2"}}}}`
	}
	const filtered = `{"message":"Webhook received, event filtered out"}`
	for _, tc := range []struct {
		name, id, body, want string
		headers              []string
	}{
		{"gitlab note mentioning", "gl", note("@codemie please review"), invoked, []string{"X-Gitlab-Token: gl-token", "X-Gitlab-Event: Note Hook"}},
		{"gitlab note without mention", "gl", note("looks good"), filtered, []string{"X-Gitlab-Token: gl-token", "X-Gitlab-Event: Note Hook"}},
		{"gitlab merge request event", "gl", note("@codemie"), filtered, []string{"X-Gitlab-Token: gl-token", "X-Gitlab-Event: Merge Request Hook"}},
		{"jira high", "jira", issue("High"), invoked, []string{"X-Webhook-Key: jira-key"}},
		{"jira low", "jira", issue("Low"), filtered, []string{"X-Webhook-Key: jira-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := append([]string{"Content-Type: application/json"}, tc.headers...)
			if status, _, answer := c.Post(t, webhooks+tc.id, tc.body, headers...); status != 200 || answer != tc.want {
				t.Errorf("got %d %s, want 200 %s", status, answer, tc.want)
			}
		})
	}
	testenv.Eventually(t, "the two taken to be dispatched", func() bool { return len(api.Calls()) == 2 })
}
