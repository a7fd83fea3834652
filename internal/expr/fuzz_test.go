package expr

import (
	"net/http"
	"testing"
	"unicode/utf8"
)

// FuzzPrompt: any template either fails to compile or renders, over any
// body, valid within MaxPromptBytes when its parts are.
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
		if utf8.ValidString(src) && utf8.Valid(body) && !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 from valid input: %q", out)
		}
	})
}
