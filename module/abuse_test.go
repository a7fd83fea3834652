package module_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/body"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// fileSite serves one GitHub-signed workflow webhook, "big", from an
// integrations file, with extra options, and the metrics.
func fileSite(t *testing.T, extra string) (*testenv.Caddy, *testenv.CodeMie) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "integrations.json")
	testenv.WriteFile(t, file, `[{"webhook_id":"big","is_enabled":true,"github_webhook_secret":"`+ghSecret+
		`","resource_type":"workflow","resource_id":"wf-1"}]`)
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, testenv.Site{Store: "integrations_file " + file, Upstream: api.URL, Options: []string{extra}}.String())
	return c, api
}

// openBody starts a POST to webhook id that announces length bytes of
// body and sends only the first part of it, with a well-formed GitHub
// signature (a wrong one: the body is read before it is checked); the
// connection stays open until the test ends.
func openBody(t *testing.T, c *testenv.Caddy, id string, length int, part string) net.Conn {
	t.Helper()
	return openRequest(t, c, id, length, part, "X-Hub-Signature-256: sha256="+strings.Repeat("0", 64))
}

// openRequest is openBody with the header lines given, and no other.
func openRequest(t *testing.T, c *testenv.Caddy, id string, length int, part string, header ...string) net.Conn {
	t.Helper()
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var extra strings.Builder
	for _, line := range header {
		extra.WriteString(line + "\r\n")
	}
	_, err = fmt.Fprintf(conn, "POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"X-GitHub-Event: push\r\n%sContent-Length: %d\r\n\r\n%s", webhooks, id, u.Host, extra.String(), length, part)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// readStatus reads the status code of the answer on conn.
func readStatus(t *testing.T, conn net.Conn) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBodyMemoryUnderHeaderOnlyFlood: 40 connections announce 25 MiB
// bodies and send none of it. Before, each got a 25 MiB buffer at once
// (1 GB in all); a body now costs memory only as its bytes arrive.
func TestBodyMemoryUnderHeaderOnlyFlood(t *testing.T) {
	const conns, bound = 40, 16 << 20
	c, _ := fileSite(t, "")
	before := heapInUse()
	for range conns {
		openBody(t, c, "big", 25<<20, "")
	}
	testenv.Eventually(t, "every body to be in flight", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_bodies_in_flight") == conns
	})
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d KiB for %d connections announcing 25 MiB each", grown>>10, conns)
	if grown > bound {
		t.Errorf("heap grew by %d bytes, over the bound of %d", grown, bound)
	}
	if v := metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight"); v > conns*64<<10 {
		t.Errorf("body_bytes_in_flight %v for bodies that sent nothing", v)
	}
}

// TestBodyBudget: bodies in flight share max_bodies_in_flight; one that
// would go past it gets 503 and Retry-After, and goes through once the
// others are done.
func TestBodyBudget(t *testing.T) {
	c, _ := fileSite(t, "max_body 1000KB\n\t\t\tmax_bodies_in_flight 1MiB")
	const refusals = `caddy_codemie_webhooks_requests_total{outcome="body_budget"}`
	before := max(metricValue(t, c, refusals), 0) // counters outlive configs
	const announced = 700_000
	slow := openBody(t, c, "big", announced, strings.Repeat("a", announced-50_000))
	testenv.Eventually(t, "the slow body to hold its buffer", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight") >= announced
	})

	body := `{"x":"` + strings.Repeat("b", 500_000) + `"}`
	status, header, answer := postSigned(t, c, "big", "d-budget", body)
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" ||
		answer != `{"detail":"Too many request bodies in flight, retry later"}` {
		t.Fatalf("over the budget: %d %v %s", status, header, answer)
	}
	// A refused body that keeps trickling is answered at once, and its
	// connection closed: the server does not wait for the rest of it.
	trickling := openBody(t, c, "big", 600_000, strings.Repeat("c", 400_000))
	if got := readStatus(t, trickling); got != http.StatusServiceUnavailable {
		t.Errorf("a refused body still being sent: %d, want 503 at once", got)
	}
	if _, err := io.WriteString(slow, strings.Repeat("a", 50_000)); err != nil {
		t.Fatal(err)
	}
	if got := readStatus(t, slow); got != http.StatusUnauthorized {
		t.Errorf("the slow, unsigned body: %d, want 401", got)
	}
	testenv.Eventually(t, "the budget to be given back", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight") == 0
	})
	if status, _, answer := postSigned(t, c, "big", "d-budget", body); status != http.StatusOK {
		t.Errorf("retried once the budget is free: %d %s", status, answer)
	}
	if v := metricValue(t, c, refusals) - before; v != 2 {
		t.Errorf("body_budget outcomes: %v, want 2", v)
	}
}

