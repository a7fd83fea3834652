package expr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
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
		{"matches, method", `body.pull_request.base.ref.matches("^ma[a-z]+$")`, "", githubPR, true, false},
		{"matches, function", `matches(body.pull_request.title, "^Fi")`, "", githubPR, true, false},
		{"matches, a number", `body.number.matches("^7$")`, "", githubPR, false, true},
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

// TestFilterWorkBounded: what an integration's author can make one
// evaluation do over a body they send is bounded by the body's size. A
// pattern of thousands of steps over megabytes took 26 s, 200
// equalities of nested lists of a million values 3 min and 44 GB:
// CEL counted neither.
func TestFilterWorkBounded(t *testing.T) {
	list := "[[" + strings.Repeat("1,", 3999) + "1]]"
	var keys strings.Builder
	keys.WriteString(`{"k0":0`)
	for i := 1; i < 3000; i++ {
		keys.WriteString(`,"k` + strconv.Itoa(i) + `":0`)
	}
	keys.WriteString("}")
	body := []byte(`{"s":"` + strings.Repeat("a", 100<<10) + `","a":` + list + `,"b":` + list +
		`,"big":{"k":"` + strings.Repeat("x", 1<<20) + `"},"keys":` + keys.String() +
		`,"items":[` + strings.Repeat("0,", 999) + `0],"digits":"` + strings.Repeat("1", 1<<20) + `"` +
		`,"text":"` + strings.Repeat("é", 2<<10) + `","many":[` + strings.Repeat("{},", 20_000) + `{}]}`)
	for _, tc := range []struct{ name, filter, want string }{
		{"what needs no visit costs none", strings.Repeat(`body.big != null && "k" in body.big && body.a != [] && `, 50) + `true`, ""},
		{"a long automaton over a long text", `body.s.matches('a{0,1000}b')`, "limit"},
		{"equalities of nested lists", strings.Repeat(`body.a == body.b && `, 200) + `true`, "cost limit exceeded"},
		{"nested lists looked for", strings.Repeat(`body.a in [body.b] && `, 150) + `true`, "cost limit exceeded"},
		{"a list joined 200 times against an empty one", "(" + strings.Repeat(`body.a + `, 200) + `body.a) != []`, ""},
		{"a usual pattern over 100 KB", `body.s.matches("(?i)(fixes|closes|resolves) #\\d+") == false`, ""},
		// What needed no visit walked a whole side: all of a map for a
		// key looked for, all of the larger side of an equality.
		{"keys looked for in a large map", `!body.items.exists(i, "zz" in body.keys)`, ""},
		{"a large map against null", `!body.items.exists(i, body.keys == null)`, ""},
		// 84 s: each comparison walked the joined list, 200 joins deep.
		{"a list joined 200 times, in a loop", `!body.items.exists(i, (` + strings.Repeat(`body.a + `, 200) + `body.a) == 1)`, "cost limit exceeded"},
		// Calls CEL counted as 1 whatever their string.
		{"the size of a long string, in a loop", `body.items.exists(i, size(body.big.k) == 0)`, "cost limit exceeded"},
		{"a long string parsed, in a loop", `body.items.exists(i, double(body.digits) == 0.0)`, "cost limit exceeded"},
		// A pattern charged its length, not its steps.
		{"a short pattern of many steps, in a loop", `body.items.exists(i, body.text.matches("(?i)\\pL{0,1000}\\d"))`, "cost limit exceeded"},
		// A zone loaded from the system's files for each call: 1 s, 267 MB.
		{"a time zone, in a loop", `body.items.exists(i, timestamp("2020-01-01T00:00:00Z").getHours("Nowhere/Nothing") == 99)`, "cost limit exceeded"},
		// The values given to the filter are counted before they are made.
		{"a field of too many values", `body.many == []`, "more than 10000 values"},
		{"the whole body, too many values", `body != null`, "more than 10000 values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := f.Allows(Vars{Body: body})
			if tc.want == "" && (!ok || err != nil) {
				t.Errorf("got %v, %v; want true", ok, err)
			}
			// On a loaded machine (the race detector, CI beside other
			// work) MaxEvalTime can stop a loop before its cost does:
			// bounded either way.
			if tc.want != "" && (ok || err == nil || !strings.Contains(err.Error(), tc.want) && !strings.Contains(err.Error(), "interrupted")) {
				t.Errorf("got %v, %v; want an error: %s", ok, err, tc.want)
			}
		})
	}
}

