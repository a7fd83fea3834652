package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
	"github.com/codemie-edge/caddy-webhooks/module"
)

// policyLogs counts the log lines of each level that name a maxmemory
// policy, by "level policy".
func policyLogs(t *testing.T, c *testenv.Caddy) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, line := range strings.Split(c.Logs(t), "\n") {
		var l struct {
			Level  string `json:"level"`
			Policy string `json:"maxmemory_policy"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Policy != "" {
			n[l.Level+" "+l.Policy]++
		}
	}
	return n
}

// infoReads returns what counts the INFO commands r has served to others
// than itself.
func infoReads(t *testing.T, r *testenv.Redis) func() int64 {
	own := int64(0)
	return func() int64 {
		t.Helper()
		stats, err := r.Client.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(stats, "cmdstat_info:calls=")
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("INFO commandstats: %v", err)
		}
		n -= own // this call is not counted yet, the earlier ones are
		own++
		return n
	}
}

// TestRedisEvictionPolicy: a Redis that may evict what the edge keeps is
// logged once per change, at a level that says what it can lose, and
// shown by a gauge whose series go with the configuration.
func TestRedisEvictionPolicy(t *testing.T) {
	defer module.SetEvictionInterval(20 * time.Millisecond)()
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	set := func(maxmemory, policy string) {
		t.Helper()
		if err := r.Client.Do(context.Background(), "CONFIG", "SET", "maxmemory", maxmemory, "maxmemory-policy", policy).Err(); err != nil {
			t.Fatal(err)
		}
	}
	set("64mb", "allkeys-lru")
	c := testenv.StartCaddy(t, testenv.RedisSite(r.Addr, api.URL).String())
	gauge := func(server, policy string) float64 {
		return metricValue(t, c, fmt.Sprintf(`caddy_codemie_webhooks_redis_maxmemory_policy{policy=%q,server=%q}`, policy, server))
	}

	reads := infoReads(t, r)
	for _, step := range []struct {
		maxmemory, policy string
		log               string // the line logged for it: "level policy"
	}{
		{"64mb", "allkeys-lru", "error allkeys-lru"},
		{"0", "allkeys-lru", "warn allkeys-lru"}, // nothing evicted until a limit is set
		{"64mb", "volatile-lru", "warn volatile-lru"},
		{"64mb", "noeviction", "info noeviction"},
	} {
		set(step.maxmemory, step.policy)
		testenv.Eventually(t, step.log+" to be logged", func() bool { return policyLogs(t, c)[step.log] > 0 })
		testenv.Eventually(t, step.policy+"'s gauge", func() bool { return gauge(r.Addr, step.policy) == 1 })
		// The next reads find no change: nothing more is logged.
		start := reads()
		testenv.Eventually(t, "the policy to be read again", func() bool { return reads() >= start+3 })
		if n := policyLogs(t, c)[step.log]; n != 1 {
			t.Errorf("%s logged %d times, want once", step.log, n)
		}
	}
	if v := gauge(r.Addr, "allkeys-lru"); v != -1 {
		t.Errorf("the gauge of a policy no longer in force: %v", v)
	}
	if logs := policyLogs(t, c); len(logs) != 4 {
		t.Errorf("logged %v: want each change once", logs)
	}

	// A user without INFO: the policy is unknown, said once.
	ctx := context.Background()
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "edge", "on", ">edge-password", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.LoadCaddyfile(t, strings.Replace(c.Config, "redis "+r.Addr,
		"redis "+r.Addr+" {\n\t\t\tusername edge\n\t\t\tpassword edge-password\n\t\t}", 1))
	testenv.Eventually(t, "the unknown policy's gauge", func() bool { return gauge(r.Addr, "unknown") == 1 })
	testenv.Eventually(t, "the old configuration's series to go", func() bool { return gauge(r.Addr, "noeviction") == -1 })
	if logs := c.Logs(t); !strings.Contains(logs, "allow the Redis user the INFO command (+info)") || strings.Contains(logs, "edge-password") {
		t.Errorf("the unreadable policy's log (want it said, without the password):\n%s", logs)
	}

	// A configuration without Redis: no series is left.
	route, metrics := strings.Index(c.Config, "route "), strings.Index(c.Config, "handle /metrics")
	testenv.LoadCaddyfile(t, c.Config[:route]+"respond /x 200\n\t"+c.Config[metrics:])
	testenv.Eventually(t, "the series to go with the configuration", func() bool { return gauge(r.Addr, "unknown") == -1 })
}

// TestRedisDatabaseOutOfRange: a db the server does not have cannot be
// known from the configuration; it is logged at start, and no webhook is
// answered 200.
func TestRedisDatabaseOutOfRange(t *testing.T) {
	r := testenv.StartRedis(t) // 16 databases
	api := testenv.StartCodeMie(t)
	c := testenv.StartCaddy(t, testenv.RedisSite(r.Addr+" {\n\t\t\tdb 99\n\t\t}", api.URL).String())
	testenv.Eventually(t, "the database's error to be logged", func() bool {
		for _, line := range strings.Split(c.Logs(t), "\n") {
			if strings.Contains(line, "cannot read Redis's maxmemory-policy") && strings.Contains(line, "DB index is out of range") {
				return true
			}
		}
		return false
	})
	if logs := c.Logs(t); strings.Contains(logs, "+info") {
		t.Errorf("an error that is no permission's blamed on INFO:\n%s", logs)
	}
	if status, _, answer := postSigned(t, c, "wf", "d-1", "{}"); status != http.StatusServiceUnavailable {
		t.Errorf("a webhook with its store's database missing: %d %s", status, answer)
	}
}