// TestBodyShareOfOneWebhook: one webhook's bodies hold at most half of
// max_bodies_in_flight: a flood of bodies with well-formed, wrong
// signatures to one webhook (read before they are found wrong) leaves the
// other webhooks the rest.
func TestBodyShareOfOneWebhook(t *testing.T) {
	file := filepath.Join(t.TempDir(), "integrations.json")
	record := func(id string) string {
		return `{"webhook_id":"` + id + `","is_enabled":true,"github_webhook_secret":"` + ghSecret +
			`","resource_type":"workflow","resource_id":"wf-1"}`
	}
	testenv.WriteFile(t, file, "["+record("big")+","+record("other")+"]")
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, testenv.Site{Store: "integrations_file " + file, Upstream: api.URL,
		Options: []string{"max_body 300KB\n\t\t\tmax_bodies_in_flight 1MiB"}}.String())
	const announced = 300_000
	openBody(t, c, "big", announced, strings.Repeat("a", announced-1000))
	testenv.Eventually(t, "the flood's body to hold its buffer", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight") >= announced
	})
	body := `{"x":"` + strings.Repeat("b", 250_000) + `"}`
	if status, _, answer := postSigned(t, c, "big", "d-share-1", body); status != http.StatusServiceUnavailable {
		t.Errorf("a second body to the flooded webhook, past half the budget: %d %s, want 503", status, answer)
	}
	if status, _, answer := postSigned(t, c, "other", "d-share-2", body); status != http.StatusOK {
		t.Errorf("another webhook's body, within the budget: %d %s, want 200", status, answer)
	}
}

// TestBodyThatNeverStarts: a body whose first byte does not come within
// FirstByteTimeout is answered 408 then, whatever body_timeout allows the
// rest: an idle request held its stream and a buffer for all of it.
func TestBodyThatNeverStarts(t *testing.T) {
	c, _ := fileSite(t, "body_timeout 1h")
	const start = `{"a":`
	started := openBody(t, c, "big", len(start)+2, start)
	testenv.Eventually(t, "the started body to be read", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight") > 0
	})
	began := time.Now()
	if got := readStatus(t, openBody(t, c, "big", 100, "")); got != http.StatusRequestTimeout {
		t.Errorf("a body that never starts: %d, want 408", got)
	}
	t.Logf("answered after %v (FirstByteTimeout %v)", time.Since(began).Round(time.Millisecond), body.FirstByteTimeout)
	// The one that started, before it, is given body_timeout for the rest.
	if _, err := io.WriteString(started, "1}"); err != nil {
		t.Fatal(err)
	}
	if got := readStatus(t, started); got != http.StatusUnauthorized {
		t.Errorf("a body that started, ended later: %d, want 401 (its signature is wrong)", got)
	}
}

// TestSlowBody: a sender that stops sending its body is answered 408
// once body_timeout has passed, instead of holding the connection.
func TestSlowBody(t *testing.T) {
	c, _ := fileSite(t, "body_timeout 300ms")
	const timeouts = `caddy_codemie_webhooks_requests_total{outcome="body_timeout"}`
	before := max(metricValue(t, c, timeouts), 0) // counters outlive configs
	conn := openBody(t, c, "big", 100, `{"a":`)
	if got := readStatus(t, conn); got != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", got)
	}
	if v := metricValue(t, c, timeouts) - before; v != 1 {
		t.Errorf("body_timeout outcomes: %v, want 1", v)
	}
	// A sender at a normal pace is not affected.
	if status, _, answer := postSigned(t, c, "big", "d-ok", `{"action":"opened"}`); status != http.StatusOK {
		t.Errorf("a normal request: %d %s", status, answer)
	}
}

