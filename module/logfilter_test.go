package module_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
	"github.com/codemie-edge/caddy-webhooks/module"
)

// credentials are headers that carry a secret: the filter never logs them,
// and refuses to be told to.
var credentials = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Gitlab-Token",
	"X-Hub-Signature", "X-Hub-Signature-256", "Webhook-Signature", "Svix-Signature",
	"Stripe-Signature", "X-Slack-Signature", "X-Zendesk-Webhook-Signature", "X-Api-Key",
}

// webhookHeaders is what a request might carry: the credentials above, a
// secure header of a name an integration chose, and safe headers.
func webhookHeaders() http.Header {
	h := http.Header{}
	for _, name := range credentials {
		h.Set(name, "secret-of-"+name)
	}
	for _, name := range []string{
		"X-Webhook-Key", "X-Acme-Shared-Secret", "X-Tenant",
		"User-Agent", "Content-Type", "Content-Length", "Accept", "Accept-Encoding",
		"X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID",
		"X-GitHub-Hook-Installation-Target-ID", "X-GitHub-Hook-Installation-Target-Type",
		"X-Gitlab-Event", "X-Gitlab-Event-UUID", "X-Gitlab-Instance", "X-Gitlab-Webhook-UUID",
		"X-Atlassian-Webhook-Identifier", "Webhook-Id", "Webhook-Timestamp", "Svix-Id",
		"Svix-Timestamp", "X-Request-Id", "Idempotency-Key", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Real-Ip", "Traceparent",
	} {
		h.Set(name, "value-of-"+name)
	}
	return h
}

// safe are the canonical names of webhookHeaders that are logged by default.
var safe = []string{
	"Accept", "Accept-Encoding", "Content-Length", "Content-Type", "Idempotency-Key",
	"Svix-Id", "Svix-Timestamp", "Traceparent", "User-Agent", "Webhook-Id", "Webhook-Timestamp",
	"X-Atlassian-Webhook-Identifier", "X-Forwarded-For", "X-Forwarded-Proto",
	"X-Github-Delivery", "X-Github-Event", "X-Github-Hook-Id",
	"X-Github-Hook-Installation-Target-Id", "X-Github-Hook-Installation-Target-Type",
	"X-Gitlab-Event", "X-Gitlab-Event-Uuid", "X-Gitlab-Instance", "X-Gitlab-Webhook-Uuid",
	"X-Real-Ip", "X-Request-Id",
}

