package module

import (
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// FuzzWebhookID feeds arbitrary escaped paths to the id parser: it never
// panics, and an id it accepts is one plain path segment of 1 to 128
// unreserved characters that the path ends with.
func FuzzWebhookID(f *testing.F) {
	for _, p := range []string{"/code-assistant-api/v1/webhooks/abc", "/", "", "abc", "/a/b/", "/a%2Fb", "/" + strings.Repeat("x", 200), "/..", "/a\x00b"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id := webhookID(path)
		if !integration.ValidID(id) {
			return
		}
		if !strings.HasSuffix(path, id) || strings.ContainsAny(id, "/%?#") || len(id) > integration.MaxIDLength {
			t.Fatalf("accepted %q from %q", id, path)
		}
		for _, c := range []byte(id) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
				t.Fatalf("accepted %q with byte %q", id, c)
			}
		}
	})
}