// TestAnsweredBeforeTheBody: an answer given before the body is read (an
// unknown id; a signature missing or malformed, which no body can mend)
// closes the connection instead of waiting for a body the sender does not
// send, and holds none of the bodies' budget; an answer after it keeps the
// connection.
func TestAnsweredBeforeTheBody(t *testing.T) {
	c, _ := fileSite(t, "body_timeout 1h")
	for _, tc := range []struct {
		name   string
		conn   net.Conn
		status int
		detail string
		closes bool
	}{
		{"unknown id", openBody(t, c, "nope", 1000, ""), http.StatusBadRequest, `{"detail":"Webhook with ID 'nope' not found or not enabled"}`, true},
		{"no signature", openRequest(t, c, "big", 1000, ""), http.StatusUnauthorized, `{"detail":"Missing GitHub webhook signature header"}`, true},
		{"malformed signature", openRequest(t, c, "big", 1000, "", "X-Hub-Signature-256: sha256=zz"), http.StatusUnauthorized,
			`{"detail":"Invalid GitHub webhook signature"}`, true},
		// Without a body, there is nothing to wait for: the connection stays.
		{"no signature, no body", openRequest(t, c, "big", 0, ""), http.StatusUnauthorized, `{"detail":"Missing GitHub webhook signature header"}`, false},
	} {
		_ = tc.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(tc.conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer before the body: %v", tc.name, err)
		}
		detail, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || string(detail) != tc.detail || resp.Close != tc.closes {
			t.Errorf("%s: %d %s, closes the connection: %v; want %d %s, closing %v", tc.name, resp.StatusCode, detail, resp.Close, tc.status, tc.detail, tc.closes)
		}
		// Closed within unreadGrace, not once net/http has read what it
		// reads of an unread body: that had no deadline (body_timeout is an
		// hour here), and the sender sent none of it.
		if !tc.closes {
			continue
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: after the answer, %v; want the connection closed", tc.name, err)
		}
	}
	if v := metricValue(t, c, "caddy_codemie_webhooks_body_bytes_in_flight"); v != 0 {
		t.Errorf("body_bytes_in_flight %v, want 0", v)
	}
	if status, h, answer := postSigned(t, c, "big", "d-kept", `{"action":"opened"}`); status != http.StatusOK || h.Get("Connection") == "close" {
		t.Errorf("a request read whole: %d %s, Connection %q", status, answer, h.Get("Connection"))
	}
}

// TestRefusedSenderReadsTheAnswer: a sender answered before it has sent
// all of its body, still sending at full speed, reads the answer instead
// of a connection reset. Closing at once with unread bytes resets the
// connection, and the sender's TCP stack drops the answer with it: with
// 256 KiB or less left, net/http reads it first; with more, it answers,
// stops writing and waits before it closes.
func TestRefusedSenderReadsTheAnswer(t *testing.T) {
	const kb200, mib1 = 200_000, 1 << 20
	for _, tc := range []struct {
		name, options, id string
		header            []string
		status            int
		sizes             []int
	}{
		{"too large", "max_body 100KB", "big", nil, http.StatusRequestEntityTooLarge, []int{kb200, mib1}},
		{"unknown id", "", "nope", nil, http.StatusBadRequest, []int{kb200, mib1}},
		{"no signature", "", "big", []string{"X-GitHub-Event: push"}, http.StatusUnauthorized, []int{kb200, mib1}},
		// net/http reads nothing of the body of a request that says
		// Connection: close before it closes the connection. (Past 256
		// KiB unread, it is reset, as without the plugin.)
		{"unknown id, the sender closing", "", "nope", []string{"Connection: close"}, http.StatusBadRequest, []int{kb200}},
	} {
		c, _ := fileSite(t, tc.options)
		for _, size := range tc.sizes {
			body := `{"x":"` + strings.Repeat("a", size) + `"}`
			for range 10 {
				if status, _, answer := c.Post(t, webhooks+tc.id, body, tc.header...); status != tc.status {
					t.Fatalf("%s, %d bytes: %d %s, want %d", tc.name, size, status, answer, tc.status)
				}
			}
		}
	}
}

