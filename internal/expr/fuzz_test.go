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

// FuzzPath: any key but # (with its dots and backslashes escaped, as the
// docs say to write them) is read as that key, whatever gjson makes of its
// characters elsewhere.
func FuzzPath(f *testing.F) {
	for _, k := range []string{"type", "@pretty", "a.b", `a\b`, "#(x==1)", "[1,2]", "{a}", "*", "!true", "a|b", "..", ""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "#" || !utf8.ValidString(key) {
			return
		}
		doc, err := json.Marshal(map[string]int{key: 7})
		if err != nil {
			t.Skip()
		}
		written := strings.NewReplacer(`\`, `\\`, ".", `\.`).Replace(key)
		if got := gjson.GetBytes(doc, Path(written)); got.Int() != 7 || got.Raw != "7" {
			t.Fatalf("key %q written %q, path %q: read %q", key, written, Path(written), got.Raw)
		}
	})
}
