package module_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestRedisCluster runs everything against a 3-master Redis Cluster:
// config with change announcements, rate limit, replay guard, durable
// delivery, the CLI; and every key of one webhook is on one slot.
func TestRedisCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	addrs := strings.Join(cl.Addrs, " ")
	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + addrs, Upstream: api.URL, Options: []string{"rate_limit 3 1m", "cache_ttl 1h", "negative_ttl 1h", "retry 5 10ms 100ms", "claim_after 1s", "secrets_key " + cliKey}}.String())

	// Written by the CLI against the cluster, seen at once.
	env := []string{"CODEMIE_WEBHOOKS_REDIS=" + strings.Join(cl.Addrs, ","), "CODEMIE_WEBHOOKS_KEY=" + cliKey}
	if status, _, _ := c.Post(t, webhooks+"cl-1", "{}"); status != 400 {
		t.Fatalf("unknown webhook: %d", status)
	}
	var records []string
	for i := range 12 { // enough ids to land on every master
		records = append(records, fmt.Sprintf(`{"webhook_id":"cl-%d","is_enabled":true,"resource_type":"workflow",`+
			`"resource_id":"wf-1","github_webhook_secret":%q}`, i, ghSecret))
	}
	file := filepath.Join(t.TempDir(), "integrations.json")
	if err := os.WriteFile(file, []byte("["+strings.Join(records, ",")+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, env, "", 0, "import", file)
	if out := runCLI(t, env, "", 0, "list"); strings.Count(out, "\ncl-") != 12 {
		t.Errorf("list over the cluster's masters:\n%s", out)
	}

	status, _, answer := postSigned(t, c, "cl-1", "d-1", "{}")
	if status != 200 || answer != invoked {
		t.Fatalf("first delivery: %d %s", status, answer)
	}
	if status, _, answer := postSigned(t, c, "cl-1", "d-1", "{}"); answer != `{"message":"Duplicate delivery ignored"}` {
		t.Errorf("replay: %d %s", status, answer)
	}
	postSigned(t, c, "cl-1", "d-2", "{}")
	postSigned(t, c, "cl-1", "d-3", "{}")
	if status, _, _ := postSigned(t, c, "cl-1", "d-4", "{}"); status != 429 {
		t.Errorf("fourth delivery in the window: %d, want 429", status)
	}
	testenv.Eventually(t, "the queued webhooks to be delivered", func() bool {
		s := api.Succeeded()
		return s["d-1"] == 1 && s["d-2"] == 1 && s["d-3"] == 1
	})

	// One slot per webhook.
	slot := cl.Slot(t, "codemie:webhooks:{cl-1}")
	for _, key := range []string{"codemie:webhooks:{cl-1}:rl", "codemie:webhooks:{cl-1}:seen:d-1"} {
		if s := cl.Slot(t, key); s != slot {
			t.Errorf("%s is on slot %d, the record on %d", key, s, slot)
		}
		if n := cl.Client.Exists(ctx, key).Val(); n != 1 {
			t.Errorf("%s does not exist", key)
		}
	}
	testenv.Eventually(t, "the queue to empty", func() bool {
		return cl.Client.XLen(ctx, "{codemie:webhooks:queue}").Val() == 0
	})
}

// TestRedisClusterRoundTrips: on a Redis Cluster an accepted webhook costs
// two scripts, the guard on its webhook's slot and the enqueue on the
// stream's, and no read of its record once that is cached. (EVALSHA and
// HGETALL are all the request path sends once its scripts are loaded; the
// commands inside a script are counted by Redis too, so only these are
// summed. The delivery log's batches are EVALs, off the request's path,
// flushed whenever their batch is due: counted, they made this test
// depend on when that was, as the bench does not count them either.)
func TestRedisClusterRoundTrips(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	api := testenv.StartCodeMie(t)
	ctx := context.Background()
	cl.Client.HSet(ctx, "codemie:webhooks:{rt}", "is_enabled", "true", "resource_type", "workflow",
		"resource_id", "wf-1", "github_webhook_secret", ghSecret)
	c := testenv.StartCaddy(t, testenv.Site{Store: "redis " + strings.Join(cl.Addrs, " "), Upstream: api.URL, Options: []string{"cache_ttl 1h", "workers off"}}.String())
	calls := func(names ...string) int64 {
		var n atomic.Int64
		err := cl.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			stats, err := m.Info(ctx, "commandstats").Result()
			for _, line := range strings.Split(stats, "\r\n") {
				name, rest, ok := strings.Cut(line, ":calls=")
				if ok && slices.Contains(names, strings.TrimPrefix(name, "cmdstat_")) {
					v, _, _ := strings.Cut(rest, ",")
					c, _ := strconv.ParseInt(v, 10, 64)
					n.Add(c)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n.Load()
	}
	// Warm: the record cached (the cache is dropped once when the instance
	// has subscribed to change announcements), the scripts loaded.
	testenv.Eventually(t, "the subscription to change announcements", func() bool {
		var subscribed atomic.Int64
		_ = cl.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			subscribed.Add(m.PubSubNumSub(ctx, "codemie:webhooks:changed").Val()["codemie:webhooks:changed"])
			return nil
		})
		return subscribed.Load() > 0
	})
	warm := false
	for i := 0; i < 50 && !warm; i++ {
		before := calls("hgetall")
		if status, _, _ := postSigned(t, c, "rt", "warm-"+strconv.Itoa(i), "{}"); status != 200 {
			t.Fatalf("warming up: %d", status)
		}
		warm = calls("hgetall") == before
	}
	if !warm {
		t.Fatal("every request read the record again")
	}
	before := calls("evalsha", "hgetall")
	const requests = 5
	for i := range requests {
		if status, _, answer := postSigned(t, c, "rt", "d-"+strconv.Itoa(i), "{}"); status != 200 || answer != invoked {
			t.Fatalf("delivery %d: %d %s", i, status, answer)
		}
	}
	if n := calls("evalsha", "hgetall") - before; n != 2*requests {
		t.Errorf("%d commands on the cluster for %d accepted webhooks, want 2 each", n, requests)
	}
}
