package verify

import (
	"bytes"
	"net/http"
	"testing"

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
