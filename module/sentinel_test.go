package module_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestRedisSentinelFailover kills the master under a Sentinel: once the
// replica is promoted, webhooks are queued and delivered again, through the
// same configuration.
func TestRedisSentinelFailover(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, s.Master, "wf", "workflow", "wf-1")
	if err := s.Master.Client.Do(context.Background(), "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCaddy(t, fmt.Sprintf(`
	route %s* {
		codemie_webhooks {
			redis %s {
				master_name %s
			}
			rate_limit off
			cache_ttl 1h
			retry 5 10ms 100ms
			upstream %s
		}
	}`, webhooks, s.Addr, s.MasterName, api.URL))

	if status, _, answer := postSigned(t, c, "wf", "before", "{}"); status != 200 {
		t.Fatalf("before the failover: %d %s", status, answer)
	}
	testenv.Eventually(t, "the first delivery", func() bool { return api.Succeeded()["before"] == 1 })

	s.Master.Stop()
	s.WaitPromoted(t)
	testenv.Eventually(t, "webhooks to be queued on the new master", func() bool {
		status, _, _ := postSigned(t, c, "wf", "after", "{}")
		return status == 200
	})
	testenv.Eventually(t, "the delivery through the new master", func() bool { return api.Succeeded()["after"] >= 1 })
}