// TestEvalTimeStopsALoop: a comprehension still going at MaxEvalTime is
// stopped, whatever its cost counts.
func TestEvalTimeStopsALoop(t *testing.T) {
	f, err := CompileFilter(`body.items.all(i, i == 0)`)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"items":[` + strings.Repeat("0,", 999) + `0]}`)
	if ok, err := f.Allows(Vars{Body: body}); !ok || err != nil {
		t.Fatalf("in time: %v, %v", ok, err)
	}
	evalTime = time.Nanosecond
	t.Cleanup(func() { evalTime = MaxEvalTime })
	if ok, err := f.Allows(Vars{Body: body}); ok || err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("past evalTime: %v, %v; want the loop interrupted", ok, err)
	}
}

// TestFilterWithoutBody: a filter that reads nothing of the body is not
// given it (25 MB of [{},...] took 5.4 s to parse for event == "push"),
// nor one that reads fields of a body that is no object.
func TestFilterWithoutBody(t *testing.T) {
	huge := []byte("[" + strings.Repeat("{},", 1<<20) + "{}]")
	for _, src := range []string{`event == "push"`, `!has(body.a)`} {
		f, err := CompileFilter(src)
		if err != nil {
			t.Fatal(err)
		}
		body, err := f.body(Vars{Body: huge})
		if body != nil || err != nil {
			t.Errorf("%s: given %T, %v; want nothing", src, body, err)
		}
	}
}

// TestLiteralDepth: lists and maps are counted as parsed: brackets in
// strings, raw strings and comments are not, and nesting through calls
// and comprehensions is.
func TestLiteralDepth(t *testing.T) {
	deep := strings.Repeat("{1:", MaxLiteralNesting+1) + "1" + strings.Repeat("}", MaxLiteralNesting+1)
	for _, tc := range []struct {
		src  string
		want int
	}{
		{`[{"a": "[[[[", 'b': '}}}'}, """[["[""", [r"\"]]`, 2},
		{"// [[[[[[[[[[[[[[[[[[[ a comment\nevent == 'push'", 0},
		{`body.x == '''it's [[[[[[[[[[[[[[[[[[[['''`, 0},
		{`r'\' == '' || ` + deep + ` == {1:1}`, MaxLiteralNesting + 1},
		{"// don't\nsize(" + deep + ") == 1", MaxLiteralNesting + 1},
		{`[1].exists(x, [[x]] == [[1]])`, 2},
	} {
		e, _ := environment()
		parsed, issues := e.Parse(tc.src)
		if issues != nil && issues.Err() != nil {
			t.Fatalf("%q: %v", tc.src, issues.Err())
		}
		if got := literalDepth(parsed.NativeRep().Expr()); got != tc.want {
			t.Errorf("%.40q: depth %d, want %d", tc.src, got, tc.want)
		}
	}
}

