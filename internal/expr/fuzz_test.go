package expr

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// FuzzPrompt: any template either fails to compile or renders, over any
// body, valid UTF-8 within MaxPromptBytes.
func FuzzPrompt(f *testing.F) {
	f.Add(`Review {{body.pull_request.html_url}}\n{{ event }}`, []byte(`{"pull_request":{"html_url":"u"}}`))
	f.Add(`{{body.#.x}}{{headers.x}}{{webhook.id}}`, []byte(`[{"x":1}]`))
	f.Add(`{{`, []byte(`not json`))
	f.Fuzz(func(t *testing.T, src string, body []byte) {
		p, err := CompilePrompt(src)
		if err != nil {
			return
		}
		out := p.Render(Vars{Body: body, Headers: http.Header{"X": {"y"}}, Webhook: map[string]string{"id": "w"}})
		if len(out) > MaxPromptBytes {
			t.Fatalf("rendered %d bytes", len(out))
		}
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
	})
}

// FuzzPath: any path either is refused or reads only keys, indexes and #;
// and any key (its dots and backslashes escaped, # too, as the docs say to
// write them) is read as that key, whatever gjson makes of its characters
// elsewhere.
func FuzzPath(f *testing.F) {
	for _, k := range []string{"type", "@pretty", "a.b", `a\b`, "#", "#(x==1)", "[1,2]", "{a}", "*", "!true", "a|b", "..", ""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if !utf8.ValidString(key) {
			return
		}
		if p, err := Path(key); err == nil {
			lines := gjson.Get("{\"a\":1}\n{\"a\":2}\n", p)
			if strings.Count(p, "#") > strings.Count(p, `\#`)+1 || lines.Raw == "[1,2]" || lines.Raw == "2" {
				t.Fatalf("path %q as %q reads more than keys, indexes and one #", key, p)
			}
		}
		doc, err := json.Marshal(map[string]int{key: 7})
		if err != nil || key == "" {
			return
		}
		written := strings.NewReplacer(`\`, `\\`, ".", `\.`, "#", `\#`).Replace(key)
		p, err := Path(written)
		if got := gjson.GetBytes(doc, p); err != nil || got.Int() != 7 || got.Raw != "7" {
			t.Fatalf("key %q written %q, path %q (%v): read %q", key, written, p, err, got.Raw)
		}
	})
}
