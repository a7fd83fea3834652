package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// A fixed test key (base64 of 32 bytes), and an older one.
const (
	cliKey    = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	cliOldKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
)

// cliEnv points the command at r with the test key.
func cliEnv(r *testenv.Redis, key string) []string {
	return []string{"CODEMIE_WEBHOOKS_REDIS=" + r.Addr, "CODEMIE_WEBHOOKS_KEY=" + key}
}

// runCLI runs "caddy codemie-webhooks args..." and fails the test unless
// it exits with want.
func runCLI(t *testing.T, env []string, stdin string, want int, args ...string) string {
	t.Helper()
	stdout, stderr, status := testenv.RunCaddyCommand(t, stdin, env, append([]string{"codemie-webhooks"}, args...)...)
	if status != want {
		t.Fatalf("codemie-webhooks %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), status, want, stdout, stderr)
	}
	return stdout + stderr
}

// snapshot is every key and value in Redis, to prove nothing changed.
func snapshot(t *testing.T, r *testenv.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range r.Client.Keys(ctx, "*").Val() {
		if strings.HasPrefix(k, "codemie:webhooks:log") {
			continue // the delivery log's streams, written by the site's requests
		}
		v, _ := r.Client.Dump(ctx, k).Result()
		out[k] = v
	}
	return out
}

// cliSite serves the webhooks from r with the test key, an hour-long
// cache (so that only announcements make changes visible), and extra.
func cliSite(r *testenv.Redis, api *testenv.CodeMie, extra string) string {
	return testenv.RedisSite(r.Addr, api.URL, "rate_limit off", "delivery sync", "cache_ttl 1h", "secrets_key "+cliKey, extra).String()
}

func TestCLI(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	env := cliEnv(r, cliKey)
	c := testenv.StartCaddy(t, cliSite(r, api, "negative_ttl 1h"))
	ctx := context.Background()
	body := `{"action":"opened"}`
	post := func(secret, delivery string) int {
		status, _, _ := c.Post(t, webhooks+"gh-1", body, "X-Hub-Signature-256: "+testenv.SignGitHub256(secret, body), "X-GitHub-Delivery: "+delivery)
		return status
	}
	if post(ghSecret, "d-0") != 400 {
		t.Fatal("an unknown webhook was served")
	}
	// answers waits until a request signed with secret is answered want:
	// a change reaches the cache through a PUBLISH, soon but not at once.
	// (Without it, the hour-long cache would serve the old record.)
	deliveries := 0
	answers := func(secret string, want int) bool {
		testenv.Eventually(t, fmt.Sprintf("a request signed with the %s secret to get %d", secret[:3], want), func() bool {
			deliveries++
			return post(secret, fmt.Sprint("poll-", deliveries)) == want
		})
		return true
	}

	// set: validated, encrypted, announced.
	runCLI(t, env, "", 0, "set", "gh-1", "--enabled", "true", "--resource-type", "workflow", "--resource-id", "wf-1",
		"--user-id", "u-1", "--project", "demo", "--alias", "CI", "--github-secret", ghSecret, "--github-event-filter", "push, pull_request")
	stored := r.Client.HGetAll(ctx, "codemie:webhooks:{gh-1}").Val()
	if !strings.HasPrefix(stored["github_webhook_secret"], "enc:v1:") || stored["resource_type"] != "workflow" || stored["webhook_id"] != "gh-1" {
		t.Errorf("stored %v", stored)
	}
	answers(ghSecret, 200) // the handler serves what the CLI wrote, despite the hour-long negative cache

	// get masks unless asked.
	out := runCLI(t, env, "", 0, "get", "gh-1")
	if strings.Contains(out, ghSecret) || strings.Contains(out, "enc:v1:") || !strings.Contains(out, `"github_webhook_secret": "********"`) {
		t.Errorf("get shows a secret:\n%s", out)
	}
	if out := runCLI(t, env, "", 0, "get", "gh-1", "--show-secrets"); !strings.Contains(out, ghSecret) {
		t.Errorf("get --show-secrets:\n%s", out)
	}

	// Bad input: exit 2, nothing written.
	before := snapshot(t, r)
	for _, args := range [][]string{
		{"set", "gh-1", "--resource-type", "robot"},
		{"set", "gh-1", "--enabled", "perhaps"},
		{"set", "gh-1", "--secure-header-name", "X-Key"},
		{"set", "bad id", "--resource-type", "workflow", "--resource-id", "w"},
		{"set", "new-one", "--enabled", "true"},
		{"enable", "missing"},
		{"rotate-secret", "gh-1", "--field", "password"},
		{"rotate-secret", "gh-1", "--finish"},
		// A secret of only line breaks would turn its check off.
		{"set", "gh-1", "--github-secret", "\n"},
		{"set", "gh-1", "--gitlab-token", "\r\n"},
		{"set", "gh-1", "--secure-header-name", "X-Key", "--secure-header-value", "\n\n"},
		// Values that would walk the API's paths or break its headers.
		{"set", "gh-1", "--resource-id", ".."},
		{"set", "gh-1", "--resource-id", "a/../b"},
		{"set", "gh-1", "--user-id", "u\r\nX-Evil: 1"},
	} {
		out := runCLI(t, env, "", 2, args...)
		if strings.Contains(out, ghSecret) {
			t.Errorf("%v: the error shows a secret:\n%s", args, out)
		}
	}
	runCLI(t, env, `{"webhook_id":"other"}`, 2, "set", "gh-1", "--stdin")
	runCLI(t, env, `{"webhook_id":"gh-1","gitlab_webhook_token":["",""]}`, 2, "set", "gh-1", "--stdin")
	// Nothing, or two records, on stdin: nothing (a panic) or the first alone was taken.
	runCLI(t, env, " \n", 2, "set", "gh-1", "--stdin")
	runCLI(t, env, `{"webhook_id":"gh-1"},{"webhook_id":"other"}`, 2, "set", "gh-1", "--stdin")
	runCLI(t, []string{"CODEMIE_WEBHOOKS_REDIS=" + r.Addr, "CODEMIE_WEBHOOKS_KEY=not-a-key"}, "", 2, "list")
	if after := snapshot(t, r); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("bad input changed Redis")
	}

	// disable / enable, seen at once despite the hour-long cache.
	runCLI(t, env, "", 0, "disable", "gh-1")
	answers(ghSecret, 400)
	runCLI(t, env, "", 0, "enable", "gh-1")
	answers(ghSecret, 200)

	// rotate-secret: both secrets pass, then only the new one.
	out = runCLI(t, env, "", 0, "rotate-secret", "gh-1", "--value", "new-gh-secret")
	if strings.Contains(out, "new-gh-secret") {
		t.Errorf("a given secret was echoed:\n%s", out)
	}
	if answers("new-gh-secret", 200) && post(ghSecret, "d-4") != 200 {
		t.Error("during rotation both secrets must pass")
	}
	runCLI(t, env, "", 0, "rotate-secret", "gh-1", "--finish")
	if answers(ghSecret, 401) && post("new-gh-secret", "d-7") != 200 {
		t.Error("after --finish only the new secret must pass")
	}
	out = runCLI(t, env, "", 0, "rotate-secret", "gh-1")
	if !strings.Contains(out, "new secret (shown once): ") {
		t.Errorf("a generated secret is not shown:\n%s", out)
	}

	// set from stdin, written without a key: listed as plain.
	runCLI(t, []string{"CODEMIE_WEBHOOKS_REDIS=" + r.Addr}, `{"webhook_id":"gl-1","is_enabled":true,"resource_type":"datasource",
		"resource_id":"ds-1","gitlab_webhook_token":"gl-plain-token","alias":"Docs"}`, 0, "set", "gl-1", "--stdin")
	if v := r.Client.HGet(ctx, "codemie:webhooks:{gl-1}", "gitlab_webhook_token").Val(); v != "gl-plain-token" {
		t.Errorf("written without a key: %q", v)
	}
	out = runCLI(t, env, "", 0, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "gh-1") || !strings.Contains(lines[1], "github") ||
		!strings.HasSuffix(lines[1], "none") || !strings.Contains(lines[2], "gl-1") || !strings.HasSuffix(lines[2], "gitlab_webhook_token") {
		t.Errorf("list:\n%s", out)
	}

	// check explains without secrets.
	out = runCLI(t, env, "", 0, "check", "gh-1")
	for _, want := range []string{"Webhook gh-1 (CI): enabled.", "X-Hub-Signature-256: sha256=", "X-GitHub-Event one of: push, pull_request"} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q:\n%s", want, out)
		}
	}

	// export, delete, import: a round trip.
	exported := runCLI(t, env, "", 0, "export")
	var records []map[string]any
	if err := json.Unmarshal([]byte(exported), &records); err != nil || len(records) != 2 {
		t.Fatalf("export: %v\n%s", err, exported)
	}
	runCLI(t, env, "", 0, "delete", "gh-1")
	runCLI(t, env, "", 2, "delete", "gh-1")
	answers("new-gh-secret", 400) // a deleted webhook is no longer served
	file := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, env, "", 0, "import", file)
	// The same records, but for the plain token, which is now encrypted.
	reexported := runCLI(t, env, "", 0, "export")
	sealed := r.Client.HGet(ctx, "codemie:webhooks:{gl-1}", "gitlab_webhook_token").Val()
	if !strings.HasPrefix(sealed, "enc:v1:") || strings.Replace(reexported, sealed, "gl-plain-token", 1) != exported {
		t.Errorf("export after import:\n%s\nwant\n%s", reexported, exported)
	}
	if out := runCLI(t, env, "", 0, "get", "gl-1", "--show-secrets"); !strings.Contains(out, `"gitlab_webhook_token": "gl-plain-token"`) {
		t.Errorf("the imported token does not decrypt:\n%s", out)
	}

	// An import with one bad record writes nothing.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`[{"webhook_id":"ok-1","resource_type":"workflow","resource_id":"w"},{"webhook_id":"bad-1","resource_type":"robot"}]`), 0o600)
	before = snapshot(t, r)
	runCLI(t, env, "", 2, "import", bad)
	if after := snapshot(t, r); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a failed import wrote something")
	}
}

