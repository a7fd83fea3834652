package expr

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// Bodies shaped as the senders document them (trimmed to the fields used).
const (
	githubPR = `{"action":"opened","number":7,"pull_request":{"title":"Fix","draft":false,` +
		`"base":{"ref":"main"},"html_url":"https://github.com/o/r/pull/7","user":{"login":"dev"}}}`
	githubDraft = `{"action":"opened","pull_request":{"draft":true,"base":{"ref":"main"}}}`
	gitlabNote  = `{"object_kind":"note","event_type":"note","object_attributes":{"note":"@codemie please review",` +
		`"noteable_type":"MergeRequest","action":"create"},"merge_request":{"iid":3}}`
	jiraIssue = `{"webhookEvent":"jira:issue_updated","issue":{"key":"ABC-1","fields":{"priority":{"name":"High"}}}}`
)

func TestFilter(t *testing.T) {
	prFilter := `event == "pull_request" && body.action in ["opened","synchronize"] && !body.pull_request.draft && body.pull_request.base.ref == "main"`
	noteFilter := `event == "Note Hook" && body.object_attributes.noteable_type == "MergeRequest" && body.object_attributes.note.contains("@codemie")`
	jiraFilter := `body.webhookEvent == "jira:issue_updated" && body.issue.fields.priority.name == "High"`
	for _, tc := range []struct {
		name, filter, event, body string
		want, fails               bool
	}{
		{"pr opened on main", prFilter, "pull_request", githubPR, true, false},
		{"pr draft", prFilter, "pull_request", githubDraft, false, false},
		{"other event", prFilter, "push", githubPR, false, false},
		{"gitlab note mentioning", noteFilter, "Note Hook", gitlabNote, true, false},
		{"gitlab note without mention", noteFilter, "Note Hook", strings.Replace(gitlabNote, "@codemie", "someone", 1), false, false},
		{"jira high", jiraFilter, "", jiraIssue, true, false},
		{"jira low", jiraFilter, "", strings.Replace(jiraIssue, "High", "Low", 1), false, false},
		{"missing field is an error", `body.nothing.here == 1`, "", jiraIssue, false, true},
		{"number compared with an int", `body.number == 7`, "", githubPR, true, false},
		{"not json: body is null", `body == null`, "", "not json", true, false},
		{"headers and webhook", `headers["X-Github-Event"] == "pull_request" && webhook.id == "gh-1"`, "", githubPR, true, false},
		{"over the cost limit", `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`, "", "{}", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Allows(Vars{Event: tc.event, Body: []byte(tc.body),
				Headers: http.Header{"X-Github-Event": {"pull_request"}}, Webhook: map[string]string{"id": "gh-1"}})
			if got != tc.want || (err != nil) != tc.fails {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tc.want, tc.fails)
			}
		})
	}
}

func TestCompileFilterRefuses(t *testing.T) {
	for _, src := range []string{`body.action ==`, `"a string"`, `1 + 1`, `unknown_var == 1`, strings.Repeat("a", MaxSourceBytes+1)} {
		if _, err := CompileFilter(src); err == nil {
			t.Errorf("%.40q compiled", src)
		}
	}
}

func BenchmarkFilter(b *testing.B) {
	f, err := CompileFilter(`event == "pull_request" && body.action in ["opened","synchronize"] && !body.pull_request.draft && body.pull_request.base.ref == "main"`)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 60 << 10} {
		body := []byte(githubPR[:len(githubPR)-1] + `,"padding":"` + strings.Repeat("x", size-len(githubPR)-14) + `"}`)
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := f.Allows(Vars{Event: "pull_request", Body: body}); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

func TestPrompt(t *testing.T) {
	body := []byte(`{"action":"opened","pull_request":{"html_url":"https://github.com/o/r/pull/7","title":"Fix \"it\"","body":"Line 1\nLine 2","number":7,"labels":[{"name":"bug"}]}}`)
	v := Vars{Event: "pull_request", Action: "opened", Body: body,
		Headers: http.Header{"X-Github-Event": {"pull_request"}}, Webhook: map[string]string{"id": "gh-1"}}
	for _, tc := range []struct{ src, want string }{
		{`Review {{body.pull_request.html_url}}: {{body.pull_request.title}}\n\n{{body.pull_request.body}}`,
			"Review https://github.com/o/r/pull/7: Fix \"it\"\n\nLine 1\nLine 2"},
		{`{{event}}/{{action}} #{{ body.pull_request.number }} {{body.pull_request.labels.#.name}}`, `pull_request/opened #7 ["bug"]`},
		{`[{{body.missing.field}}] {{headers.x-github-event}} {{webhook.id}} {{webhook.nothing}}`, `[] pull_request gh-1 `},
		{`no references`, `no references`},
	} {
		p, err := CompilePrompt(tc.src)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if got := p.Render(v); got != tc.want {
			t.Errorf("%q rendered %q, want %q", tc.src, got, tc.want)
		}
	}
	for _, src := range []string{`{{body.x`, `{{}}`, `{{env.HOME}}`, `{{event.x}}`, `{{headers}}`} {
		if _, err := CompilePrompt(src); err == nil {
			t.Errorf("%q compiled", src)
		}
	}
	big, _ := CompilePrompt(`{{body}}`)
	huge := []byte(`"` + strings.Repeat("é", MaxPromptBytes) + `"`)
	if out := big.Render(Vars{Body: huge}); len(out) > MaxPromptBytes || !utf8.ValidString(out) {
		t.Errorf("rendered %d bytes, valid UTF-8 %v; want at most %d", len(out), utf8.ValidString(out), MaxPromptBytes)
	}
}