// TestRefusedSenderAwaitingContinue: a sender that waits for 100 Continue
// before its body, answered before it, gets the answer at once and sends
// nothing: net/http tried to read the body that was never asked for until
// the sender's own wait (here as long as unreadGrace, 1 s) ran out, then raced
// it, and half of the answers were lost to resets.
func TestRefusedSenderAwaitingContinue(t *testing.T) {
	c, _ := fileSite(t, "max_body 100KB")
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Second}} // unreadGrace
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		id     string
		size   int
		status int
	}{{"nope", 50_000, http.StatusBadRequest}, {"big", 2 << 20, http.StatusRequestEntityTooLarge}} {
		for range 10 {
			req, _ := http.NewRequest(http.MethodPost, c.URL+webhooks+tc.id, strings.NewReader(strings.Repeat("a", tc.size)))
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.id, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: %d, want %d", tc.id, resp.StatusCode, tc.status)
			}
		}
	}
	// One whose body is read is answered as any other.
	body := `{"action":"opened"}`
	req, _ := http.NewRequest(http.MethodPost, c.URL+webhooks+"big", strings.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-Hub-Signature-256", testenv.SignGitHub256(ghSecret, body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Errorf("a body asked for and read: %d, closing %v; want 200, kept", resp.StatusCode, resp.Close)
	}
}

// TestMalformedButDisabled: a disabled record is answered as a disabled
// one, like an unknown id, even when another of its fields is malformed;
// an enabled malformed record is a 500.
func TestMalformedButDisabled(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	r.Client.HSet(ctx, "codemie:webhooks:{off-bad}", "is_enabled", "false", "github_require_sha256", "maybe")
	r.Client.HSet(ctx, "codemie:webhooks:{unset-bad}", "gitlab_webhook_token", "\n")
	r.Client.HSet(ctx, "codemie:webhooks:{on-bad}", "is_enabled", "true", "github_require_sha256", "maybe")
	r.Client.HSet(ctx, "codemie:webhooks:{on-nosecret}", "is_enabled", "true", "github_webhook_secret", "\r\n",
		"resource_type", "workflow", "resource_id", "wf")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	for _, tc := range []struct {
		id     string
		status int
		body   string
	}{
		{"off-bad", 400, notFound("off-bad")},
		{"unset-bad", 400, notFound("unset-bad")},
		{"never-stored", 400, notFound("never-stored")},
		{"on-bad", 500, `{"detail":"Webhook processing failed"}`},
		// A secret of only line breaks does not turn the check off.
		{"on-nosecret", 500, `{"detail":"Webhook processing failed"}`},
	} {
		if status, _, body := c.Post(t, webhooks+tc.id, "{}"); status != tc.status || body != tc.body {
			t.Errorf("%s: %d %s, want %d %s", tc.id, status, body, tc.status, tc.body)
		}
	}
	if len(api.Calls()) != 0 {
		t.Errorf("calls made: %v", api.Calls())
	}
}

// TestReplayWithoutTheDeliveryHeader: a captured GitHub request replayed
// with its X-GitHub-Delivery removed is known by its body's digest, which
// the guard records with the delivery id: a duplicate. A secure-header
// sender with no delivery id likewise. A sender's own id decides when it
// gives one: another id is another delivery, even with the same body, as
// the CodeMie backend would trigger it.
func TestReplayWithoutTheDeliveryHeader(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "gh", "workflow", "wf-1")
	r.Client.HSet(context.Background(), "codemie:webhooks:{hdr}", "is_enabled", "true", "secure_header_name", "X-Webhook-Key",
		"secure_header_value", hdrSecret, "resource_type", "workflow", "resource_id", "wf-2")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	const body = `{"action":"opened","number":7}`
	const duplicate = `{"message":"Duplicate delivery ignored"}`
	for _, tc := range []struct {
		name, delivery, body, want string
	}{
		{"first", "d-1", body, invoked},
		{"delivery header removed", "", body, duplicate},
		{"removed again", "", body, duplicate},
		{"same delivery id", "d-1", body, duplicate},
		{"another delivery id, same body", "d-2", body, invoked},
		{"another body, no delivery id", "", `{"action":"opened","number":8}`, invoked},
	} {
		if status, _, got := postSigned(t, c, "gh", tc.delivery, tc.body); status != 200 || got != tc.want {
			t.Errorf("github, %s: %d %s, want %s", tc.name, status, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"first", body, invoked},
		{"replayed", body, duplicate},
		{"another body", `{"n":2}`, invoked},
	} {
		if status, _, got := c.Post(t, webhooks+"hdr", tc.body, "X-Webhook-Key: "+hdrSecret); status != 200 || got != tc.want {
			t.Errorf("secure header, %s: %d %s, want %s", tc.name, status, got, tc.want)
		}
	}
}

