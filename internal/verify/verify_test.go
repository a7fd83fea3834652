package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// GitHub's documented test vector:
// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
const (
	vectorSecret    = "It's a Secret to Everybody"
	vectorBody      = "Hello, World!"
	vectorSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, h := range []string{HeaderGitHubSignature256, HeaderGitHubSignature1, HeaderGitHubEvent, HeaderGitLabToken} {
		if c := textproto.CanonicalMIMEHeaderKey(h); c != h {
			t.Errorf("%q is not canonical (%q)", h, c)
		}
	}
}

func TestGitHubTestVector(t *testing.T) {
	if got := testenv.SignGitHub256(vectorSecret, vectorBody); got != vectorSignature {
		t.Fatalf("reference HMAC %s, want GitHub's %s", got, vectorSignature)
	}
	in := &integration.Integration{ID: "x", GitHubRequireSHA256: true, GitHubSecret: integration.Secrets{integration.Secret(vectorSecret)}}
	h := http.Header{HeaderGitHubSignature256: {vectorSignature}}
	if r := Check(in, h, []byte(vectorBody), Options{}); r.Outcome != Pass {
		t.Errorf("GitHub's test vector: %+v", r)
	}
}

func TestMACMatchesCryptoHMAC(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, keyLen := range []int{0, 1, 20, 63, 64, 65, 100, 300} {
		for _, msgLen := range []int{0, 1, 55, 64, 1000} {
			key, msg := make([]byte, keyLen), make([]byte, msgLen)
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			for _, tc := range []struct {
				m   *mac
				ref func() hmacHash
			}{{hmacSHA256, func() hmacHash { return hmac.New(sha256.New, key) }}, {hmacSHA1, func() hmacHash { return hmac.New(sha1.New, key) }}} {
				ref := tc.ref()
				ref.Write(msg)
				sum := ref.Sum(nil)
				keys := integration.Secrets{key}
				if !tc.m.matchAny(keys, [][]byte{sum}, msg) {
					t.Errorf("key %d msg %d bytes: MAC differs from crypto/hmac", keyLen, msgLen)
				}
				if half := msgLen / 2; !tc.m.matchAny(keys, [][]byte{sum}, msg[:half], msg[half:]) {
					t.Errorf("key %d msg %d bytes: MAC of the message in two parts differs", keyLen, msgLen)
				}
				sum[len(sum)-1] ^= 1
				if tc.m.matchAny(keys, [][]byte{sum}, msg) {
					t.Errorf("key %d msg %d bytes: a wrong MAC matched", keyLen, msgLen)
				}
			}
		}
	}
}

type hmacHash interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
}

