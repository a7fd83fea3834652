package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// asyncSite is the handler with durable delivery and a fast retry policy.
func asyncSite(redisAddr, apiURL, extra string) string {
	return testenv.RedisSite(redisAddr, apiURL, "rate_limit off", "retry 12 10ms 200ms", "claim_after 1s", extra).String()
}

// queueState reads the queue's keys straight from Redis.
func queueState(t *testing.T, r *testenv.Redis) (length, retrying, dead int64) {
	t.Helper()
	ctx := context.Background()
	return r.Client.XLen(ctx, "{codemie:webhooks:queue}").Val(),
		r.Client.ZCard(ctx, "{codemie:webhooks:queue}:due").Val(),
		r.Client.XLen(ctx, "codemie:webhooks:dead").Val()
}

// deadDeliveries lists the delivery ids in the dead stream.
func deadDeliveries(t *testing.T, r *testenv.Redis) map[string]bool {
	t.Helper()
	msgs, err := r.Client.XRange(context.Background(), "codemie:webhooks:dead", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range msgs {
		var meta struct {
			DeliveryID string `json:"delivery_id"`
		}
		if err := json.Unmarshal([]byte(m.Values["meta"].(string)), &meta); err != nil {
			t.Fatal(err)
		}
		out[meta.DeliveryID] = true
	}
	return out
}

func TestAsyncAnswersOnceQueued(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	api.HangOn(func(testenv.Call) bool { return true })
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))

	// Answered while CodeMie has not answered: the webhook is in the queue.
	status, _, answer := postSigned(t, c, "wf", "d-async", `{"action":"opened"}`)
	if status != 200 || answer != invoked {
		t.Fatalf("got %d %s", status, answer)
	}
	api.HangOn(nil) // CodeMie answers now
	testenv.Eventually(t, "the queued webhook to be dispatched", func() bool { return api.Succeeded()["d-async"] >= 1 })
	call := api.Calls()[len(api.Calls())-1]
	if call.String() != "POST /v1/workflows/wf-1/executions" || call.Body != `{"user_input":"{\"action\":\"opened\"}"}` {
		t.Errorf("call %s %s", call, call.Body)
	}
	testenv.Eventually(t, "the queue to empty", func() bool { l, rt, d := queueState(t, r); return l == 0 && rt == 0 && d == 0 })
	if v := metricValue(t, c, `caddy_codemie_webhooks_requests_total{outcome="enqueued"}`); v < 1 {
		t.Errorf("enqueued outcome not counted: %v", v)
	}
	testenv.Eventually(t, "the delivery age to be observed", func() bool {
		return metricValue(t, c, "caddy_codemie_webhooks_delivery_age_seconds_count") >= 1
	})
}

// TestNoneLostUnderFailures posts 1,000 webhooks while the API fails 30% of
// calls at random and is down entirely for a stretch: each is delivered
// exactly once or sits in the dead stream.
func TestNoneLostUnderFailures(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 11))
	api.FailWith(func(testenv.Call) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		if rng.Float64() < 0.3 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))

	const total = 1000
	var next atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < total; i = next.Add(1) - 1 {
				if i == total/3 {
					api.SetDown(true)
				}
				if i == 2*total/3 {
					api.SetDown(false)
				}
				if status, _, answer := postSigned(t, c, "wf", fmt.Sprint("n-", i), `{}`); status != 200 {
					t.Errorf("webhook %d: %d %s", i, status, answer)
				}
			}
		})
	}
	wg.Wait()
	api.SetDown(false)

	testenv.Eventually(t, "every webhook to be delivered or dead", func() bool {
		l, rt, _ := queueState(t, r)
		return l == 0 && rt == 0
	})
	succeeded, dead := api.Succeeded(), deadDeliveries(t, r)
	for i := range total {
		id := fmt.Sprint("n-", i)
		switch n := succeeded[id]; {
		case n == 1 && !dead[id]:
		case n == 0 && dead[id]:
		default:
			t.Errorf("%s: delivered %d times, dead %v", id, n, dead[id])
		}
	}
	t.Logf("%d delivered, %d dead, %d calls", len(succeeded), len(dead), len(api.Calls()))
	if v := metricValue(t, c, "caddy_codemie_webhooks_delivery_retries_total"); v < 1 {
		t.Errorf("retries not counted: %v", v)
	}
}