// TestDeeplyNestedBody: a signed body of millions of nested brackets is
// answered as a body that is not JSON is, by a filter expression and by an
// event filter on a form-encoded delivery, and a form-encoded one is
// dispatched as text. gjson's validation recursed once per level, and such
// a body overflowed the goroutine's stack: a fatal error that stopped the
// process. The stack is capped here, so a regression fails fast.
func TestDeeplyNestedBody(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(64 << 20))
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	addWebhook(t, r, "expr", "workflow", "wf-1")
	r.Client.HSet(ctx, "codemie:webhooks:{expr}", "filter", `body.action == "opened"`)
	addWebhook(t, r, "events", "workflow", "wf-2")
	r.Client.HSet(ctx, "codemie:webhooks:{events}", "github_event_filter", "pull_request.opened")
	addWebhook(t, r, "plain", "workflow", "wf-3")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))
	const jsonType, formType = "Content-Type: application/json", "Content-Type: application/x-www-form-urlencoded"
	post := func(id, delivery, contentType, body string) (int, string) {
		status, _, answer := c.Post(t, webhooks+id, body, contentType, "X-GitHub-Event: pull_request",
			"X-GitHub-Delivery: "+delivery, "X-Hub-Signature-256: "+testenv.SignGitHub256(ghSecret, body))
		return status, answer
	}
	deep := `{"action":"opened","x":` + strings.Repeat("[", 8<<20)
	for _, tc := range []struct {
		name, id, contentType, notJSON string
	}{
		{"filter expression", "expr", jsonType, `{"action":"opened"`},
		{"event filter, form-encoded", "events", formType, "action=opened"},
		{"dispatched, form-encoded", "plain", formType, "action=opened"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus, want := post(tc.id, "not-json-"+tc.id, tc.contentType, tc.notJSON)
			if status, answer := post(tc.id, "deep-"+tc.id, tc.contentType, deep); status != wantStatus || answer != want {
				t.Errorf("deep body: %d %s; a body that is not JSON: %d %s", status, answer, wantStatus, want)
			}
		})
	}
	testenv.Eventually(t, "the deep form-encoded body dispatched", func() bool { return api.Succeeded()["deep-plain"] == 1 })
}

// stallRedis stalls r (DEBUG SLEEP) for seconds, runs during while it is
// stalled, and returns once the stall is over.
func stallRedis(t *testing.T, r *testenv.Redis, seconds int, during func()) {
	t.Helper()
	staller := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: time.Minute})
	defer staller.Close()
	probe := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: 100 * time.Millisecond})
	defer probe.Close()
	if err := probe.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan error, 1)
	go func() { stalled <- staller.Do(context.Background(), "DEBUG", "SLEEP", seconds).Err() }()
	testenv.Eventually(t, "Redis to stall", func() bool { return probe.Ping(context.Background()).Err() != nil })
	during()
	if err := <-stalled; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
}