func secrets(values ...string) integration.Secrets {
	var out integration.Secrets
	for _, v := range values {
		out = append(out, integration.Secret(v))
	}
	return out
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestCheck(t *testing.T) {
	const body = `{"action":"opened","number":1}`
	good := testenv.SignGitHub256("s3cret", body)
	github := &integration.Integration{ID: "gh", GitHubRequireSHA256: true, GitHubSecret: secrets("s3cret")}
	githubSHA1 := &integration.Integration{ID: "gh1", GitHubSecret: secrets("s3cret")}
	rotating := &integration.Integration{ID: "rot", GitHubRequireSHA256: true, GitHubSecret: secrets("old", "new")}
	gitlab := &integration.Integration{ID: "gl", GitLab: &integration.GitLab{Token: secrets("gl-token")}}
	gitlabRotating := &integration.Integration{ID: "gl2", GitLab: &integration.GitLab{Token: secrets("gl-old", "gl-new")}}
	header := &integration.Integration{ID: "hd", SecureHeader: &integration.SecureHeader{Name: "X-Secret", Value: secrets("hv")}}
	all := &integration.Integration{ID: "all", GitHubRequireSHA256: true, GitHubSecret: secrets("s3cret"),
		GitLab: &integration.GitLab{Token: secrets("gl-token")}, SecureHeader: &integration.SecureHeader{Name: "X-Secret", Value: secrets("hv")}}
	none := &integration.Integration{ID: "none"}
	filtered := &integration.Integration{ID: "f", GitHubRequireSHA256: true, GitHubSecret: secrets("s3cret"),
		GitHubEventFilter: []string{"push", "pull_request.opened"}}
	glFiltered := &integration.Integration{ID: "glf", GitLab: &integration.GitLab{Token: secrets("gl-token"), EventFilter: []string{"open", "merge"}}}

	mr := func(action string) string {
		return `{"object_kind":"merge_request","object_attributes":{"action":"` + action + `"}}`
	}
	for _, tc := range []struct {
		name    string
		in      *integration.Integration
		h       http.Header
		body    string
		opts    Options
		want    Outcome
		status  int
		message string
		unauth  bool
	}{
		// GitHub signatures (docs/codemie-api.md section 3).
		{name: "github valid", in: github, h: headers(HeaderGitHubSignature256, good), body: body, want: Pass},
		{name: "github wrong secret", in: github, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("other", body)), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github tampered body", in: github, h: headers(HeaderGitHubSignature256, good), body: body + " ",
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github no headers at all (fail-closed)", in: github, h: headers(), body: body,
			want: SignatureMissing, status: 401, message: "Missing GitHub webhook signature header"},
		{name: "github upper-case hex", in: github, h: headers(HeaderGitHubSignature256, "sha256="+strings.ToUpper(good[7:])), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github missing prefix", in: github, h: headers(HeaderGitHubSignature256, good[7:]), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github wrong prefix", in: github, h: headers(HeaderGitHubSignature256, "sha1="+good[7:]), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github short", in: github, h: headers(HeaderGitHubSignature256, good[:len(good)-2]), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github long", in: github, h: headers(HeaderGitHubSignature256, good+"00"), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github not hex", in: github, h: headers(HeaderGitHubSignature256, "sha256="+strings.Repeat("zz", 32)), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github empty", in: github, h: headers(HeaderGitHubSignature256, ""), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github two values, one good", in: github, h: headers(HeaderGitHubSignature256, good, HeaderGitHubSignature256, good), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github sha1 refused when sha256 required", in: github, h: headers(HeaderGitHubSignature1, testenv.SignGitHub1("s3cret", body)), body: body,
			want: SignatureMissing, status: 401, message: "Missing GitHub webhook signature header"},
		{name: "github sha1 accepted when allowed", in: githubSHA1, h: headers(HeaderGitHubSignature1, testenv.SignGitHub1("s3cret", body)), body: body, want: Pass},
		{name: "github sha1 wrong", in: githubSHA1, h: headers(HeaderGitHubSignature1, testenv.SignGitHub1("other", body)), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "github sha256 wins over sha1", in: githubSHA1, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("other", body), HeaderGitHubSignature1, testenv.SignGitHub1("s3cret", body)), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "rotation: old secret", in: rotating, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("old", body)), body: body, want: Pass},
		{name: "rotation: new secret", in: rotating, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("new", body)), body: body, want: Pass},
		{name: "rotation: neither", in: rotating, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("newer", body)), body: body,
			want: SignatureInvalid, status: 401, message: "Invalid GitHub webhook signature"},
		{name: "non-UTF-8 body verified byte-exact", in: github, h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", "\xff\xfe\x00x")), body: "\xff\xfe\x00x", want: Pass},

		// GitLab token (docs/codemie-api.md section 3).
		{name: "gitlab valid", in: gitlab, h: headers("X-Gitlab-Token", "gl-token"), want: Pass},
		{name: "gitlab wrong", in: gitlab, h: headers("X-Gitlab-Token", "gl-tokeN"), want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
		{name: "gitlab prefix of the token", in: gitlab, h: headers("X-Gitlab-Token", "gl-tok"), want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
		{name: "gitlab missing", in: gitlab, h: headers(), want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
		{name: "gitlab twice", in: gitlab, h: headers("X-Gitlab-Token", "gl-token", "X-Gitlab-Token", "gl-token"), want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
		{name: "gitlab rotation", in: gitlabRotating, h: headers("X-Gitlab-Token", "gl-new"), want: Pass},

		// Secure header (docs/codemie-api.md section 3).
		{name: "header valid", in: header, h: headers("x-secret", "hv"), want: Pass},
		{name: "header wrong", in: header, h: headers("X-Secret", "hv2"), want: SecureHeaderInvalid, status: 401, message: "Invalid security header"},
		{name: "header missing", in: header, h: headers(), want: SecureHeaderInvalid, status: 401, message: "Invalid security header"},
		{name: "header empty", in: header, h: headers("X-Secret", ""), want: SecureHeaderInvalid, status: 401, message: "Invalid security header"},

		// Fail-closed: every configured mechanism must pass.
		{name: "all pass", in: all, h: headers(HeaderGitHubSignature256, good, "X-Gitlab-Token", "gl-token", "X-Secret", "hv"), body: body, want: Pass},
		{name: "all but github", in: all, h: headers("X-Gitlab-Token", "gl-token", "X-Secret", "hv"), body: body,
			want: SignatureMissing, status: 401, message: "Missing GitHub webhook signature header"},
		{name: "all but gitlab", in: all, h: headers(HeaderGitHubSignature256, good, "X-Secret", "hv"), body: body,
			want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
		{name: "all but header", in: all, h: headers(HeaderGitHubSignature256, good, "X-Gitlab-Token", "gl-token"), body: body,
			want: SecureHeaderInvalid, status: 401, message: "Invalid security header"},

		// No mechanism.
		{name: "unauthenticated served", in: none, h: headers(), want: Pass, unauth: true},
		{name: "unauthenticated refused with require_auth", in: none, h: headers(), opts: Options{RequireAuth: true},
			want: AuthRequired, status: 401, message: "Webhook has no authentication configured"},

		// Ping and event filters.
		{name: "ping passes any filter", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "ping"), body: body,
			want: Ping, status: 200, message: "pong"},
		{name: "ping still needs the signature", in: filtered, h: headers("X-GitHub-Event", "ping"), body: body,
			want: SignatureMissing, status: 401, message: "Missing GitHub webhook signature header"},
		{name: "event allowed by name", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "push"), body: body, want: Pass},
		{name: "event allowed by name.action", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "pull_request"), body: body, want: Pass},
		{name: "event with another action filtered", in: filtered,
			h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", `{"action":"closed"}`), "X-GitHub-Event", "pull_request"), body: `{"action":"closed"}`,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "event not in filter", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "issues"), body: body,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "event case-sensitive", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "Push"), body: body,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "no event header with a filter", in: filtered, h: headers(HeaderGitHubSignature256, good), body: body,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "filtered with filtered_status 400", in: filtered, h: headers(HeaderGitHubSignature256, good, "X-GitHub-Event", "issues"), body: body,
			opts: Options{FilteredStatus: 400}, want: Filtered, status: 400, message: "GitHub event type 'issues' is not allowed for this webhook"},
		{name: "event.action from a form-encoded payload", in: filtered,
			h: headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", "payload=%7B%22action%22%3A%22opened%22%7D"), "X-GitHub-Event", "pull_request",
				"Content-Type", "application/x-www-form-urlencoded"),
			body: "payload=%7B%22action%22%3A%22opened%22%7D", want: Pass},
		// curl -d sends JSON as application/x-www-form-urlencoded.
		{name: "event.action from JSON sent as a form", in: filtered,
			h:    formHeaders(`{"action":"opened","pull_request":{"title":"Add a webhook edge"}}`, "application/x-www-form-urlencoded"),
			body: `{"action":"opened","pull_request":{"title":"Add a webhook edge"}}`, want: Pass},
		{name: "JSON sent as a form with a charset", in: filtered,
			h: formHeaders(`{"action":"opened"}`, "application/x-www-form-urlencoded; charset=utf-8"), body: `{"action":"opened"}`, want: Pass},
		{name: "JSON with % and ; sent as a form", in: filtered,
			h:    formHeaders(`{"action":"opened","title":"100% done; shipped"}`, "application/x-www-form-urlencoded"),
			body: `{"action":"opened","title":"100% done; shipped"}`, want: Pass},
		{name: "JSON holding &payload= sent as a form", in: filtered,
			h:    formHeaders(`{"action":"opened","note":"a&payload={}"}`, "application/x-www-form-urlencoded"),
			body: `{"action":"opened","note":"a&payload={}"}`, want: Pass},
		{name: "JSON sent as a form with another action filtered", in: filtered,
			h: formHeaders(`{"action":"closed"}`, "application/x-www-form-urlencoded"), body: `{"action":"closed"}`,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "form with neither payload nor JSON filtered", in: filtered,
			h: formHeaders("action=opened", "application/x-www-form-urlencoded"), body: "action=opened",
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "gitlab MR action allowed", in: glFiltered, h: headers("X-Gitlab-Token", "gl-token"), body: mr("merge"), want: Pass},
		{name: "gitlab MR action filtered", in: glFiltered, h: headers("X-Gitlab-Token", "gl-token"), body: mr("update"),
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "gitlab MR without action filtered", in: glFiltered, h: headers("X-Gitlab-Token", "gl-token"), body: `{"object_kind":"merge_request"}`,
			want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "gitlab MR filtered stays 200 with filtered_status 400", in: glFiltered, h: headers("X-Gitlab-Token", "gl-token"), body: mr("close"),
			opts: Options{FilteredStatus: 400}, want: Filtered, status: 200, message: "Webhook received, event filtered out"},
		{name: "gitlab push outside the MR filter", in: glFiltered, h: headers("X-Gitlab-Token", "gl-token"), body: `{"object_kind":"push"}`, want: Pass},
		{name: "gitlab filter only after the token", in: glFiltered, h: headers(), body: mr("update"),
			want: GitLabTokenInvalid, status: 401, message: "Invalid GitLab token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.in, tc.h, []byte(tc.body), tc.opts)
			if r.Outcome != tc.want || r.Status != tc.status || r.Message != tc.message || r.Unauthenticated != tc.unauth {
				t.Errorf("got %+v\nwant outcome %s, status %d, message %q, unauthenticated %v", r, tc.want, tc.status, tc.message, tc.unauth)
			}
		})
	}
}

