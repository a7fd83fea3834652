package module_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/codemie-edge/caddy-webhooks/caddyfile"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const (
	webhooks = testenv.WebhooksPath
	invoked  = `{"message":"Webhook invoked successfully"}`
)

// notFound is CodeMie's body for an unknown or disabled webhook.
func notFound(id string) string {
	return `{"detail":"Webhook with ID '` + id + `' not found or not enabled"}`
}

type exchange struct {
	name       string
	method     string
	path       string
	body       string
	headers    []string
	wantStatus int
	wantBody   string
	wantHeader map[string]string
}

func (x exchange) run(t *testing.T, c *testenv.Caddy) {
	t.Helper()
	method := x.method
	if method == "" {
		method = http.MethodPost
	}
	status, hdr, body := c.Do(t, method, x.path, x.body, x.headers...)
	if status != x.wantStatus || body != x.wantBody {
		t.Errorf("%s: got %d %s; want %d %s", x.name, status, body, x.wantStatus, x.wantBody)
	}
	for k, v := range x.wantHeader {
		if got := hdr.Get(k); got != v {
			t.Errorf("%s: header %s = %q, want %q", x.name, k, got, v)
		}
	}
}

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrations.json")
	testenv.WriteFile(t, path, `[
		{"webhook_id": "on", "is_enabled": true, "resource_type": "workflow", "resource_id": "w1"},
		{"webhook_id": "off", "is_enabled": false, "resource_type": "workflow", "resource_id": "w1"}
	]`)
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, testenv.Site{Store: "integrations_file " + path, Upstream: api.URL, Options: []string{"max_body 1KB", "rate_limit off"}}.String())

	for _, x := range []exchange{
		{name: "unknown", path: webhooks + "nope", wantStatus: 400, wantBody: notFound("nope")},
		{name: "disabled", path: webhooks + "off", wantStatus: 400, wantBody: notFound("off")},
		{name: "enabled is dispatched", path: webhooks + "on", body: "{}", wantStatus: 200, wantBody: invoked},
		{name: "GET", method: "GET", path: webhooks + "on", wantStatus: 405,
			wantBody: `{"detail":"Method Not Allowed"}`, wantHeader: map[string]string{"Allow": "POST"}},
		{name: "PUT", method: "PUT", path: webhooks + "on", wantStatus: 405,
			wantBody: `{"detail":"Method Not Allowed"}`, wantHeader: map[string]string{"Allow": "POST"}},
		{name: "empty id", path: webhooks, wantStatus: 400, wantBody: `{"detail":"Invalid webhook ID"}`},
		{name: "id too long", path: webhooks + strings.Repeat("a", 129), wantStatus: 400, wantBody: `{"detail":"Invalid webhook ID"}`},
		{name: "longest id", path: webhooks + strings.Repeat("a", 128), wantStatus: 400, wantBody: notFound(strings.Repeat("a", 128))},
		{name: "id with a bad character", path: webhooks + "a%20b", wantStatus: 400, wantBody: `{"detail":"Invalid webhook ID"}`},
		{name: "id with an encoded slash", path: webhooks + "a%2Fon", wantStatus: 400, wantBody: `{"detail":"Invalid webhook ID"}`},
		{name: "trailing slash", path: webhooks + "on/", wantStatus: 400, wantBody: `{"detail":"Invalid webhook ID"}`},
		{name: "body over max_body", path: webhooks + "on", body: strings.Repeat("x", 1001), wantStatus: 413,
			wantBody: `{"detail":"Request body too large"}`},
		{name: "body at max_body", path: webhooks + "on", body: strings.Repeat("x", 1000), wantStatus: 200, wantBody: invoked},
		{name: "content type", path: webhooks + "nope", wantStatus: 400, wantBody: notFound("nope"),
			wantHeader: map[string]string{"Content-Type": "application/json"}},
	} {
		x.run(t, c)
	}

	// A body sent without Content-Length is cut off at max_body too.
	req, _ := http.NewRequest(http.MethodPost, c.URL+webhooks+"on", strings.NewReader(strings.Repeat("x", 5000)))
	req.ContentLength = -1 // unknown: sent chunked
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked body over max_body: status %d, want 413", resp.StatusCode)
	}

	// The file is re-read when it changes.
	testenv.WriteFile(t, path, `[{"webhook_id": "off", "is_enabled": true, "resource_type": "workflow", "resource_id": "w1"}]`)
	testenv.Eventually(t, "the changed file to be served", func() bool {
		status, _, _ := c.Post(t, webhooks+"off", "")
		return status == 200
	})
	exchange{name: "removed from the file", path: webhooks + "on", wantStatus: 400, wantBody: notFound("on")}.run(t, c)
}

