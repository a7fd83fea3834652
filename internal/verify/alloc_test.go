//go:build !race

package verify

import (
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// The race detector allocates on its own, so this runs without it:
// `make test` runs the Allocs tests in a second, race-free pass.
func TestAllocsCheck1KB(t *testing.T) {
	in, h, body := benchCase(1 << 10)
	if n := testing.AllocsPerRun(100, func() { Check(in, h, body, Options{}) }); n > 10 {
		t.Errorf("verify-and-decide of a 1 KB body allocates %.0f times, want at most 10", n)
	}
}

// TestAllocsRefusedByHeaders: deciding from the headers alone, on every
// request with a body, reads them and decodes nothing (the scheme's
// signature was parsed there once, then again by Check).
func TestAllocsRefusedByHeaders(t *testing.T) {
	github, gh, _ := benchCase(1 << 10)
	scheme := &integration.Integration{ID: "scheme", Sender: &integration.Sender{
		SignatureScheme: integration.SchemeStandardWebhooks,
		SignatureSecret: integration.Secrets{integration.Secret("k")}}}
	sh := http.Header{}
	sh.Set(HeaderStandardID, "msg_1")
	sh.Set(HeaderStandardTimestamp, "1700000000")
	sh.Set(HeaderStandardSignature, "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32))+" v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
	for _, tc := range []struct {
		name string
		in   *integration.Integration
		h    http.Header
	}{{"github", github, gh}, {"standard-webhooks", scheme, sh}} {
		if _, refused := RefusedByHeaders(tc.in, tc.h, Options{}); refused {
			t.Fatalf("%s: refused", tc.name)
		}
		if n := testing.AllocsPerRun(100, func() { RefusedByHeaders(tc.in, tc.h, Options{}) }); n != 0 {
			t.Errorf("%s: %.0f allocations, want none", tc.name, n)
		}
	}
}