// formHeaders signs body for the filtered integration of TestCheck and
// sends it as a pull_request event of the content type ct.
func formHeaders(body, ct string) http.Header {
	return headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", body), "X-GitHub-Event", "pull_request", "Content-Type", ct)
}

func TestPayload(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name string
		ct   string
		body string
		want string
	}{
		{"JSON", "application/json", `{"action":"opened"}`, `{"action":"opened"}`},
		{"no content type", "", `{"action":"opened"}`, `{"action":"opened"}`},
		{"not JSON, not a form", "text/plain", "payload=x", "payload=x"},
		{"form payload field", form, "payload=%7B%22action%22%3A%22opened%22%7D", `{"action":"opened"}`},
		{"form payload among other fields", form, "a=1&payload=%7B%7D&b=2", `{}`},
		{"form without payload", form, "action=opened", ""},
		{"empty form", form, "", ""},
		{"bad form", form, "payload=%zz", ""},
		{"JSON as a form", form, `{"action":"opened"}`, `{"action":"opened"}`},
		{"JSON as a form with a charset", form + "; charset=utf-8", `{"action":"opened"}`, `{"action":"opened"}`},
		{"JSON with escapes as a form", form, `{"t":"100% ; a&b=c"}`, `{"t":"100% ; a&b=c"}`},
		{"JSON holding &payload= as a form", form, `{"t":"&payload={}"}`, `{"t":"&payload={}"}`},
		{"JSON array as a form", form, ` [1, 2] `, ` [1, 2] `},
		{"truncated JSON as a form", form, `{"action":"opened"`, ""},
	} {
		h := http.Header{}
		if tc.ct != "" {
			h.Set("Content-Type", tc.ct)
		}
		if got := string(payload(h, []byte(tc.body))); got != tc.want {
			t.Errorf("%s: payload(%q) = %q, want %q", tc.name, tc.body, got, tc.want)
		}
	}
}