func TestRedisStore(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const secret = "gh-s3cret-do-not-log"
	r.Client.HSet(ctx, "codemie:webhooks:{wh-1}", "webhook_id", "wh-1", "is_enabled", "true",
		"resource_type", "workflow", "resource_id", "w1")
	r.Client.HSet(ctx, "codemie:webhooks:{wh-off}", "is_enabled", "False")
	r.Client.HSet(ctx, "codemie:webhooks:{broken}", "is_enabled", "sometimes", "github_webhook_secret", secret)

	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + r.Addr, Upstream: testenv.StartCodeMie(t).URL, Options: []string{"cache_ttl 1h", "negative_ttl 1h", "rate_limit off"}}.String())

	for _, x := range []exchange{
		{name: "written with HSET", path: webhooks + "wh-1", wantStatus: 200, wantBody: invoked},
		{name: "disabled", path: webhooks + "wh-off", wantStatus: 400, wantBody: notFound("wh-off")},
		{name: "unknown", path: webhooks + "wh-new", wantStatus: 400, wantBody: notFound("wh-new")},
		{name: "malformed", path: webhooks + "broken", wantStatus: 500, wantBody: `{"detail":"Webhook processing failed"}`},
	} {
		x.run(t, c)
	}
	logs := c.Logs(t)
	if !strings.Contains(logs, `"reason":"malformed"`) || !strings.Contains(logs, `\"broken\": field is_enabled`) {
		t.Errorf("no log line naming the malformed record and field:\n%s", logs)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, "sometimes") {
		t.Errorf("logs reveal a record's values:\n%s", logs)
	}

	// Changes announced on the channel are seen at once, despite the 1h TTLs.
	r.Client.HSet(ctx, "codemie:webhooks:{wh-1}", "is_enabled", "false")
	r.Client.HSet(ctx, "codemie:webhooks:{wh-new}", "is_enabled", "true", "resource_type", "workflow", "resource_id", "w2")
	r.Client.HSet(ctx, "codemie:webhooks:{broken}", "is_enabled", "1")
	for _, id := range []string{"wh-1", "wh-new", "broken"} {
		r.Client.Publish(ctx, "codemie:webhooks:changed", id)
	}
	testenv.Eventually(t, "published changes to be served", func() bool {
		s1, _, _ := c.Post(t, webhooks+"wh-1", "")
		s2, _, _ := c.Post(t, webhooks+"wh-new", "")
		s3, _, _ := c.Post(t, webhooks+"broken", "")
		return s1 == 400 && s2 == 200 && s3 == 401 // broken now decodes, and wants its signature
	})

}

func TestRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Client.HSet(context.Background(), "codemie:webhooks:{wh-1}", "is_enabled", "true")
	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + r.Addr, Upstream: testenv.StartCodeMie(t).URL, Options: []string{"cache_ttl 20ms", "stale_ttl 1h", "rate_limit off", "delivery sync"}}.String())
	r.Client.HSet(context.Background(), "codemie:webhooks:{wh-1}", "resource_type", "workflow", "resource_id", "w1")
	accepted := exchange{name: "cached", path: webhooks + "wh-1", wantStatus: 200, wantBody: invoked}
	accepted.run(t, c)
	r.Stop()

	// Every answer is the cached record's, and once its TTL has passed it is
	// served as the last good copy, counted.
	stale := `caddy_codemie_webhooks_integrations_stale_served_total`
	before := metricValue(t, c, stale)
	testenv.Eventually(t, "the last good copy to be served", func() bool {
		accepted.run(t, c)
		return metricValue(t, c, stale) > before
	})
	exchange{name: "never seen", path: webhooks + "wh-other", wantStatus: 503,
		wantBody:   `{"detail":"Webhook store unavailable, retry later"}`,
		wantHeader: map[string]string{"Retry-After": "5"}}.run(t, c)
	if logs := c.Logs(t); !strings.Contains(logs, "serving the last good copy") {
		t.Errorf("serving a stale copy was not logged:\n%s", logs)
	}
}