// stallSite is the async handler with claim_after longer than the stalls,
// as by default: an instance that cannot reach Redis for longer is taken
// for dead, and another may redo a dispatch whose end it could not record.
// The integration is loaded before the stall, so that the stall meets the
// guard and the enqueue.
func stallSite(t *testing.T, extra string) (*testenv.Caddy, *testenv.Redis, *testenv.CodeMie) {
	t.Helper()
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	c := testenv.StartCaddy(t, strings.Replace(asyncSite(r.Addr, api.URL, extra), "claim_after 1s", "claim_after 1m", 1))
	c.Client.Timeout = 9 * time.Second // GitHub gives up after 10 s
	if status, _, answer := postSigned(t, c, "wf", "warm", `{"n":-1}`); status != http.StatusOK {
		t.Fatalf("before the stall: %d %s", status, answer)
	}
	testenv.Eventually(t, "the first webhook to be dispatched", func() bool { return api.Succeeded()["warm"] == 1 })
	return c, r, api
}

// postAll posts n webhooks at once, deliveries stall-0 to stall-<n-1>.
func postAll(t *testing.T, c *testenv.Caddy, n int) (statuses []int, answers []string) {
	statuses, answers = make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i], _, answers[i] = postSigned(t, c, "wf", fmt.Sprintf("stall-%d", i), fmt.Sprintf(`{"n":%d}`, i))
		})
	}
	wg.Wait()
	return statuses, answers
}

// TestStalledRedis stalls Redis while webhooks arrive. Every request is
// answered within the client's 9 s (well under GitHub's 10 s), none is
// falsely answered as a duplicate, and after the sender retries every
// non-200, each webhook is dispatched exactly once.
func TestStalledRedis(t *testing.T) {
	c, r, api := stallSite(t, "")
	const n = 20
	var statuses []int
	var answers []string
	stallRedis(t, r, 8, func() { statuses, answers = postAll(t, c, n) })
	unavailable := 0
	for i := range n {
		switch {
		case answers[i] == `{"message":"Duplicate delivery ignored"}`:
			t.Errorf("delivery %d: a first delivery answered as a duplicate", i)
		case statuses[i] == http.StatusServiceUnavailable:
			unavailable++
		case statuses[i] != http.StatusOK:
			t.Errorf("delivery %d: %d %s", i, statuses[i], answers[i])
		}
	}
	t.Logf("%d of %d answered 503 during the stall", unavailable, n)
	if unavailable == 0 {
		t.Error("no request met the stall: the test proves nothing")
	}

	// The sender retries every non-200, as GitHub's Redeliver does.
	for i := range n {
		for try := 0; statuses[i] != http.StatusOK; try++ {
			if try == 20 {
				t.Fatalf("delivery %d: still %d %s after %d retries", i, statuses[i], answers[i], try)
			}
			statuses[i], _, answers[i] = postSigned(t, c, "wf", fmt.Sprintf("stall-%d", i), fmt.Sprintf(`{"n":%d}`, i))
		}
	}
	testenv.Eventually(t, "every webhook to be dispatched", func() bool { return len(api.Succeeded()) == n+1 })
	testenv.Eventually(t, "the queue to empty", func() bool { l, rt, d := queueState(t, r); return l == 0 && rt == 0 && d == 0 })
	for delivery, times := range api.Succeeded() {
		if times != 1 {
			t.Errorf("%s dispatched %d times", delivery, times)
		}
	}
}

// TestStalledRedisRunsNoScriptTwice: with the replay guard off nothing
// hides a script that Redis runs twice, so each webhook posted during a
// stall (and not retried) must be queued at most once. go-redis used to
// send a script again after a read timeout.
func TestStalledRedisRunsNoScriptTwice(t *testing.T) {
	c, r, api := stallSite(t, "replay_window off")
	stallRedis(t, r, 5, func() { postAll(t, c, 20) })
	ctx := context.Background()
	testenv.Eventually(t, "every queued webhook to be dispatched", func() bool {
		info, err := r.Client.XInfoStream(ctx, "{codemie:webhooks:queue}").Result()
		if err != nil {
			return false
		}
		dispatched := 0
		for _, times := range api.Succeeded() {
			dispatched += times
		}
		return info.Length == 0 && int64(dispatched) == info.EntriesAdded
	})
	for delivery, times := range api.Succeeded() {
		if times != 1 {
			t.Errorf("%s queued and dispatched %d times", delivery, times)
		}
	}
}
