package module_test

import (
	"net/http"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestRedeliveryAfterDeadLetter: once a delivery has died, the sender's
// redelivery of it (GitHub's "Redeliver" sends the same X-GitHub-Delivery)
// is accepted and dispatched, not answered as a duplicate.
func TestRedeliveryAfterDeadLetter(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, ""))

	if status, _, answer := postSigned(t, c, "wf", "d-redeliver", `{"n":1}`); status != 200 || answer != invoked {
		t.Fatalf("first delivery: %d %s", status, answer)
	}
	testenv.Eventually(t, "the delivery to die", func() bool { l, _, d := queueState(t, r); return d == 1 && l == 0 })

	api.FailWith(nil)
	if status, _, answer := postSigned(t, c, "wf", "d-redeliver", `{"n":1}`); status != 200 || answer != invoked {
		t.Fatalf("redelivery after the dead letter: %d %s, want 200 %s", status, answer, invoked)
	}
	testenv.Eventually(t, "the redelivery to be dispatched", func() bool { return api.Succeeded()["d-redeliver"] == 1 })
	if status, _, answer := postSigned(t, c, "wf", "d-redeliver", `{"n":1}`); answer != `{"message":"Duplicate delivery ignored"}` {
		t.Errorf("a third delivery, after a dispatched one: %d %s, want a duplicate", status, answer)
	}
}

// TestDeadLettersBounded: with dead_letters, the dead stream keeps its
// newest entries within the bounds, and what it drops is counted.
func TestDeadLettersBounded(t *testing.T) {
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	addWebhook(t, r, "wf", "workflow", "wf-1")
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })
	c := testenv.StartCaddy(t, asyncSite(r.Addr, api.URL, "dead_letters 2 1h 1MiB"))
	const dropped = "caddy_codemie_webhooks_delivery_dead_dropped_total"
	before := metricValue(t, c, dropped)
	if before < 0 {
		t.Fatalf("%s is not exposed", dropped)
	}
	for _, id := range []string{"d-1", "d-2", "d-3"} {
		if status, _, answer := postSigned(t, c, "wf", id, `{"id":"`+id+`"}`); status != 200 || answer != invoked {
			t.Fatalf("%s: %d %s", id, status, answer)
		}
	}
	testenv.Eventually(t, "the third dead letter to push one out", func() bool {
		l, _, d := queueState(t, r)
		return l == 0 && d == 2 && metricValue(t, c, dropped) == before+1
	})
	if n := len(deadDeliveries(t, r)); n != 2 {
		t.Errorf("%d dead letters, want 2", n)
	}
}