func TestGitHubEventAllowed(t *testing.T) {
	for _, tc := range []struct {
		filter  []string
		event   string
		payload string
		want    bool
	}{
		{[]string{"push"}, "push", "", true},
		{[]string{"push"}, "pushx", "", false},
		{[]string{"pull_request.opened"}, "pull_request", `{"action":"opened"}`, true},
		{[]string{"pull_request.opened"}, "pull_request", `{"action":"reopened"}`, false},
		{[]string{"pull_request.opened"}, "pull_request", `not json`, false},
		{[]string{"pull_request.opened"}, "pull", `{"action":"request.opened"}`, false},
		{[]string{"pull_request."}, "pull_request", `{}`, true}, // entry with an empty action matches a payload without one
		{[]string{"issues", "pull_request.closed", "pull_request.opened"}, "pull_request", `{"action":"opened"}`, true},
		{[]string{"push"}, "", "", false},
	} {
		if got := GitHubEventAllowed(tc.filter, tc.event, []byte(tc.payload)); got != tc.want {
			t.Errorf("GitHubEventAllowed(%q, %q, %s) = %v, want %v", tc.filter, tc.event, tc.payload, got, tc.want)
		}
	}
}

// TestRefusedByHeadersAgreesWithCheck: what RefusedByHeaders refuses, Check
// refuses with the same answer whatever the body; what the headers cannot
// decide (a well-formed GitHub signature) is left to Check.
func TestRefusedByHeadersAgreesWithCheck(t *testing.T) {
	const body = `{"action":"opened"}`
	integrations := map[string]map[string]string{
		"github":         {"github_webhook_secret": "s3cret"},
		"github sha256":  {"github_webhook_secret": "s3cret", "github_require_sha256": "true"},
		"gitlab":         {"gitlab_webhook_token": "gl-tok"},
		"secure header":  {"secure_header_name": "X-Key", "secure_header_value": "k"},
		"gitlab, header": {"gitlab_webhook_token": "gl-tok", "secure_header_name": "X-Key", "secure_header_value": "k"},
		"github, gitlab": {"github_webhook_secret": "s3cret", "gitlab_webhook_token": "gl-tok"},
		"none":           {},
		"hmac-sha256":    {"signature_scheme": "hmac-sha256", "signature_secret": "s3cret", "signature_header": "X-Sig"},
		"stripe":         {"signature_scheme": "stripe", "signature_secret": "s3cret"},
		"gitlab, slack":  {"gitlab_webhook_token": "gl-tok", "signature_scheme": "slack", "signature_secret": "s3cret"},
	}
	requests := map[string]http.Header{
		"nothing":          headers(),
		"signed":           headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", body)),
		"signed wrong":     headers(HeaderGitHubSignature256, testenv.SignGitHub256("other", body)),
		"malformed":        headers(HeaderGitHubSignature256, "sha256=zz"),
		"twice":            headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", body), HeaderGitHubSignature256, "sha256=00"),
		"sha1":             headers(HeaderGitHubSignature1, testenv.SignGitHub1("s3cret", body)),
		"sha1 malformed":   headers(HeaderGitHubSignature1, "sha1=nothex"),
		"gitlab token":     headers(HeaderGitLabToken, "gl-tok"),
		"gitlab wrong":     headers(HeaderGitLabToken, "nope"),
		"header":           headers("X-Key", "k"),
		"gitlab and wrong": headers(HeaderGitLabToken, "gl-tok", "X-Key", "no"),
		"signed, gitlab":   headers(HeaderGitHubSignature256, testenv.SignGitHub256("s3cret", body), HeaderGitLabToken, "nope"),
		"x-sig":            headers("X-Sig", "00"),
		"stripe signature": headers("Stripe-Signature", "t=1,v1=00"),
		"slack, gitlab":    headers("X-Slack-Signature", "v0=00", "X-Slack-Request-Timestamp", "1", HeaderGitLabToken, "gl-tok"),
	}
	refusedSome, leftSome := false, false
	for iname, fields := range integrations {
		in := schemeIntegration(t, fields)
		for rname, h := range requests {
			for _, opts := range []Options{{}, {RequireAuth: true}} {
				early, refused := RefusedByHeaders(in, h, opts)
				if !refused {
					leftSome = true
					continue
				}
				refusedSome = true
				for _, b := range []string{"", body} {
					r := Check(in, h, []byte(b), opts)
					if r.Outcome != early.Outcome || r.Status != early.Status || r.Message != early.Message {
						t.Errorf("%s, %s, %+v, body %q: refused early as %s %d %q, Check answers %s %d %q", iname, rname, opts, b,
							early.Outcome, early.Status, early.Message, r.Outcome, r.Status, r.Message)
					}
				}
			}
		}
	}
	if !refusedSome || !leftSome {
		t.Errorf("refused some: %v, left some to Check: %v; want both", refusedSome, leftSome)
	}
	if _, refused := RefusedByHeaders(schemeIntegration(t, integrations["github, gitlab"]), requests["signed, gitlab"], Options{}); refused {
		t.Error("a well-formed signature was refused before its body was read")
	}
	for _, c := range []struct {
		in, req string
		opts    Options
		want    Outcome
	}{
		{"github", "nothing", Options{}, SignatureMissing},
		{"github", "malformed", Options{}, SignatureInvalid},
		{"gitlab", "gitlab wrong", Options{}, GitLabTokenInvalid},
		{"gitlab, header", "gitlab and wrong", Options{}, SecureHeaderInvalid},
		{"stripe", "nothing", Options{}, SchemeSignatureMissing},
		{"gitlab, slack", "gitlab token", Options{}, SchemeSignatureMissing},
		{"none", "nothing", Options{RequireAuth: true}, AuthRequired},
	} {
		if r, refused := RefusedByHeaders(schemeIntegration(t, integrations[c.in]), requests[c.req], c.opts); !refused || r.Outcome != c.want {
			t.Errorf("%s, %s: refused %v as %s, want %s", c.in, c.req, refused, r.Outcome, c.want)
		}
	}
}