// TestFilterReadsEachFieldOnce: a field selected many times, or inside
// another one selected, is read once.
func TestFilterReadsEachFieldOnce(t *testing.T) {
	f, err := CompileFilter(`body.a.b == 1 && body.a == {} && body.c.d == body.a.b.e && body.c.d == 2 && body.f["g"] == 3`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(f.reads), "[[a] [f] [c d]]"; got != want {
		t.Errorf("reads %s, want %s", got, want)
	}
}

func TestCompileFilterRefuses(t *testing.T) {
	many := make([]string, MaxBodyFields+1)
	for i := range many {
		many[i] = "body.f" + strconv.Itoa(i) + " == 1"
	}
	for _, src := range []string{`body.action ==`, `"a string"`, `1 + 1`, `unknown_var == 1`, strings.Repeat("a", MaxSourceBytes+1),
		`body.ref.matches("(")`, `matches(body.ref, "[")`,
		// A pattern not written in the filter: compiled for each call,
		// 7 KB of one took 2 s and 451 MB.
		`body.ref.matches(body.login)`, `body.ref.matches("lit" + "")`, `matches(body.ref, body.title + "(")`,
		// A pattern of too many steps: 4 KB of x{1000} took 1.3 s and
		// 286 MB to compile, and 27 MB kept.
		`body.ref.matches("` + strings.Repeat("x{1000}", 500) + `")`, `body.ref.matches("(x{100}){101}")`,
		strings.Join(many, " || "),
		// CEL's type checker: 5.7 s and 3.5 GB for a map nested 249 deep.
		strings.Repeat("{1:", MaxLiteralNesting+1) + "1" + strings.Repeat("}", MaxLiteralNesting+1) + " == {}",
		strings.Repeat("[", MaxLiteralNesting+1) + strings.Repeat("]", MaxLiteralNesting+1) + " == []"} {
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
		{`{{body.action}} {{body.pull_request.number}}, {{body.action}} again`, `opened 7, opened again`},
		{`{{body.pull_request.labels.#}} {{body.pull_request.labels.#.none}} {{body.action.#}}`, `1 [] `},
	} {
		p, err := CompilePrompt(tc.src)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if got := p.Render(v); got != tc.want {
			t.Errorf("%q rendered %q, want %q", tc.src, got, tc.want)
		}
	}
	var many strings.Builder
	for i := range MaxBodyFields + 1 {
		fmt.Fprintf(&many, "{{body.f%d}}", i)
	}
	for _, src := range []string{`{{body.x`, `{{}}`, `{{env.HOME}}`, `{{event.x}}`, `{{headers}}`, many.String()} {
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

// TestPath: a path written with dots reaches keys, indexes and one #, and
// nothing else of gjson's syntax.
// TestPromptReadsEachFieldOnce: a field referred to many times is looked
// for once a render (370 references to one field of 4.8 MB took up to
// 100 s), and the whole body is not copied past what a prompt holds.
func TestPromptReadsEachFieldOnce(t *testing.T) {
	p, err := CompilePrompt(strings.Repeat(`{{body.a.#.zz}}{{body.b}}`, 150) + `{{body}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(p.fields); got != "[a.#.zz b]" {
		t.Errorf("fields %s, want [a.#.zz b]", got)
	}
	body := []byte(`{"b":1,"a":[` + strings.Repeat(`{"k":1},`, 100_000) + `{"zz":2}]}`)
	if out := p.Render(Vars{Body: body}); !strings.HasPrefix(out, `[2]1[2]1`) || len(out) > MaxPromptBytes {
		t.Errorf("rendered %.20q..., %d bytes", out, len(out))
	}
	// Each element's value, up to what a prompt holds: no more is made.
	each, _ := CompilePrompt(`{{body.a.#.k}}`)
	if out := each.Render(Vars{Body: body}); !strings.HasPrefix(out, `[1,1,`) || len(out) != MaxPromptBytes {
		t.Errorf("rendered %.20q..., %d bytes; want %d", out, len(out), MaxPromptBytes)
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"type", "type"},
		{"pull_request.base.ref", "pull_request.base.ref"},
		{"labels.0.name", "labels.0.name"},
		{"commits.#", "commits.#"},
		{"commits.#.id", "commits.#.id"},
		{`a\.b.c`, `a\.b.c`},
		{`a.\#`, `a.\#`},
		{"@pretty", `\@pretty`},
		{`@pretty:{"indent":"  "}`, `\@pretty\:\{"indent"\:"  "\}`},
		{"[@this,@this]", `\[\@this\,\@this\]`},
		{`items.#(n>1)#.id`, `items.\#\(n\>1\)\#.id`},
		{"a|b.*", `a\|b.\*`},
	} {
		if got, err := Path(tc.in); got != tc.want || err != nil {
			t.Errorf("Path(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "..#", "..#.a", "a.", "a..b", "#.#", "a.#.b.#"} {
		if got, err := Path(bad); err == nil {
			t.Errorf("Path(%q) = %q, want an error", bad, got)
		}
	}
}

// TestPromptReachesOnlyPaths: a prompt's body path with gjson's modifiers
// or multipaths reads a key of that name (none), and costs nothing: the
// modifier of an indent of 4,000 spaces over a body nested 999 deep took
// 4 GB and 5 s, a multipath of @this 600 times over 1 MB took 4.8 GB.
func TestPromptReachesOnlyPaths(t *testing.T) {
	deep := []byte(strings.Repeat("[", 999) + "1" + strings.Repeat("]", 999))
	wide := []byte(`{"s":"` + strings.Repeat("x", 1<<20) + `"}`)
	for _, tc := range []struct {
		src  string
		body []byte
	}{
		{`{{ body.@pretty:{"indent":"` + strings.Repeat(" ", 4000) + `"} }}`, deep},
		{`{{ body.[` + strings.Repeat("@this,", 600) + `@this] }}`, wide},
		{`{{ body.s|@reverse }}`, wide},
	} {
		p, err := CompilePrompt(tc.src)
		if err != nil {
			t.Fatalf("%.40q: %v", tc.src, err)
		}
		if out := p.Render(Vars{Body: tc.body}); out != "" {
			t.Errorf("%.40q rendered %d bytes, want nothing", tc.src, len(out))
		}
	}
}

// TestPromptInvalidUTF8: a body with an invalid byte renders with it
// replaced, the text after it kept, and cut to MaxPromptBytes: trimming
// to valid UTF-8 took a byte at a time, scanning the whole prompt each
// time (1.8 s for a 132 KB body).
func TestPromptInvalidUTF8(t *testing.T) {
	p, err := CompilePrompt(`PR: {{body.pull_request.body}}`)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("é", 16<<10) + "\xff" + strings.Repeat("a", 100<<10)
	body, _ := json.Marshal(map[string]any{"pull_request": map[string]string{"body": text}})
	body = bytes.Replace(body, []byte(`\ufffd`), []byte("\xff"), 1) // the invalid byte, raw
	out := p.Render(Vars{Body: body})
	if !utf8.ValidString(out) || len(out) > MaxPromptBytes || len(out) < MaxPromptBytes-3 ||
		!strings.Contains(out, "é\uFFFDaaa") {
		t.Errorf("rendered %d bytes (valid UTF-8 %v), want the invalid byte replaced, the rest kept up to %d bytes",
			len(out), utf8.ValidString(out), MaxPromptBytes)
	}
}

// TestDeepSize: values are counted nested, strings by their length, and
// no further than the limit.
func TestDeepSize(t *testing.T) {
	nested := types.DefaultTypeAdapter.NativeToValue([]any{"abc", map[string]any{"key": []any{1.0, 2.0}}, nil})
	joined := types.DefaultTypeAdapter.NativeToValue([]any{1.0}).(traits.Lister).Add(nested)
	for _, tc := range []struct {
		v           ref.Val
		limit, want uint64
	}{
		{nested, 1000, 1 + 4 + (1 + 4 + 3) + 1},
		{nested, 5, 5},
		{nested, 1, 1},
		{nested, 0, 0},
		{joined, 1000, 1 + 1 + 4 + 8 + 1},
		{joined, 3, 3}, // a list of 4 is at least 4: no walk
	} {
		v, limit, want := tc.v, tc.limit, tc.want
		if got := deepSize(v, limit); got != want {
			t.Errorf("deepSize of %v up to %d: %d, want %d", v, limit, got, want)
		}
	}
}

// TestField: a field's text as gjson's String gives it, in memory of its
// own; through #, no more values than a prompt holds are joined.
func TestField(t *testing.T) {
	doc := []byte(`{"type":"push","n":null,"o":{"a":1},"list":[` + strings.Repeat(`{"k":"v"},`, 50_000) + `{"k":"v"}]}`)
	for _, tc := range []struct{ path, want string }{
		{"type", "push"}, {"n", ""}, {"missing", ""}, {"o", `{"a":1}`}, {"list.#", "50001"}, {"list.0.k", "v"},
	} {
		if got := Field(doc, tc.path); got != tc.want {
			t.Errorf("Field(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := Field(doc, "list.#.k"); !strings.HasPrefix(got, `["v","v",`) || len(got) > MaxPromptBytes+16 {
		t.Errorf("Field(list.#.k): %.20q..., %d bytes; want at most about %d", got, len(got), MaxPromptBytes)
	}
}