// TestCrashedInstanceIsReclaimed kills a Caddy process (SIGKILL) while it
// holds deliveries in flight; another instance reclaims and delivers them.
func TestCrashedInstanceIsReclaimed(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	api.HangOn(func(testenv.Call) bool { return true })

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := testenv.StartCaddyProcess(t, fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	%s
}
`, addr, asyncSite(r.Addr, api.URL, "workers 4")), addr)
	first := &testenv.Caddy{URL: "http://" + addr, Client: &http.Client{Timeout: 10 * time.Second}}
	const total = 10
	for i := range total {
		if status, _, answer := postSigned(t, first, "wf", fmt.Sprint("k-", i), `{}`); status != 200 {
			t.Fatalf("webhook %d: %d %s", i, status, answer)
		}
	}
	testenv.Eventually(t, "the first instance to hold 4 deliveries in flight", func() bool { return len(api.Calls()) == 4 })
	p.Kill()
	api.HangOn(nil)

	testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "workers 4"))
	testenv.Eventually(t, "every webhook to be delivered", func() bool {
		s := api.Succeeded()
		for i := range total {
			if s[fmt.Sprint("k-", i)] == 0 {
				return false
			}
		}
		return true
	})
	testenv.Eventually(t, "the queue to empty", func() bool { l, rt, d := queueState(t, r); return l == 0 && rt == 0 && d == 0 })
}

// TestRedisDownNeverAnswers200 stops Redis during a run: requests get 503
// while it is down, and nothing answered 200 is lost once it is back.
func TestRedisDownNeverAnswers200(t *testing.T) {
	r := testenv.StartPersistentRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "cache_ttl 1h"))

	accepted := map[string]bool{}
	post := func(id string) int {
		status, hdr, answer := postSigned(t, c, "wf", id, `{}`)
		switch status {
		case 200:
			accepted[id] = true
		case 503:
			if hdr.Get("Retry-After") == "" || answer != `{"detail":"Webhook queue unavailable, retry later"}` {
				t.Errorf("%s: 503 %s without Retry-After", id, answer)
			}
		default:
			t.Errorf("%s: %d %s", id, status, answer)
		}
		return status
	}
	for i := range 20 {
		post(fmt.Sprint("before-", i))
	}
	r.Stop()
	for i := range 20 {
		if post(fmt.Sprint("down-", i)) != 503 {
			t.Errorf("down-%d answered while Redis was down", i)
		}
	}
	r.Restart()
	// The first requests after the restart may still find broken
	// connections, and are answered 503: never 200 for what is not stored.
	testenv.Eventually(t, "Redis to take webhooks again", func() bool { return post("after-first") == 200 })
	for i := range 20 {
		post(fmt.Sprint("after-", i))
	}
	testenv.Eventually(t, "every accepted webhook to be delivered", func() bool {
		s := api.Succeeded()
		for id := range accepted {
			if s[id] == 0 {
				return false
			}
		}
		return true
	})
	for i := range 20 {
		if !accepted[fmt.Sprint("before-", i)] || !accepted[fmt.Sprint("after-", i)] {
			t.Errorf("webhook %d posted while Redis was up was not accepted", i)
		}
	}
}

// TestReloadUnderLoad reloads the configuration while webhooks arrive:
// nothing accepted is lost, and no goroutine is left behind.
func TestReloadUnderLoad(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "workers 4"))
	// Warm up, then count goroutines.
	postSigned(t, c, "wf", "warm-up", `{}`)
	testenv.Eventually(t, "the warm-up delivery", func() bool { return api.Succeeded()["warm-up"] == 1 })
	before := settledGoroutines(c)

	var accepted sync.Map
	var next atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprint("rl-", next.Add(1))
				// A keep-alive connection that a reload closes fails the
				// request on the client's side: then it was not accepted.
				if trySigned(c, "wf", id, `{}`) == 200 {
					accepted.Store(id, true)
				}
			}
		})
	}
	for i := range 5 {
		testenv.Eventually(t, "webhooks between reloads", func() bool { return int(next.Load()) > 50*(i+1) })
		cfg := strings.Replace(c.Config, "workers 4", fmt.Sprintf("workers %d", 3+i%2), 1)
		if i%2 == 1 {
			cfg = c.Config
		}
		testenv.LoadCaddyfile(t, cfg)
	}
	close(stop)
	wg.Wait()

	n := 0
	testenv.Eventually(t, "every accepted webhook to be delivered", func() bool {
		s := api.Succeeded()
		n = 0
		missing := false
		accepted.Range(func(k, _ any) bool {
			n++
			missing = missing || s[k.(string)] == 0
			return true
		})
		return !missing
	})
	if n < 100 {
		t.Errorf("only %d webhooks accepted during the reloads", n)
	}
	// Back to the configuration the count was taken with.
	testenv.LoadCaddyfile(t, c.Config)
	testenv.Eventually(t, "the goroutines of the reloads to end", func() bool { return settledGoroutines(c) <= before })
}

// settledGoroutines counts goroutines once idle keep-alive connections,
// which each hold goroutines of their own, are closed.
func settledGoroutines(c *testenv.Caddy) int {
	c.Client.CloseIdleConnections()
	dispatch.HTTPClient.CloseIdleConnections()
	return runtime.NumGoroutine()
}

func TestAdminDeadLetterReplay(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	adminPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""), fmt.Sprintf("admin 127.0.0.1:%d", adminPort))
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })

	if status, _, _ := postSigned(t, c, "wf", "d-dead", `{"secret":"`+bodyMark+`"}`); status != 200 {
		t.Fatal(status)
	}
	testenv.Eventually(t, "the webhook to be dead-lettered", func() bool { l, _, d := queueState(t, r); return d == 1 && l == 0 })

	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var stats struct{ Length, Pending, Retrying, Dead int64 }
	get("/codemie-webhooks/stats", &stats)
	if stats.Dead != 1 || stats.Length != 0 {
		t.Errorf("stats %+v", stats)
	}
	var list struct {
		Entries []map[string]any `json:"entries"`
	}
	get("/codemie-webhooks/dead?count=10", &list)
	if len(list.Entries) != 1 {
		t.Fatalf("dead letters %+v", list)
	}
	e := list.Entries[0]
	if e["delivery_id"] != "d-dead" || e["last_status"] != float64(404) || e["attempts"] != float64(1) ||
		e["last_step"] != "create workflow execution" {
		t.Errorf("dead letter %+v", e)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), bodyMark) || strings.Contains(string(raw), ghSecret) {
		t.Errorf("the dead-letter list shows the body or a secret: %s", raw)
	}

	post := func(method, path string) int {
		req, _ := http.NewRequest(method, admin+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(http.MethodGet, "/codemie-webhooks/dead/"+e["id"].(string)+"/replay"); s != 405 {
		t.Errorf("GET replay: %d, want 405", s)
	}
	api.FailWith(nil)
	if s := post(http.MethodPost, "/codemie-webhooks/dead/"+e["id"].(string)+"/replay"); s != 204 {
		t.Fatalf("replay: %d", s)
	}
	testenv.Eventually(t, "the replayed webhook to be delivered", func() bool { return api.Succeeded()["d-dead"] == 1 })
	if s := post(http.MethodPost, "/codemie-webhooks/dead/"+e["id"].(string)+"/replay"); s != 404 {
		t.Errorf("replaying again: %d, want 404", s)
	}

	// Delete and replay-all.
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })
	for _, id := range []string{"d-x", "d-y"} {
		postSigned(t, c, "wf", id, `{}`)
	}
	testenv.Eventually(t, "two dead letters", func() bool { l, _, d := queueState(t, r); return d == 2 && l == 0 })
	get("/codemie-webhooks/dead", &list)
	if s := post(http.MethodDelete, "/codemie-webhooks/dead/"+list.Entries[0]["id"].(string)); s != 204 {
		t.Errorf("delete: %d", s)
	}
	api.FailWith(nil)
	var replayed struct{ Replayed int }
	resp, err := http.Post(admin+"/codemie-webhooks/dead/replay-all", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&replayed)
	resp.Body.Close()
	if replayed.Replayed != 1 {
		t.Errorf("replay-all replayed %d, want 1", replayed.Replayed)
	}
	testenv.Eventually(t, "replay-all to deliver", func() bool { return api.Succeeded()[list.Entries[1]["delivery_id"].(string)] == 1 })
}

// trySigned posts like postSigned but reports a failed round trip as 0.
func trySigned(c *testenv.Caddy, id, delivery, body string) int {
	req, err := http.NewRequest(http.MethodPost, c.URL+webhooks+id, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("X-Hub-Signature-256", testenv.SignGitHub256(ghSecret, body))
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", delivery)
	resp, err := c.Client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWorkersOff takes webhooks in on a handler with workers off; the
// handler that dispatches is another one on the same Redis and prefix, as
// another instance would be.
func TestWorkersOff(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "")+fmt.Sprintf(`
	route /intake/* {
		codemie_webhooks {
			redis %s
			rate_limit off
			upstream %s
			workers off
		}
	}`, r.Addr, api.URL))
	status, _, answer := c.Post(t, "/intake/wf", "{}", "X-Hub-Signature-256: "+testenv.SignGitHub256(ghSecret, "{}"), "X-GitHub-Delivery: d-intake")
	if status != 200 || answer != invoked {
		t.Fatalf("intake: %d %s", status, answer)
	}
	testenv.Eventually(t, "the other handler to dispatch it", func() bool { return api.Succeeded()["d-intake"] == 1 })
}

// TestReindexTriggersCollapse: while a reindex of a datasource is queued,
// more triggers of its webhook are answered as accepted and covered by it:
// the queue holds one reindex, and the metrics count the others. (On a Redis
// Cluster nothing collapses: the marker must be set with the entry.)
func TestReindexTriggersCollapse(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "ds", "datasource", "ds-provider")
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "workers off"))
	const collapsed = `caddy_codemie_webhooks_requests_total{outcome="collapsed"}`
	before := max(metricValue(t, c, collapsed), 0) // -1: not counted yet
	for i := range 3 {
		status, _, answer := postSigned(t, c, "ds", "push-"+strconv.Itoa(i), `{}`)
		if status != http.StatusOK || answer != invoked {
			t.Fatalf("trigger %d: %d %s", i, status, answer)
		}
	}
	if length, _, _ := queueState(t, r); length != 1 {
		t.Errorf("%d reindexes queued, want 1", length)
	}
	if v := metricValue(t, c, collapsed) - before; v != 2 {
		t.Errorf("%v triggers counted as collapsed, want 2", v)
	}
	// Another resource type is never collapsed.
	addWebhook(t, r, "wf", "workflow", "wf-1")
	for i := range 2 {
		postSigned(t, c, "wf", "run-"+strconv.Itoa(i), `{}`)
	}
	if length, _, _ := queueState(t, r); length != 3 {
		t.Errorf("%d entries queued, want the reindex and two workflow runs", length)
	}
}

// TestQueueVisiblePerWebhook: the admin stats and the metrics show the
// webhooks with the most waiting, from the tickets in their lanes.
func TestQueueVisiblePerWebhook(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	addWebhook(t, r, "wf2", "workflow", "wf-2")
	adminPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "workers off"), fmt.Sprintf("admin 127.0.0.1:%d", adminPort))
	for i, id := range []string{"wf", "wf", "wf", "wf2"} {
		if status, _, _ := postSigned(t, c, id, fmt.Sprint("d-", i), `{}`); status != 200 {
			t.Fatal(status)
		}
	}
	lane := r.Client.LRange(context.Background(), "{codemie:webhooks:queue}:lane:wf", 0, -1).Val()
	if len(lane) != 3 || !strings.HasSuffix(lane[0], "|wf|workflow:wf-1") {
		t.Errorf("lane of wf: %q", lane)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/codemie-webhooks/stats", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		Webhooks []struct {
			WebhookID string `json:"webhook_id"`
			Waiting   int64  `json:"waiting"`
		} `json:"webhooks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Webhooks) != 2 || stats.Webhooks[0].WebhookID != "wf" || stats.Webhooks[0].Waiting != 3 || stats.Webhooks[1].Waiting != 1 {
		t.Errorf("stats per webhook %+v", stats.Webhooks)
	}
	testenv.Eventually(t, "the per-webhook gauges (refreshed every 5 s)", func() bool {
		return metricValue(t, c, `caddy_codemie_webhooks_queue_webhook_waiting{queue="codemie:webhooks:",webhook="wf"}`) == 3 &&
			metricValue(t, c, `caddy_codemie_webhooks_queue_webhook_waiting{queue="codemie:webhooks:",webhook="wf2"}`) == 1
	})
}
