package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func FuzzParseHexSignature(f *testing.F) {
	for _, s := range []string{vectorSignature, "sha256=", "sha256=ZZ", "sha1=0123456789abcdef0123456789abcdef01234567", "", "sha256=" + string(make([]byte, 64))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var dst [sha256.Size]byte
		if !ParseHexSignature(v, "sha256=", dst[:]) {
			return
		}
		// Accepted means exactly prefix + 64 lowercase hex digits encoding dst.
		if v != "sha256="+hex.EncodeToString(dst[:]) {
			t.Fatalf("accepted %q, which is not the canonical form of its digest", v)
		}
	})
}

func FuzzGitHubEventAllowed(f *testing.F) {
	f.Add("push,pull_request.opened", "pull_request", []byte(`{"action":"opened"}`))
	f.Add("a.b.c", "a.b", []byte(`{"action":"c"}`))
	f.Add(".", "", []byte(`{`))
	f.Fuzz(func(t *testing.T, filter, event string, payload []byte) {
		entries := bytes.Split([]byte(filter), []byte(","))
		list := make([]string, len(entries))
		for i, e := range entries {
			list[i] = string(e)
		}
		got := GitHubEventAllowed(list, event, payload)
		if event == "" && got {
			t.Fatal("an absent event passed")
		}
		for _, e := range list {
			if e == event && event != "" && !got {
				t.Fatalf("event %q listed by name in %q did not pass", event, filter)
			}
		}
	})
}

// FuzzCheck feeds arbitrary signature, event and token headers and bodies
// to an integration configuring every mechanism: nothing panics, and
// nothing passes without the right signature, token and header.
func FuzzCheck(f *testing.F) {
	const secret = "fuzz-secret"
	in := &integration.Integration{ID: "fz", GitHubRequireSHA256: false,
		GitHubSecret: integration.Secrets{integration.Secret(secret)}, GitHubEventFilter: []string{"push", "pull_request.opened"},
		GitLab:       &integration.GitLab{Token: integration.Secrets{integration.Secret("tok")}, EventFilter: []string{"open"}},
		SecureHeader: &integration.SecureHeader{Name: "X-Key", Value: integration.Secrets{integration.Secret("hv")}}}
	f.Add(testenv.SignGitHub256(secret, "{}"), "", "push", "tok", "hv", []byte("{}"))
	f.Add("", testenv.SignGitHub1(secret, "x"), "ping", "tok", "hv", []byte("x"))
	f.Add("sha256=", "sha1=", "", "", "", []byte{0xff})
	f.Fuzz(func(t *testing.T, sig256, sig1, event, token, key string, body []byte) {
		h := http.Header{}
		for name, v := range map[string]string{HeaderGitHubSignature256: sig256, HeaderGitHubSignature1: sig1,
			HeaderGitHubEvent: event, HeaderGitLabToken: token, "X-Key": key} {
			if v != "" {
				h.Set(name, v)
			}
		}
		r := Check(in, h, body, Options{})
		if r.Outcome == Pass || r.Outcome == Ping || r.Outcome == Filtered {
			signed := sig256 == testenv.SignGitHub256(secret, string(body)) || (sig256 == "" && sig1 == testenv.SignGitHub1(secret, string(body)))
			if !signed || token != "tok" || key != "hv" {
				t.Fatalf("outcome %s without every mechanism passing", r.Outcome)
			}
		}
	})
}
