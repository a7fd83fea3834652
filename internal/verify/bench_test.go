package verify

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/expr"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// benchCase is a GitHub-signed pull_request delivery of size bytes to an
// integration with a secret and an event.action filter.
func benchCase(size int) (*integration.Integration, http.Header, []byte) {
	body := append([]byte(`{"action":"opened","pad":"`), bytes.Repeat([]byte("x"), size-29)...)
	body = append(body, `"}`...)
	in := &integration.Integration{ID: "bench", GitHubRequireSHA256: true,
		GitHubSecret:      integration.Secrets{integration.Secret("a-webhook-secret-of-usual-length")},
		GitHubEventFilter: []string{"push", "pull_request.opened"}}
	h := http.Header{}
	h.Set(HeaderGitHubSignature256, testenv.SignGitHub256("a-webhook-secret-of-usual-length", string(body)))
	h.Set(HeaderGitHubEvent, "pull_request")
	h.Set("Content-Type", "application/json")
	return in, h, body
}

func benchmarkCheck(b *testing.B, size int) {
	in, h, body := benchCase(size)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if r := Check(in, h, body, Options{}); r.Outcome != Pass {
			b.Fatal(r)
		}
	}
}

func BenchmarkCheck1KB(b *testing.B) { benchmarkCheck(b, 1<<10) }
func BenchmarkCheck1MB(b *testing.B) { benchmarkCheck(b, 1<<20) }

// filterCase is benchCase with the pull_request filter and prompt,
// the fields they read after size bytes of padding (the worst place).
func filterCase(b *testing.B, size int) (*integration.Integration, http.Header, []byte) {
	in, h, _ := benchCase(size)
	tail := `","pull_request":{"draft":false,"title":"Fix","html_url":"https://github.com/o/r/pull/7","body":"Why","base":{"ref":"main"}}}`
	body := append([]byte(`{"action":"opened","pad":"`), bytes.Repeat([]byte("x"), size-26-len(tail))...)
	body = append(body, tail...)
	h.Set(HeaderGitHubSignature256, testenv.SignGitHub256("a-webhook-secret-of-usual-length", string(body)))
	f, err := expr.CompileFilter(`event == "pull_request" && body.action in ["opened","synchronize"] && !body.pull_request.draft && body.pull_request.base.ref == "main"`)
	if err != nil {
		b.Fatal(err)
	}
	p, err := expr.CompilePrompt(`Review {{body.pull_request.html_url}}: {{body.pull_request.title}}\n\n{{body.pull_request.body}}`)
	if err != nil {
		b.Fatal(err)
	}
	in.Sender = &integration.Sender{Filter: f, Prompt: p, EventField: integration.DefaultEventField}
	return in, h, body
}

// benchmarkFilter is Check with the filter, then the prompt rendered: what
// an integration with both adds to a delivery's cost at the edge.
func benchmarkFilter(b *testing.B, size int) {
	in, h, body := filterCase(b, size)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := Check(in, h, body, Options{})
		if r.Outcome != Pass || r.Vars == nil {
			b.Fatal(r, r.Err)
		}
		if text := in.Prompt().Render(*r.Vars); text != "Review https://github.com/o/r/pull/7: Fix\n\nWhy" {
			b.Fatalf("prompt %q", text)
		}
	}
}

func BenchmarkCheckFilterPrompt1KB(b *testing.B)  { benchmarkFilter(b, 1<<10) }
func BenchmarkCheckFilterPrompt60KB(b *testing.B) { benchmarkFilter(b, 60<<10) }