// metricValue reads one sample from the site's /metrics, or -1 if absent.
func metricValue(t *testing.T, c *testenv.Caddy, sample string) float64 {
	t.Helper()
	_, _, body := c.Do(t, http.MethodGet, "/metrics", "")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return -1
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	testenv.WriteFile(t, bad, `[{"webhook_id": "x", "is_enabled": "perhaps"}]`)
	good := filepath.Join(dir, "good.json")
	testenv.WriteFile(t, good, `[]`)
	const up = "\n\t\tupstream http://127.0.0.1:1"
	for _, tc := range []struct {
		name, options, want string
	}{
		{"no store", "cache_ttl 1s", "no integration store"},
		{"cache_ttl past a year", "integrations_file " + good + up + "\n\t\tcache_ttl 2562047h", "cache_ttl must be between 0 and 8760h0m0s"},
		{"stale_ttl past a year", "integrations_file " + good + up + "\n\t\tstale_ttl 8761h", "stale_ttl must be between 0 and 8760h0m0s"},
		{"two stores", "integrations_file x.json\n\t\tredis 127.0.0.1:1", "exclusive"},
		{"missing file", "integrations_file " + filepath.Join(dir, "missing.json") + up, "reading integrations file"},
		{"invalid file", "integrations_file " + bad + up, `integration "x": field is_enabled`},
		{"cluster db", "redis 127.0.0.1:1 127.0.0.1:2 {\n\t\t\tdb 2\n\t\t}" + up, "only database 0"},
		{"bad address", "redis localhost" + up, `address "localhost"`},
		{"no upstream", "integrations_file " + good, "upstream: the CodeMie API's URL is required"},
		{"bad upstream", "integrations_file " + good + "\n\t\tupstream ftp://x", `upstream: "ftp://x" is not an http or https URL`},
		{"upstream with credentials", "integrations_file " + good + "\n\t\tupstream http://u:p@x", "credentials in the URL are not allowed"},
		{"file store with async delivery", "integrations_file " + good + "\n\t\tupstream http://127.0.0.1:1\n\t\tdelivery async", "delivery async needs redis"},
		{"upstream path with an empty segment", "integrations_file " + good + "\n\t\tupstream http://x//v1", "empty segment"},
		{"upstream with a query", "integrations_file " + good + "\n\t\tupstream http://x/api?a=b", "query"},
		{"body budget of one body", "integrations_file " + good + up + "\n\t\tmax_body 1MiB\n\t\tmax_bodies_in_flight 1MiB",
			"max_bodies_in_flight (1048576 bytes) must be larger than max_body (1048576 bytes)"},
		{"sync with an integrations file", "integrations_file " + good + up + "\n\t\tsync_from_codemie {\n\t\t\tbearer_token t\n\t\t}",
			"sync_from_codemie writes the integrations to Redis"},
		{"a count past the Caddyfile's most", "integrations_file " + good + up + "\n\t\tcache_size 9223372036854775807",
			`"9223372036854775807" is not a positive whole number up to 2147483647`},
		{"sync every nanosecond", "redis 127.0.0.1:1" + up + "\n\t\tsync_from_codemie 1ns {\n\t\t\tbearer_token t\n\t\t}",
			"sync_from_codemie: the interval must be at least 1s"},
		{"retry max past a year", "integrations_file " + good + up + "\n\t\tretry 3 1s 8761h", "retry max must be between 0 and 8760h0m0s"},
		{"delivery log kept past a year", "integrations_file " + good + up + "\n\t\tdelivery_log 10 500000h", "delivery_log max_age must be between 1ms and 8760h0m0s"},
		{"rate window past a year", "integrations_file " + good + up + "\n\t\trate_limit 1 8761h", "rate_limit window must be between 0 and 8760h0m0s"},
		{"sync interval past a year", "redis 127.0.0.1:1" + up + "\n\t\tsync_from_codemie 1000000h {\n\t\t\tbearer_token t\n\t\t}",
			"sync_from_codemie interval must be between 0 and 8760h0m0s"},
		{"dead letters kept under a millisecond", "integrations_file " + good + up + "\n\t\tdead_letters 10 1ns 1MB", "dead_letters max_age must be between 1ms and 8760h0m0s"},
		{"upstream port out of range", "integrations_file " + good + "\n\t\tupstream http://127.0.0.1:99999", "the port is not between 1 and 65535"},
		{"upstream header that is no header name", "integrations_file " + good + "\n\t\tupstream http://x {\n\t\t\theader \"Bad Name\" v\n\t\t}",
			`upstream: header "Bad Name": not a header name`},
		{"upstream header twice", "integrations_file " + good + "\n\t\tupstream http://x {\n\t\t\theader X-Tenant 1\n\t\t\theader x-tenant 2\n\t\t}",
			"upstream: header X-Tenant: given more than once"},
		{"upstream oauth2 without a client", "integrations_file " + good + "\n\t\tupstream http://x {\n\t\t\toauth2 http://kc/token \"\" s\n\t\t}",
			"oauth2: token_url, client_id and client_secret are required"},
		{"upstream oauth2 token URL that is no URL", "integrations_file " + good + "\n\t\tupstream http://x {\n\t\t\toauth2 :::: c s\n\t\t}",
			`upstream: oauth2: "::::" is not an http or https URL`},
		{"sync oauth2 token URL that is no URL", "redis 127.0.0.1:1" + up + "\n\t\tsync_from_codemie {\n\t\t\toauth2 :::: c s\n\t\t}",
			`sync_from_codemie: oauth2: "::::" is not an http or https URL`},
		{"forward with a token", "integrations_file " + good + "\n\t\tupstream http://x {\n\t\t\tforward\n\t\t\tbearer_token t\n\t\t}",
			"forward hands deliveries to CodeMie's own webhook, which takes no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := testenv.TryLoadCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n\tcodemie_webhooks {\n\t\t%s\n\t}\n}\n", tc.options))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestJSONConfigBounds: what a Caddyfile cannot express, a JSON config
// can: counts past maxCount and durations past a year are refused (the
// largest retry max made the first failed dispatch panic, and the entry
// made every restart panic again).
func TestJSONConfigBounds(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.json")
	testenv.WriteFile(t, good, `[]`)
	for _, tc := range []struct{ options, want string }{
		{`"retry": {"first": "9223372036854775807ns", "max": "9223372036854775807ns"}`, "retry first must be between 0 and 8760h0m0s"},
		{`"delivery_log": {"max_entries": 8400000000000000000}`, "delivery_log max_entries must be between 0 and 2147483647"},
		{`"cache_size": 2147483648`, "cache_size must be between 0 and 2147483647"},
		{`"workers": -1`, "workers must be between 0 and 2147483647"},
		{`"replay_window": "-1s"`, "replay_window must be between 0 and 8760h0m0s"},
		{`"rate_limit": {"requests": -5}`, "rate_limit requests must be between 0 and 2147483647"},
		{`"retry": {"attempts": 3, "first": "-1s", "max": "1s"}`, "retry first must be between 0 and 8760h0m0s"},
		{`"dead_letters": {"max_bytes": -1}`, "dead_letters: max_bytes must not be negative"},
		{`"max_body": -1`, "max_body and max_bodies_in_flight must not be negative"},
		{`"upstream": {"url": "http://127.0.0.1:1", "timeout": "9000h"}`, "upstream timeout must be between 0 and 8760h0m0s"},
		{`"upstream": {"url": "http://127.0.0.1:1", "headers": {"X-Tenant": "a\r\nb"}}`, "upstream: header X-Tenant: its value is not a header value"},
		{`"upstream": {"url": "http://127.0.0.1:1", "bearer_token": "t\r\nX-Evil: 1"}`, "upstream: bearer_token: not a header value"},
		{`"redis": {"addrs": ["127.0.0.1:1"]}, "sync_from_codemie": {"bearer_token": "t\r\nX-Evil: 1"}`, "sync_from_codemie: bearer_token: not a header value"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			handler := `{"handler": "codemie_webhooks", `
			if !strings.Contains(tc.options, `"redis"`) {
				handler += `"integrations_file": ` + strconv.Quote(good) + `, `
			}
			if !strings.Contains(tc.options, `"upstream"`) {
				handler += `"upstream": {"url": "http://127.0.0.1:1"}, `
			}
			handler += tc.options + `}`
			cfg := `{"admin": {"disabled": true}, "apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [` + handler + `]}]}}}}}`
			err := caddy.Load([]byte(cfg), true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBadReloadKeepsServing loads, over a running server, configs that
// pass the Caddyfile but are refused at provisioning: the reload fails and
// the running configuration keeps answering.
func TestBadReloadKeepsServing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	testenv.WriteFile(t, good, `[]`)
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, fmt.Sprintf("codemie_webhooks {\n\t\tintegrations_file %s\n\t\tupstream %s\n\t}", good, api.URL))
	for _, options := range []string{
		"integrations_file " + good + "\n\t\tupstream " + api.URL + "\n\t\tdelivery async",
		"integrations_file " + good + "\n\t\tupstream " + api.URL + "\n\t\tredis 127.0.0.1:1",
	} {
		bad := strings.Replace(c.Config, "codemie_webhooks {", "codemie_webhooks {\n\t\t"+options+"\n\t\t# ", 1)
		if err := testenv.TryLoadCaddyfile(bad); err == nil {
			t.Fatalf("config accepted:\n%s", bad)
		}
		if status, _, _ := c.Post(t, "/code-assistant-api/v1/webhooks/unknown", "{}"); status != http.StatusBadRequest {
			t.Fatalf("after a refused reload: status %d, want the running config's 400", status)
		}
	}
}