func TestCLIKeyRotation(t *testing.T) {
	r := testenv.StartRedis(t)
	runCLI(t, cliEnv(r, cliOldKey), "", 0, "set", "wh", "--resource-type", "workflow", "--resource-id", "w", "--gitlab-token", "tok")
	// A new key, the old one still readable: get decrypts, and a rewrite
	// re-encrypts nothing that is already sealed.
	env := append(cliEnv(r, cliKey), "CODEMIE_WEBHOOKS_KEY_PREVIOUS="+cliOldKey)
	if out := runCLI(t, env, "", 0, "get", "wh", "--show-secrets"); !strings.Contains(out, `"gitlab_webhook_token": "tok"`) {
		t.Errorf("a value sealed with the previous key:\n%s", out)
	}
	if out := runCLI(t, cliEnv(r, cliKey), "", 1, "get", "wh", "--show-secrets"); strings.Contains(out, "tok\"") {
		t.Errorf("opened without the previous key:\n%s", out)
	}
}

// TestCLISync: sync makes Redis match CodeMie's webhook settings, read
// through its settings API (the fake serves CodeMie's paging, filters,
// masking and auth); a running handler serves what it wrote, and a
// webhook deleted in CodeMie is answered 400 once synced. --dry-run and a
// second run write nothing; import --format codemie reads an export.
func TestCLISync(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	env := append(cliEnv(r, cliKey), "CODEMIE_WEBHOOKS_CODEMIE_URL="+api.URL, "CODEMIE_WEBHOOKS_CODEMIE_TOKEN=admin-token")
	c := testenv.StartCaddy(t, cliSite(r, api, ""))
	gh := func(id, setting string) testenv.Setting {
		return testenv.Setting{ID: setting, UserID: "u-1", ProjectName: "demo", Alias: "CI", CredentialType: "Webhook", SettingType: "project",
			CredentialValues: []testenv.CredentialValue{{Key: "webhook_id", Value: id}, {Key: "is_enabled", Value: true},
				{Key: "github_webhook_secret", Value: ghSecret}, {Key: "resource_type", Value: "workflow"}, {Key: "resource_id", Value: "wf-1"}}}
	}
	hdr := testenv.Setting{ID: "s-hdr", UserID: "u-1", CredentialType: "Webhook", CredentialValues: []testenv.CredentialValue{
		{Key: "webhook_id", Value: "hdr"}, {Key: "is_enabled", Value: true}, {Key: "secure_header_name", Value: "X-Webhook-Key"},
		{Key: "secure_header_value", Value: hdrSecret}, {Key: "resource_type", Value: "workflow"}, {Key: "resource_id", Value: "wf-2"}}}
	api.SetSettings([]testenv.Setting{gh("sync-a", "s-a"), gh("sync-b", "s-b"), hdr})
	body := `{"action":"opened"}`
	post := func(id, delivery string) int {
		status, _, _ := c.Post(t, webhooks+id, body, "X-Hub-Signature-256: "+testenv.SignGitHub256(ghSecret, body), "X-GitHub-Delivery: "+delivery)
		return status
	}

	before := snapshot(t, r)
	out := runCLI(t, env, "", 0, "sync", "--dry-run")
	if !strings.Contains(out, "would create sync-a") || !strings.Contains(out, "dry run: nothing written") {
		t.Errorf("dry run said:\n%s", out)
	}
	if fmt.Sprint(snapshot(t, r)) != fmt.Sprint(before) {
		t.Error("--dry-run wrote to Redis")
	}
	out = runCLI(t, env, "", 0, "sync")
	for _, want := range []string{"create sync-a", "create sync-b", "create hdr", "hdr needs its secure_header_value",
		"caddy codemie-webhooks set hdr --secure-header-value <value>", "3 webhook settings read, 3 changes"} {
		if !strings.Contains(out, want) {
			t.Errorf("sync does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ghSecret) || strings.Contains(out, hdrSecret) {
		t.Errorf("sync printed a secret:\n%s", out)
	}
	if post("sync-a", "d-1") != 200 || post("sync-b", "d-2") != 200 {
		t.Error("the handler does not serve what sync wrote")
	}
	if status, _, _ := c.Post(t, webhooks+"hdr", body, "X-Webhook-Key: "+hdrSecret); status != 500 {
		t.Errorf("a webhook whose masked value is not set: %d, want 500 (fail closed)", status)
	}
	if out := runCLI(t, env, "", 1, "check", "hdr"); !strings.Contains(out, "needs its secure_header_value") {
		t.Errorf("check of a record whose masked value is not set:\n%s", out)
	}
	if out := runCLI(t, env, "", 0, "sync"); !strings.Contains(out, "3 webhook settings read, 0 changes") {
		t.Errorf("a second sync changed something:\n%s", out)
	}

	// Disabled in CodeMie: answered 400 once synced.
	disabled := gh("sync-a", "s-a")
	disabled.CredentialValues[1].Value = false
	api.SetSettings([]testenv.Setting{disabled, gh("sync-b", "s-b"), hdr})
	if out := runCLI(t, env, "", 0, "sync"); !strings.Contains(out, "update sync-a (is_enabled)") {
		t.Errorf("sync after disabling:\n%s", out)
	}
	testenv.Eventually(t, "the disabled webhook to be refused", func() bool { return post("sync-a", fmt.Sprint("d-", time.Now().UnixNano())) == 400 })
	api.SetSettings([]testenv.Setting{gh("sync-a", "s-a"), gh("sync-b", "s-b"), hdr})
	runCLI(t, env, "", 0, "sync")

	// Deleted in CodeMie: gone from Redis, and answered 400 at once.
	api.SetSettings([]testenv.Setting{gh("sync-a", "s-a"), hdr})
	if out := runCLI(t, env, "", 0, "sync"); !strings.Contains(out, "delete sync-b") {
		t.Errorf("sync after a deletion:\n%s", out)
	}
	testenv.Eventually(t, "the deleted webhook to be refused", func() bool { return post("sync-b", "d-3") == 400 })

	// Without credentials, with CodeMie refusing them, failing on a later
	// page, or without the key for the stored secrets: nothing written.
	api.SetSettings([]testenv.Setting{gh("sync-a", "s-a"), gh("sync-d", "s-d"), hdr})
	before = snapshot(t, r)
	runCLI(t, cliEnv(r, cliKey), "", 2, "sync", "--codemie-url", api.URL)
	api.FailWith(func(testenv.Call) int { return http.StatusUnauthorized })
	runCLI(t, env, "", 1, "sync")
	api.FailWith(func(c testenv.Call) int {
		if strings.Contains(c.Path, "page=1&") {
			return http.StatusInternalServerError
		}
		return 0
	})
	if out := runCLI(t, env, "", 1, "sync", "--page-size", "1"); !strings.Contains(out, "page 1: CodeMie answered 500") {
		t.Errorf("a failing page 1:\n%s", out)
	}
	api.FailWith(nil)
	runCLI(t, append(env, "CODEMIE_WEBHOOKS_KEY="), "", 2, "sync")
	if fmt.Sprint(snapshot(t, r)) != fmt.Sprint(before) {
		t.Error("a failed sync wrote to Redis")
	}

	// An id written by hand at the edge is the operator's: a setting that
	// claims it is left out, and sync says so.
	runCLI(t, env, "", 0, "set", "manual-1", "--enabled", "true", "--resource-type", "workflow", "--resource-id", "ops")
	api.SetSettings([]testenv.Setting{gh("sync-a", "s-a"), gh("sync-d", "s-d"), hdr, gh("manual-1", "s-m")})
	if out := runCLI(t, env, "", 0, "sync"); !strings.Contains(out, "left alone: manual-1 was written by hand") ||
		strings.Contains(out, "update manual-1") {
		t.Errorf("sync of an id written by hand:\n%s", out)
	}
	if out := runCLI(t, env, "", 0, "get", "manual-1"); !strings.Contains(out, "ops") || strings.Contains(out, "s-m") {
		t.Errorf("the hand-written record after the sync:\n%s", out)
	}

	// An export of the settings API's answer, imported as sync does.
	export := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(export, []byte(`{"data":[{"id":"s-c","user_id":"u-2","credential_type":"Webhook","credential_values":[
		{"key":"webhook_id","value":"sync-c"},{"key":"is_enabled","value":true},{"key":"github_webhook_secret","value":"`+ghSecret+`"},
		{"key":"resource_type","value":"workflow"},{"key":"resource_id","value":"wf-3"}]}],"pagination":{"page":0,"per_page":10,"total":1,"pages":1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = runCLI(t, env, "", 0, "import", "--format", "codemie", export)
	if !strings.Contains(out, "create sync-c") {
		t.Errorf("import --format codemie:\n%s", out)
	}
	testenv.Eventually(t, "the imported webhook to be served", func() bool { return post("sync-c", "d-4") == 200 })
}

// TestSyncInsideCaddy: two instances sharing one Redis run
// sync_from_codemie; one syncs each interval (the other finds the lock
// held), both serve what it wrote, and when it dies the other takes over.
func TestSyncInsideCaddy(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	setting := func(id, sid string) testenv.Setting {
		return testenv.Setting{ID: sid, UserID: "u-1", CredentialType: "Webhook", CredentialValues: []testenv.CredentialValue{
			{Key: "webhook_id", Value: id}, {Key: "is_enabled", Value: true}, {Key: "github_webhook_secret", Value: ghSecret},
			{Key: "resource_type", Value: "workflow"}, {Key: "resource_id", Value: "wf-1"}}}
	}
	api.SetSettings([]testenv.Setting{setting("sync-1", "s-1")})
	site := func(token string) string {
		return cliSite(r, api, "sync_from_codemie 1s {\n\t\t\t\tbearer_token "+token+"\n\t\t\t}") +
			"\n\thandle /metrics {\n\t\tmetrics\n\t}"
	}
	listings := func(token string) int {
		n := 0
		for _, c := range api.Calls() {
			if strings.HasPrefix(c.Path, "/v1/settings/project?") && c.Header.Get("Authorization") == "Bearer "+token {
				n++
			}
		}
		return n
	}

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := testenv.StartCaddyProcess(t, fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n}\nhttp://%s {\n%s\n}\n", addr, site("admin-p")), addr)
	testenv.Eventually(t, "the first instance to sync", func() bool { return listings("admin-p") >= 1 })
	c := testenv.StartCaddy(t, site("admin-c"))
	start := listings("admin-p")
	testenv.Eventually(t, "two more intervals", func() bool { return listings("admin-p") >= start+2 })
	if n := listings("admin-c"); n != 0 {
		t.Errorf("the second instance synced %d times while the first held the lock", n)
	}
	body := `{"action":"opened"}`
	post := func(id, delivery string) int {
		status, _, _ := c.Post(t, webhooks+id, body, "X-Hub-Signature-256: "+testenv.SignGitHub256(ghSecret, body), "X-GitHub-Delivery: "+delivery)
		return status
	}
	if post("sync-1", "d-1") != 200 {
		t.Error("the second instance does not serve what the first synced")
	}

	// The syncing instance dies: the other takes the lock over.
	p.Kill()
	api.SetSettings([]testenv.Setting{setting("sync-1", "s-1"), setting("sync-2", "s-2")})
	testenv.Eventually(t, "the second instance to take over", func() bool { return listings("admin-c") >= 1 })
	testenv.Eventually(t, "the new webhook to be served", func() bool { return post("sync-2", fmt.Sprint("d-", time.Now().UnixNano())) == 200 })
	if v := metricValue(t, c, "caddy_codemie_webhooks_sync_changes_total"); v < 1 {
		t.Errorf("sync_changes_total %v, want at least 1", v)
	}
}