// filterOf returns a provisioned filter that also keeps keep.
func filterOf(t *testing.T, keep ...string) *module.WebhookHeadersFilter {
	t.Helper()
	f := &module.WebhookHeadersFilter{Keep: keep}
	if err := f.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

// headersOf returns the headers a filtered field holds.
func headersOf(t *testing.T, f zapcore.Field) http.Header {
	t.Helper()
	switch v := f.Interface.(type) {
	case caddyhttp.LoggableHTTPHeader:
		return v.Header
	case http.Header:
		return v
	case caddyhttp.LoggableHTTPRequest:
		return v.Header
	}
	t.Fatalf("field %s holds %T, not headers", f.Key, f.Interface)
	return nil
}

// sortedNames returns the names of h, sorted.
func sortedNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestWebhookHeadersFilter(t *testing.T) {
	lower := http.Header{}
	for name, values := range webhookHeaders() {
		lower[strings.ToLower(name)] = values
	}
	for _, tc := range []struct {
		name  string
		keep  []string
		field zapcore.Field
		want  []string // header names left, as the field spells them
	}{
		{name: "access log request headers", field: zap.Object("headers", caddyhttp.LoggableHTTPHeader{Header: webhookHeaders()}), want: safe},
		{name: "a pointer to them", field: zap.Object("headers", &caddyhttp.LoggableHTTPHeader{Header: webhookHeaders()}), want: safe},
		{name: "an http.Header", field: zap.Any("headers", webhookHeaders()), want: safe},
		{name: "keep adds names", keep: []string{"X-Tenant", "X-Absent"}, field: zap.Any("headers", webhookHeaders()),
			want: append(slices.Clone(safe), "X-Tenant")},
		{name: "keep compares case-insensitively", keep: []string{"x-TENANT"}, field: zap.Any("headers", webhookHeaders()),
			want: append(slices.Clone(safe), "X-Tenant")},
		{name: "headers not in canonical form", keep: []string{"X-Tenant"}, field: zap.Any("headers", lower),
			want: append(lowerAll(safe), "x-tenant")},
		{name: "the whole request, not its headers", field: zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: &http.Request{Header: webhookHeaders()}}),
			want: safe},
		{name: "a pointer to the request", field: zap.Object("request", &caddyhttp.LoggableHTTPRequest{Request: &http.Request{Header: webhookHeaders()}}),
			want: safe},
		{name: "no headers", field: zap.Object("headers", caddyhttp.LoggableHTTPHeader{}), want: nil},
		{name: "empty headers", field: zap.Any("headers", http.Header{}), want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			filtered := filterOf(t, tc.keep...).Filter(tc.field)
			if filtered.Key != tc.field.Key || filtered.Type != tc.field.Type {
				t.Errorf("field %s of type %v became %s of type %v", tc.field.Key, tc.field.Type, filtered.Key, filtered.Type)
			}
			out := headersOf(t, filtered)
			got, want := sortedNames(out), slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("kept %q\nwant %q", got, want)
			}
			if tc.want == nil && out != nil {
				t.Errorf("nil headers became %v", out)
			}
			for name, values := range out {
				if want := "value-of-"; len(values) != 1 || !strings.HasPrefix(values[0], want) {
					t.Errorf("%s: %q, want its value unchanged", name, values)
				}
			}
		})
	}
}

func lowerAll(names []string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = strings.ToLower(name)
	}
	return out
}

func TestWebhookHeadersFilterKeepsTheFieldsShape(t *testing.T) {
	f := filterOf(t)
	orig := webhookHeaders()
	in := zap.Object("headers", caddyhttp.LoggableHTTPHeader{Header: orig, ShouldLogCredentials: true})
	out := f.Filter(in)
	if out.Key != in.Key || out.Type != in.Type {
		t.Errorf("field %s of type %v became %s of type %v", in.Key, in.Type, out.Key, out.Type)
	}
	if lh, ok := out.Interface.(caddyhttp.LoggableHTTPHeader); !ok || !lh.ShouldLogCredentials {
		t.Errorf("filtered value %#v lost its type or ShouldLogCredentials", out.Interface)
	}
	if !reflectEqualHeaders(orig, webhookHeaders()) {
		t.Error("the logged request's own headers were changed")
	}

	// Fields that are not headers are left as they are.
	for _, field := range []zapcore.Field{
		zap.String("uri", "/x"),
		zap.Int("status", 200),
		zap.Any("headers", map[string][]string{"Authorization": {"a"}}),
		zap.Strings("headers", []string{"Authorization"}),
	} {
		if got := f.Filter(field); !got.Equals(field) {
			t.Errorf("%s (%v) changed to %+v", field.Key, field.Type, got)
		}
	}
}

func reflectEqualHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for name, values := range a {
		if !slices.Equal(values, b[name]) {
			return false
		}
	}
	return true
}

func TestWebhookHeadersFilterCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    string // the filter's JSON for request>headers
		wantErr string
	}{
		{name: "in fields", input: `filter {
			wrap json
			fields {
				request>headers webhook_headers
			}
		}`, want: `{"filter":"webhook_headers"}`},
		{name: "flat", input: `filter {
			wrap json
			request>headers webhook_headers
		}`, want: `{"filter":"webhook_headers"}`},
		{name: "keep in fields", input: `filter {
			fields {
				request>headers webhook_headers {
					keep X-Tenant x-region
					keep X-Trace
				}
			}
		}`, want: `{"filter":"webhook_headers","keep":["X-Tenant","x-region","X-Trace"]}`},
		{name: "keep flat", input: `filter {
			request>headers webhook_headers {
				keep X-Tenant
			}
		}`, want: `{"filter":"webhook_headers","keep":["X-Tenant"]}`},
		{name: "inline argument", input: `filter {
			request>headers webhook_headers X-Tenant
		}`, wantErr: "wrong argument count"},
		{name: "keep nothing", input: `filter {
			request>headers webhook_headers {
				keep
			}
		}`, wantErr: "wrong argument count"},
		{name: "keep a credential", input: `filter {
			request>headers webhook_headers {
				keep X-Tenant x-gitlab-token
			}
		}`, wantErr: "keep: x-gitlab-token carries a credential and is never logged"},
		{name: "keep no header", input: `filter {
			request>headers webhook_headers {
				keep "X Tenant"
			}
		}`, wantErr: `keep: "X Tenant" is not a header name`},
		{name: "unknown subdirective", input: `filter {
			request>headers webhook_headers {
				drop X-Tenant
			}
		}`, wantErr: "unrecognized subdirective drop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fe logging.FilterEncoder
			err := fe.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(fe.FieldsRaw["request>headers"]); got != tc.want {
				t.Errorf("request>headers: %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestWebhookHeadersFilterValidate(t *testing.T) {
	for _, tc := range []struct {
		keep    string
		wantErr string
	}{
		{keep: `[]`},
		{keep: `["X-Tenant", "x-region"]`},
		{keep: `["X-Tenant", ""]`, wantErr: `keep: "" is not a header name`},
		{keep: `["X-Tenant:"]`, wantErr: `keep: "X-Tenant:" is not a header name`},
	} {
		var f module.WebhookHeadersFilter
		if err := json.Unmarshal([]byte(`{"keep":`+tc.keep+`}`), &f); err != nil {
			t.Fatal(err)
		}
		err := f.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
			t.Errorf("keep %s: error %v, want %q", tc.keep, err, tc.wantErr)
		}
	}
	for _, name := range credentials {
		for _, spelling := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			f := module.WebhookHeadersFilter{Keep: []string{spelling}}
			want := "keep: " + spelling + " carries a credential and is never logged"
			if err := f.Validate(); err == nil || err.Error() != want {
				t.Errorf("keep %s: error %v, want %q", spelling, err, want)
			}
		}
	}
}

// TestAccessLogWithWebhookHeaders runs Caddy with the access log that the
// docs/configuration.md recommends, and sends what GitHub, GitLab and a sender with a
// secure header of its own name send: no secret reaches the log, and the
// headers that identify a delivery do.
func TestAccessLogWithWebhookHeaders(t *testing.T) {
	// The filter belongs on request>headers; put on the whole request, it
	// must filter the same (it used to leave the field as it was).
	for _, field := range []string{"request>headers", "request"} {
		t.Run(field, func(t *testing.T) { accessLogWithWebhookHeaders(t, field) })
	}
}

func accessLogWithWebhookHeaders(t *testing.T, field string) {
	const (
		ghSecret    = "gh-secret-1c9e"
		glToken     = "gl-token-77d0"
		shSecret    = "sh-secret-a41b"
		bearer      = "bearer-5f0c"
		tenant      = "acme-tenant"
		secureName  = "X-Acme-Relay-Auth"
		pullRequest = `{"action":"opened"}`
	)
	dir := t.TempDir()
	integrations := filepath.Join(dir, "integrations.json")
	testenv.WriteFile(t, integrations, fmt.Sprintf(`[
		{"webhook_id": "gh", "is_enabled": true, "github_webhook_secret": %q, "resource_type": "workflow", "resource_id": "w1"},
		{"webhook_id": "gl", "is_enabled": true, "gitlab_webhook_token": %q, "resource_type": "workflow", "resource_id": "w1"},
		{"webhook_id": "sh", "is_enabled": true, "secure_header_name": %q, "secure_header_value": %q, "resource_type": "workflow", "resource_id": "w1"}
	]`, ghSecret, glToken, secureName, shSecret))
	accessLog := filepath.Join(dir, "access.log")
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, fmt.Sprintf(`
	log {
		output file %s
		format filter {
			wrap json
			fields {
				%s webhook_headers {
					keep X-Tenant
				}
				resp_headers webhook_headers
			}
		}
	}
	route %s* {
		codemie_webhooks {
			integrations_file %s
			rate_limit off
			upstream %s
		}
	}`, accessLog, field, webhooks, integrations, api.URL))

	sig := testenv.SignGitHub256(ghSecret, pullRequest)
	exchanges := []exchange{
		{name: "github", path: webhooks + "gh", body: pullRequest, wantStatus: 200, wantBody: invoked, headers: []string{
			"X-GitHub-Event: pull_request", "X-GitHub-Delivery: d-1", "X-Hub-Signature-256: " + sig,
			"Content-Type: application/json", "Authorization: Bearer " + bearer, "X-Tenant: " + tenant}},
		{name: "github, wrong signature", path: webhooks + "gh", body: `{"action":"closed"}`, wantStatus: 401,
			wantBody: `{"detail":"Invalid GitHub webhook signature"}`, headers: []string{
				"X-GitHub-Event: pull_request", "X-GitHub-Delivery: d-2", "X-Hub-Signature-256: " + sig}},
		{name: "gitlab", path: webhooks + "gl", body: `{"object_kind":"push"}`, wantStatus: 200, wantBody: invoked, headers: []string{
			"X-Gitlab-Event: Push Hook", "X-Gitlab-Token: " + glToken}},
		{name: "secure header", path: webhooks + "sh", body: `{}`, wantStatus: 200, wantBody: invoked, headers: []string{
			secureName + ": " + shSecret, "Cookie: session=" + bearer}},
	}
	for _, x := range exchanges {
		x.run(t, c)
	}

	var entries []map[string]any
	testenv.Eventually(t, "an access log line per request", func() bool {
		b, err := os.ReadFile(accessLog)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < len(exchanges) {
			return false
		}
		entries = entries[:0]
		for _, line := range lines {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("access log line %q: %v", line, err)
			}
			entries = append(entries, entry)
		}
		return true
	})

	access, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{ghSecret, glToken, shSecret, bearer, sig, sig[len("sha256="):],
		"X-Hub-Signature", "X-Gitlab-Token", secureName, "Authorization", "Cookie"} {
		if strings.Contains(string(access), s) {
			t.Errorf("the access log contains %q:\n%s", s, access)
		}
	}

	// What identifies each delivery is logged, with its values.
	want := map[string]map[string]string{
		webhooks + "gh": {"X-Github-Event": "pull_request", "X-Github-Delivery": "d-1", "Content-Type": "application/json", "X-Tenant": tenant},
		webhooks + "gl": {"X-Gitlab-Event": "Push Hook"},
	}
	for _, entry := range entries {
		request, _ := entry["request"].(map[string]any)
		uri, _ := request["uri"].(string)
		headers, _ := request["headers"].(map[string]any)
		if _, ok := headers["User-Agent"]; !ok {
			t.Errorf("%s: User-Agent not logged: %v", uri, headers)
		}
		for name, value := range want[uri] {
			if got, _ := headers[name].([]any); len(got) != 1 || got[0] != value {
				t.Errorf("%s: header %s logged as %v, want [%s]", uri, name, headers[name], value)
			}
		}
		delete(want, uri)
		respHeaders, _ := entry["resp_headers"].(map[string]any)
		if got, _ := respHeaders["Content-Type"].([]any); len(got) != 1 || got[0] != "application/json" {
			t.Errorf("%s: resp_headers %v, want Content-Type application/json", uri, respHeaders)
		}
	}
	if len(want) > 0 {
		t.Errorf("no access log line for %v", want)
	}
}
