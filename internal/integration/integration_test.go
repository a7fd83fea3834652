package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"abc", true},
		{"A-z_0.9~", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{"a%2Fb", false},
		{"ü", false},
		{"a\x00", false},
		{"{a}", false},
		{".", false},
		{"..", false},
		{"...", true},
		{".a", true},
	} {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]string
		want   Integration
	}{
		{
			name:   "minimal: disabled, sha256 required",
			fields: map[string]string{},
			want:   Integration{ID: "wh", GitHubRequireSHA256: true},
		},
		{
			name: "every field",
			fields: map[string]string{
				"webhook_id": "wh", "is_enabled": "True",
				"secure_header_name": "x-token", "secure_header_value": "v1",
				"github_require_sha256": "0", "github_webhook_secret": "old\r\nnew\n",
				"github_event_filter": " push, pull_request.opened ,,", "gitlab_webhook_token": "tok",
				"gitlab_event_filter": "open,merge", "resource_type": "workflow", "resource_id": "r1",
				"user_id": "u1", "project_name": "p1", "alias": "a1", "unknown_future_field": "x",
			},
			want: Integration{
				ID: "wh", Enabled: true, SecureHeader: &SecureHeader{Name: "X-Token", Value: Secrets{Secret("v1")}},
				GitHubRequireSHA256: false, GitHubSecret: Secrets{Secret("old"), Secret("new")},
				GitHubEventFilter: []string{"push", "pull_request.opened"},
				GitLab:            &GitLab{Token: Secrets{Secret("tok")}, EventFilter: []string{"open", "merge"}}, ResourceType: "workflow", ResourceID: "r1",
				UserID: "u1",
			},
		},
		{
			name:   "secret kept byte for byte",
			fields: map[string]string{"github_webhook_secret": " It's a Secret to Everybody "},
			want:   Integration{ID: "wh", GitHubRequireSHA256: true, GitHubSecret: Secrets{Secret(" It's a Secret to Everybody ")}},
		},
		{
			name: "standard webhooks: secrets decoded to keys",
			fields: map[string]string{"signature_scheme": "standard-webhooks",
				"signature_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nc2Vjb25k", "signature_tolerance": "90",
				"event_filter": "invoice.paid", "event_field": "data.type"},
			want: Integration{ID: "wh", GitHubRequireSHA256: true, Sender: &Sender{SignatureScheme: "standard-webhooks",
				SignatureSecret:    Secrets{mustB64("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Secret("second")},
				SignatureTolerance: 90 * time.Second, EventFilter: []string{"invoice.paid"}, EventField: "data.type"}},
		},
		{
			name: "generic hmac-sha256",
			fields: map[string]string{"signature_scheme": "hmac-sha256", "signature_secret": "k",
				"signature_header": "x-signature", "signature_prefix": "sha256=", "signature_tolerance": "2m"},
			want: Integration{ID: "wh", GitHubRequireSHA256: true, Sender: &Sender{SignatureScheme: "hmac-sha256", SignatureSecret: Secrets{Secret("k")},
				SignatureHeader: "X-Signature", SignaturePrefix: "sha256=", SignatureEncoding: "hex", SignatureTolerance: 2 * time.Minute,
				EventField: DefaultEventField}},
		},
		{
			name:   "an event filter alone: the default field and tolerance",
			fields: map[string]string{"event_filter": "push"},
			want: Integration{ID: "wh", GitHubRequireSHA256: true, Sender: &Sender{SignatureTolerance: DefaultSignatureTolerance,
				EventFilter: []string{"push"}, EventField: DefaultEventField}},
		},
		{
			name:   "unknown resource type kept for dispatch to refuse",
			fields: map[string]string{"resource_type": "robot"},
			want:   Integration{ID: "wh", GitHubRequireSHA256: true, ResourceType: "robot"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode("wh", tc.fields, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", *got, tc.want)
			}
		})
	}
}

func TestDecodeBooleans(t *testing.T) {
	for v, want := range map[string]bool{
		"true": true, "True": true, "TRUE": true, "1": true,
		"false": false, "False": false, "FALSE": false, "0": false,
	} {
		got, err := Decode("wh", map[string]string{"is_enabled": v}, nil)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got.Enabled != want {
			t.Errorf("is_enabled %q: got %v, want %v", v, got.Enabled, want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	const secret = "s3cr3t-value"
	for _, tc := range []struct {
		name   string
		id     string
		fields map[string]string
		field  string
	}{
		{"bad boolean", "wh", map[string]string{"is_enabled": "yes", "github_webhook_secret": secret}, "is_enabled"},
		{"bad sha256 toggle", "wh", map[string]string{"github_require_sha256": "maybe"}, "github_require_sha256"},
		{"header name without value", "wh", map[string]string{"secure_header_name": "X-A"}, "secure_header_name"},
		{"header value without name", "wh", map[string]string{"secure_header_value": secret}, "secure_header_name"},
		{"header name not a token", "wh", map[string]string{"secure_header_name": "X A", "secure_header_value": secret}, "secure_header_name"},
		{"id mismatch", "wh", map[string]string{"webhook_id": "other"}, "webhook_id"},
		{"bad id", "a/b", map[string]string{}, "webhook_id"},
		{"scheme without secret", "wh", map[string]string{"signature_scheme": "slack"}, "signature_scheme"},
		{"secret without scheme", "wh", map[string]string{"signature_secret": secret}, "signature_scheme"},
		{"unknown scheme", "wh", map[string]string{"signature_scheme": "carrier-pigeon", "signature_secret": secret}, "signature_scheme"},
		{"standard webhooks secret not base64", "wh", map[string]string{"signature_scheme": "standard-webhooks", "signature_secret": "whsec_" + secret + "!"}, "signature_secret"},
		{"hmac without header", "wh", map[string]string{"signature_scheme": "hmac-sha256", "signature_secret": secret}, "signature_header"},
		{"hmac bad encoding", "wh", map[string]string{"signature_scheme": "hmac-sha256", "signature_secret": secret, "signature_header": "X-S", "signature_encoding": "rot13"}, "signature_encoding"},
		{"bad tolerance", "wh", map[string]string{"signature_tolerance": "soon"}, "signature_tolerance"},
		{"zero tolerance", "wh", map[string]string{"signature_tolerance": "0"}, "signature_tolerance"},
		{"github secret of a line break", "wh", map[string]string{"github_webhook_secret": "\n"}, "github_webhook_secret"},
		{"github secret of CRLFs", "wh", map[string]string{"github_webhook_secret": "\r\n\r\n"}, "github_webhook_secret"},
		{"gitlab token of line breaks", "wh", map[string]string{"gitlab_webhook_token": "\n\n"}, "gitlab_webhook_token"},
		{"secure header value of a CRLF", "wh", map[string]string{"secure_header_name": "X-K", "secure_header_value": "\r\n"}, "secure_header_value"},
		{"signature secret of a line break", "wh", map[string]string{"signature_scheme": "slack", "signature_secret": "\n"}, "signature_secret"},
		{"resource id dot-dot", "wh", map[string]string{"resource_type": "workflow", "resource_id": ".."}, "resource_id"},
		{"resource id dot", "wh", map[string]string{"resource_type": "assistant", "resource_id": "."}, "resource_id"},
		{"resource id missing", "wh", map[string]string{"resource_type": "datasource"}, "resource_id"},
		{"resource id with a slash", "wh", map[string]string{"resource_type": "workflow", "resource_id": "a/../b"}, "resource_id"},
		{"resource id with a line break", "wh", map[string]string{"resource_type": "workflow", "resource_id": "a\nb"}, "resource_id"},
		{"user id with CRLF", "wh", map[string]string{"resource_type": "workflow", "resource_id": "wf", "user_id": "u\r\nX-Evil: 1"}, "user_id"},
		{"user id with a NUL", "wh", map[string]string{"user_id": "u\x00"}, "user_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.id, tc.fields, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			if !IsMalformed(err) {
				t.Errorf("IsMalformed(%v) = false", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%q", tc.id)) || !strings.Contains(msg, tc.field) {
				t.Errorf("error %q does not name id %q and field %s", msg, tc.id, tc.field)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q reveals a secret", msg)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	in, err := Decode("wh", map[string]string{
		"secure_header_name": "X-Key", "secure_header_value": "hdr-secret",
		"github_webhook_secret": "gh-secret-1\ngh-secret-2", "gitlab_webhook_token": "gl-secret",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs = append(outputs, fmt.Sprintf(verb, in), fmt.Sprintf(verb, *in), fmt.Sprintf(verb, in.GitHubSecret))
	}
	for _, out := range outputs {
		for _, s := range []string{"hdr-secret", "gh-secret", "gl-secret", "6768"} {
			if strings.Contains(out, s) {
				t.Errorf("output reveals %q: %s", s, out)
			}
		}
	}
}

func TestDecodeEncryptedSecrets(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, seal.KeySize))
	keys, err := seal.ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{
		"github_webhook_secret": keys.Seal("wh", []byte("old")) + "\n" + "plain-new",
		"gitlab_webhook_token":  keys.Seal("wh", []byte("gl")),
		"secure_header_name":    "X-Key", "secure_header_value": keys.Seal("wh", []byte("hv")),
	}
	in, err := Decode("wh", fields, keys)
	if err != nil {
		t.Fatal(err)
	}
	if string(in.GitHubSecret[0]) != "old" || string(in.GitHubSecret[1]) != "plain-new" ||
		string(in.GitLab.Token[0]) != "gl" || string(in.SecureHeader.Value[0]) != "hv" {
		t.Errorf("decoded %q %q %q", in.GitHubSecret, in.GitLab.Token, in.SecureHeader.Value)
	}
	for _, tc := range []struct {
		name string
		id   string
		keys *seal.Keys
	}{{"moved to another webhook", "other", keys}, {"no key configured", "wh", nil}} {
		_, err := Decode(tc.id, fields, tc.keys)
		if !IsMalformed(err) || !strings.Contains(err.Error(), "field secure_header_value") || strings.Contains(err.Error(), "enc:v1:") {
			t.Errorf("%s: err %v, want a malformed-record error naming the field and not the value", tc.name, err)
		}
	}
}

func mustB64(s string) Secret {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestIntegrationStaysSmall: a cache holds one record per webhook, 100,000
// of them in the memory goal; the seldom-set mechanisms stay behind
// pointers.
func TestIntegrationStaysSmall(t *testing.T) {
	if size := unsafe.Sizeof(Integration{}); size > 144 {
		t.Errorf("an Integration is %d bytes, more than 144", size)
	}
}

// TestSecureHeaderNamedLikeALoggedOne: a secure header cannot take the name
// of a header that access logs keep, or its value would be logged.
func TestSecureHeaderNamedLikeALoggedOne(t *testing.T) {
	for _, name := range []string{"User-Agent", "content-type", "X-GitHub-Delivery"} {
		_, err := Decode("wh", map[string]string{"secure_header_name": name, "secure_header_value": "s3cret"}, nil)
		if !IsMalformed(err) || !strings.Contains(err.Error(), "secure_header_name") {
			t.Errorf("%s: %v, want a malformed secure_header_name", name, err)
		}
	}
	if _, err := Decode("wh", map[string]string{"secure_header_name": "X-Webhook-Key", "secure_header_value": "s3cret"}, nil); err != nil {
		t.Errorf("X-Webhook-Key: %v", err)
	}
}
