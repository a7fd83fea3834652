package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// Secrets of the integrations below; none may ever reach a log line.
const (
	ghSecret  = "gh-secret-7f3a"
	glToken   = "gl-token-91bc"
	hdrSecret = "hdr-secret-c0d2"
	// bodyMark is in every request body; bodies must not be logged either.
	bodyMark = "BODY-MARK-5e1f"
)

// enforcementSite starts Caddy in front of a real Redis holding one
// integration per mechanism, on three routes: the default options, strict
// options (filtered_status 400, require_auth) and a tight rate limit. It
// returns the server, the Redis and the access log's path.
func enforcementSite(t *testing.T) (*testenv.Caddy, *testenv.Redis, string) {
	t.Helper()
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	for id, fields := range map[string][]string{
		"gh":   {"github_webhook_secret", ghSecret, "github_event_filter", "push,pull_request.opened"},
		"gh1":  {"github_webhook_secret", ghSecret, "github_require_sha256", "false"},
		"gl":   {"gitlab_webhook_token", glToken, "gitlab_event_filter", "open, merge"},
		"hdr":  {"secure_header_name", "X-Webhook-Key", "secure_header_value", hdrSecret},
		"all":  {"github_webhook_secret", ghSecret, "gitlab_webhook_token", glToken, "secure_header_name", "X-Webhook-Key", "secure_header_value", hdrSecret},
		"open": {},
		"rl":   {"secure_header_name", "X-Webhook-Key", "secure_header_value", hdrSecret},
	} {
		args := append([]string{"webhook_id", id, "is_enabled", "true", "resource_type", "workflow", "resource_id", "wf"}, fields...)
		if err := r.Client.HSet(ctx, "codemie:webhooks:{"+id+"}", args).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r.Client.HSet(ctx, "codemie:webhooks:{off}", "is_enabled", "false", "github_webhook_secret", ghSecret)

	accessLog := filepath.Join(t.TempDir(), "access.log")
	c := testenv.StartCaddy(t, fmt.Sprintf(`
	log {
		output file %s
		format filter {
			wrap json
			request>headers>X-Gitlab-Token replace REDACTED
			request>headers>X-Hub-Signature-256 replace REDACTED
			request>headers>X-Hub-Signature replace REDACTED
			request>headers>X-Webhook-Key replace REDACTED
		}
	}
	route %s* {
		log_append webhook_id {http.codemie_webhooks.id}
		log_append webhook_outcome {http.codemie_webhooks.outcome}
		log_append webhook_delivery {http.codemie_webhooks.delivery_id}
		codemie_webhooks {
			redis %s
			rate_limit 1000 1m
			upstream %s
			delivery sync
		}
	}
	route /strict/* {
		codemie_webhooks {
			redis %s
			filtered_status 400
			require_auth
			upstream %s
			delivery sync
		}
	}
	route /limited/* {
		codemie_webhooks {
			redis %s
			rate_limit 2 1m
			upstream %s
			delivery sync
		}
	}
	handle /metrics {
		metrics
	}`, accessLog, webhooks, r.Addr, api.URL, r.Addr, api.URL, r.Addr, api.URL))
	return c, r, accessLog
}

func TestEnforcement(t *testing.T) {
	c, r, accessLog := enforcementSite(t)
	body := `{"action":"opened","note":"` + bodyMark + `"}`
	closed := `{"action":"closed","note":"` + bodyMark + `"}`
	mr := func(action string) string {
		return `{"object_kind":"merge_request","object_attributes":{"action":"` + action + `"},"note":"` + bodyMark + `"}`
	}
	const (
		next        = invoked
		invalidSig  = `{"detail":"Invalid GitHub webhook signature"}`
		missingSig  = `{"detail":"Missing GitHub webhook signature header"}`
		invalidGL   = `{"detail":"Invalid GitLab token"}`
		invalidHdr  = `{"detail":"Invalid security header"}`
		filteredOut = `{"message":"Webhook received, event filtered out"}`
	)
	good := testenv.SignGitHub256(ghSecret, body)
	for _, x := range []exchange{
		// Step 2: lookup.
		{name: "unknown", path: webhooks + "nope", body: body, wantStatus: 400, wantBody: notFound("nope")},
		{name: "disabled", path: webhooks + "off", body: body, headers: []string{"X-Hub-Signature-256: " + good}, wantStatus: 400, wantBody: notFound("off")},

		// Step 3: GitHub.
		{name: "github valid", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: " + good, "X-GitHub-Event: push", "X-GitHub-Delivery: d-1"},
			wantStatus: 200, wantBody: next},
		{name: "github wrong signature", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: " + testenv.SignGitHub256("guess", body), "X-GitHub-Event: push"},
			wantStatus: 401, wantBody: invalidSig},
		{name: "github upper-case hex", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: sha256=" + strings.ToUpper(good[7:]), "X-GitHub-Event: push"},
			wantStatus: 401, wantBody: invalidSig},
		{name: "github no headers at all (fail-closed)", path: webhooks + "gh", body: body, wantStatus: 401, wantBody: missingSig},
		{name: "github sha1 when sha256 is required", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature: " + testenv.SignGitHub1(ghSecret, body), "X-GitHub-Event: push"},
			wantStatus: 401, wantBody: missingSig},
		{name: "github sha1 allowed", path: webhooks + "gh1", body: body, headers: []string{"X-Hub-Signature: " + testenv.SignGitHub1(ghSecret, body)}, wantStatus: 200, wantBody: next},
		{name: "github event.action allowed", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: " + good, "X-GitHub-Event: pull_request", "X-GitHub-Delivery: d-2"},
			wantStatus: 200, wantBody: next},
		{name: "github event.action filtered", path: webhooks + "gh", body: closed, headers: []string{"X-Hub-Signature-256: " + testenv.SignGitHub256(ghSecret, closed), "X-GitHub-Event: pull_request"},
			wantStatus: 200, wantBody: filteredOut},
		{name: "github event filtered", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: " + good, "X-GitHub-Event: issues"},
			wantStatus: 200, wantBody: filteredOut},
		{name: "github event filtered, filtered_status 400", path: "/strict/gh", body: body, headers: []string{"X-Hub-Signature-256: " + good, "X-GitHub-Event: issues"},
			wantStatus: 400, wantBody: `{"detail":"GitHub event type 'issues' is not allowed for this webhook"}`},
		{name: "github ping", path: webhooks + "gh", body: body, headers: []string{"X-Hub-Signature-256: " + good, "X-GitHub-Event: ping"},
			wantStatus: 200, wantBody: `{"message":"pong"}`},
		{name: "github ping unsigned", path: webhooks + "gh", body: body, headers: []string{"X-GitHub-Event: ping"}, wantStatus: 401, wantBody: missingSig},

		// Step 4: GitLab.
		{name: "gitlab valid", path: webhooks + "gl", body: mr("merge"), headers: []string{"X-Gitlab-Token: " + glToken}, wantStatus: 200, wantBody: next},
		{name: "gitlab wrong token", path: webhooks + "gl", body: mr("merge"), headers: []string{"X-Gitlab-Token: not-" + glToken}, wantStatus: 401, wantBody: invalidGL},
		{name: "gitlab no token", path: webhooks + "gl", body: mr("merge"), wantStatus: 401, wantBody: invalidGL},
		{name: "gitlab MR action filtered", path: webhooks + "gl", body: mr("update"), headers: []string{"X-Gitlab-Token: " + glToken}, wantStatus: 200, wantBody: filteredOut},
		{name: "gitlab MR filtered stays 200 when strict", path: "/strict/gl", body: mr("update"), headers: []string{"X-Gitlab-Token: " + glToken}, wantStatus: 200, wantBody: filteredOut},

		// Step 5: secure header.
		{name: "header valid", path: webhooks + "hdr", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret}, wantStatus: 200, wantBody: next},
		{name: "header wrong", path: webhooks + "hdr", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret + "x"}, wantStatus: 401, wantBody: invalidHdr},
		{name: "header missing", path: webhooks + "hdr", body: body, wantStatus: 401, wantBody: invalidHdr},

		// Every configured mechanism must pass.
		{name: "all mechanisms", path: webhooks + "all", body: body,
			headers: []string{"X-Hub-Signature-256: " + good, "X-Gitlab-Token: " + glToken, "X-Webhook-Key: " + hdrSecret}, wantStatus: 200, wantBody: next},
		{name: "all but the signature", path: webhooks + "all", body: body,
			headers: []string{"X-Gitlab-Token: " + glToken, "X-Webhook-Key: " + hdrSecret}, wantStatus: 401, wantBody: missingSig},
		{name: "all but the header", path: webhooks + "all", body: body,
			headers: []string{"X-Hub-Signature-256: " + good, "X-Gitlab-Token: " + glToken}, wantStatus: 401, wantBody: invalidHdr},

		// No mechanism.
		{name: "unauthenticated served", path: webhooks + "open", body: body, wantStatus: 200, wantBody: next},
		{name: "unauthenticated refused by require_auth", path: "/strict/open", body: body, wantStatus: 401,
			wantBody: `{"detail":"Webhook has no authentication configured"}`},

		// Step 1: the rate limit, shared through Redis, after verification.
		{name: "limited: unauthenticated requests do not count", path: "/limited/rl", body: body, wantStatus: 401, wantBody: invalidHdr},
		{name: "limited: unauthenticated requests do not count", path: "/limited/rl", body: body, wantStatus: 401, wantBody: invalidHdr},
		{name: "limited: unauthenticated requests do not count", path: "/limited/rl", body: body, wantStatus: 401, wantBody: invalidHdr},
		{name: "limited: first", path: "/limited/rl", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret, "Idempotency-Key: rl-1"}, wantStatus: 200, wantBody: next},
		{name: "limited: second", path: "/limited/rl", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret, "Idempotency-Key: rl-2"}, wantStatus: 200, wantBody: next},
		{name: "limited: third", path: "/limited/rl", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret, "Idempotency-Key: rl-3"}, wantStatus: 429,
			wantBody: `{"detail":"Webhook rate limit exceeded: maximum 2 requests per 60 seconds allowed."}`},
	} {
		x.run(t, c)
	}

	_, hdr, _ := c.Post(t, "/limited/rl", body, "X-Webhook-Key: "+hdrSecret, "Idempotency-Key: rl-4")
	if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", hdr.Get("Retry-After"))
	}
	if n := r.Client.Get(context.Background(), "codemie:webhooks:{rl}:rl").Val(); n != "4" {
		t.Errorf("rate-limit counter in Redis = %q, want 4 (only verified requests count)", n)
	}

	for sample, min := range map[string]float64{
		`caddy_codemie_webhooks_requests_total{outcome="github_signature_invalid"}`: 2,
		`caddy_codemie_webhooks_requests_total{outcome="github_signature_missing"}`: 3,
		`caddy_codemie_webhooks_requests_total{outcome="gitlab_token_invalid"}`:     2,
		`caddy_codemie_webhooks_requests_total{outcome="secure_header_invalid"}`:    5,
		`caddy_codemie_webhooks_requests_total{outcome="filtered"}`:                 4,
		`caddy_codemie_webhooks_requests_total{outcome="ping"}`:                     1,
		`caddy_codemie_webhooks_requests_total{outcome="rate_limited"}`:             2,
		`caddy_codemie_webhooks_requests_total{outcome="auth_required"}`:            1,
		`caddy_codemie_webhooks_unauthenticated_requests_total`:                     1,
	} {
		if v := metricValue(t, c, sample); v < min {
			t.Errorf("%s = %v, want at least %v", sample, v, min)
		}
	}

	// One structured line per rejection, with what ops need.
	logs := c.Logs(t)
	want := `"webhook_id":"gh","reason":"github_signature_invalid","status":401,"remote_ip":"127.0.0.1"`
	if !strings.Contains(logs, want) {
		t.Errorf("no rejection line with %s in:\n%s", want, logs)
	}
	if !strings.Contains(logs, `"msg":"webhook has no authentication configured; served without any","webhook_id":"open"`) {
		t.Error("an unauthenticated webhook was not logged as such")
	}

	// Placeholders reach the access log.
	access, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !accessLogged(t, access, map[string]string{"webhook_id": "gh", "webhook_outcome": "dispatched", "webhook_delivery": "d-1"}) {
		t.Errorf("placeholders missing from the access log:\n%s", access)
	}

	// Redis down: the guard fails open, logged and counted.
	before := metricValue(t, c, "caddy_codemie_webhooks_guard_errors_total")
	r.Stop()
	exchange{name: "guard down", path: webhooks + "hdr", body: body, headers: []string{"X-Webhook-Key: " + hdrSecret}, wantStatus: 200, wantBody: next}.run(t, c)
	if after := metricValue(t, c, "caddy_codemie_webhooks_guard_errors_total"); after != before+1 {
		t.Errorf("guard errors %v -> %v, want one more", before, after)
	}
	if !strings.Contains(c.Logs(t), "rate limit and replay guard unavailable; admitting") {
		t.Error("failing open was not logged")
	}

	// Nothing secret, and no body, reached any log (Caddy's access log with
	// the header filter that docs/configuration.md recommends).
	logs = c.Logs(t) + string(access)
	for _, s := range []string{ghSecret, glToken, hdrSecret, bodyMark, "not-" + glToken, good[7:]} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain %q", s)
		}
	}
}

// accessLogged reports whether some line of an access log has all fields.
func accessLogged(t *testing.T, log []byte, fields map[string]string) bool {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		match := true
		for k, v := range fields {
			match = match && entry[k] == v
		}
		if match {
			return true
		}
	}
	return false
}
