package module_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const (
	jiraSecret  = "jira-secret-51d0"
	swKey       = "standard-webhooks-key-7e2a"
	slackSecret = "slack-signing-secret-03f9"
)

// TestSignatureSchemes drives a Jira-style, a Standard Webhooks and a
// Slack-style delivery end to end to a workflow dispatch, their secrets
// written encrypted by the CLI.
func TestSignatureSchemes(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	swSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(swKey))
	records := fmt.Sprintf(`[
		{"webhook_id":"jira","is_enabled":true,"resource_type":"workflow","resource_id":"wf-jira",
		 "github_webhook_secret":%q,"event_filter":"jira:issue_created","event_field":"webhookEvent"},
		{"webhook_id":"sw","is_enabled":true,"resource_type":"workflow","resource_id":"wf-sw",
		 "signature_scheme":"standard-webhooks","signature_secret":%q,"event_filter":"invoice.paid"},
		{"webhook_id":"slack","is_enabled":true,"resource_type":"workflow","resource_id":"wf-slack",
		 "signature_scheme":"slack","signature_secret":%q,"signature_tolerance":"60"}
	]`, jiraSecret, swSecret, slackSecret)
	file := filepath.Join(t.TempDir(), "integrations.json")
	if err := os.WriteFile(file, []byte(records), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, cliEnv(r, cliKey), "", 0, "import", file)
	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + r.Addr, Upstream: api.URL, Options: []string{"rate_limit off", "delivery sync", "secrets_key " + cliKey}}.String())

	// Jira Cloud: X-Hub-Signature: sha256=, an event filter on webhookEvent.
	jiraBody := `{"webhookEvent":"jira:issue_created","issue":{"key":"CM-1"}}`
	jiraSig := testenv.SignGitHub256(jiraSecret, jiraBody)
	exchange{name: "jira", path: webhooks + "jira", body: jiraBody, headers: []string{"X-Hub-Signature: " + jiraSig,
		"X-Atlassian-Webhook-Identifier: jira-delivery-1"}, wantStatus: 200, wantBody: invoked}.run(t, c)
	other := `{"webhookEvent":"jira:issue_deleted"}`
	exchange{name: "jira other event", path: webhooks + "jira", body: other,
		headers:    []string{"X-Hub-Signature: " + testenv.SignGitHub256(jiraSecret, other)},
		wantStatus: 200, wantBody: `{"message":"Webhook received, event filtered out"}`}.run(t, c)

	// Standard Webhooks, signed now.
	swBody := `{"type":"invoice.paid","data":{"id":"in_1"}}`
	now := strconv.FormatInt(time.Now().Unix(), 10)
	swSig := "v1," + base64.StdEncoding.EncodeToString(testenv.HMACSHA256([]byte(swKey), "msg_e2e_1."+now+"."+swBody))
	exchange{name: "standard webhooks", path: webhooks + "sw", body: swBody, headers: []string{"webhook-id: msg_e2e_1",
		"webhook-timestamp: " + now, "webhook-signature: " + swSig}, wantStatus: 200, wantBody: invoked}.run(t, c)
	stale := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	staleSig := "v1," + base64.StdEncoding.EncodeToString(testenv.HMACSHA256([]byte(swKey), "msg_e2e_2."+stale+"."+swBody))
	exchange{name: "standard webhooks, an hour old", path: webhooks + "sw", body: swBody, headers: []string{"webhook-id: msg_e2e_2",
		"webhook-timestamp: " + stale, "webhook-signature: " + staleSig},
		wantStatus: 401, wantBody: `{"detail":"Webhook timestamp outside the allowed window"}`}.run(t, c)
	exchange{name: "standard webhooks, unsigned", path: webhooks + "sw", body: swBody,
		wantStatus: 401, wantBody: `{"detail":"Missing webhook signature"}`}.run(t, c)

	// Slack Events API: the event id feeds the replay guard.
	slackBody := `{"type":"event_callback","event_id":"Ev0E2E","event":{"type":"app_mention"}}`
	slackSig := "v0=" + hex.EncodeToString(testenv.HMACSHA256([]byte(slackSecret), "v0:"+now+":"+slackBody))
	slackHeaders := []string{"X-Slack-Request-Timestamp: " + now, "X-Slack-Signature: " + slackSig}
	exchange{name: "slack", path: webhooks + "slack", body: slackBody, headers: slackHeaders, wantStatus: 200, wantBody: invoked}.run(t, c)
	exchange{name: "slack retry", path: webhooks + "slack", body: slackBody, headers: append(slackHeaders, "X-Slack-Retry-Num: 1"),
		wantStatus: 200, wantBody: `{"message":"Duplicate delivery ignored"}`}.run(t, c)
	exchange{name: "slack forged", path: webhooks + "slack", body: slackBody + " ", headers: slackHeaders,
		wantStatus: 401, wantBody: `{"detail":"Invalid webhook signature"}`}.run(t, c)

	var got []string
	for _, call := range api.Calls() {
		got = append(got, call.String()+" "+call.Header.Get("Idempotency-Key"))
	}
	want := []string{
		"POST /v1/workflows/wf-jira/executions jira-delivery-1",
		"POST /v1/workflows/wf-sw/executions msg_e2e_1",
		"POST /v1/workflows/wf-slack/executions Ev0E2E",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("dispatched\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The secrets are stored encrypted, and never logged.
	for _, id := range []string{"sw", "slack"} {
		if v := r.Client.HGet(t.Context(), "codemie:webhooks:{"+id+"}", "signature_secret").Val(); !strings.HasPrefix(v, "enc:v1:") {
			t.Errorf("%s: signature_secret stored as %q", id, v)
		}
	}
	if out := runCLI(t, cliEnv(r, cliKey), "", 0, "check", "sw"); !strings.Contains(out, "webhook-signature: v1,") {
		t.Errorf("check does not explain the scheme:\n%s", out)
	}
	logs := c.Logs(t)
	for _, s := range []string{jiraSecret, swKey, swSecret, slackSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain %q", s)
		}
	}
}
