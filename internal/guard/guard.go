// Package guard limits how often each webhook may trigger (a fixed window
// per webhook, shared by every Caddy instance through Redis) and drops
// deliveries already seen (replay guard), in one round trip.
package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// Verdict is what the guard decided for one request.
type Verdict int

// Verdicts.
const (
	// Admit lets the request through; its delivery id is now recorded.
	Admit Verdict = iota
	// Duplicate says the delivery id was seen within the replay window.
	Duplicate
	// Limited says the webhook is over its rate limit.
	Limited
)

// Decision is a Verdict and, for Limited, when the window ends.
type Decision struct {
	Verdict    Verdict
	RetryAfter time.Duration
}

// Config sets the limits. Zero values turn a guard off.
type Config struct {
	// Limit is the requests admitted per Window per webhook; 0: unlimited.
	Limit int
	// Window is the length of the fixed rate-limit window.
	Window time.Duration
	// ReplayWindow is how long a delivery id is remembered; 0: no replay guard.
	ReplayWindow time.Duration
}

// Off reports whether neither guard is on.
func (c Config) Off() bool { return c.Limit <= 0 && c.ReplayWindow <= 0 }

// Guard checks requests against the limits.
type Guard interface {
	// Check counts a request to webhook id against its rate limit and,
	// unless deliveryID is empty or already seen, records deliveryID.
	Check(ctx context.Context, id, deliveryID string) (Decision, error)
	// Forget drops a delivery id that Check recorded, for a request that was
	// not accepted after all, so that the sender's retry is not a duplicate.
	Forget(ctx context.Context, id, deliveryID string) error
}

// deliveryHeaders carry a sender's delivery id, most specific first; all
// stay the same when the sender retries or redelivers.
var deliveryHeaders = []string{
	"X-Github-Delivery",
	"X-Gitlab-Event-Uuid",
	"Idempotency-Key",
	"X-Atlassian-Webhook-Identifier",
	"Webhook-Id",
}

// maxDeliveryID is the longest delivery id kept as sent, in bytes.
const maxDeliveryID = 128

// DeliveryID returns the sender's id of this delivery, or "" when the
// request carries none. An id that is long or not printable ASCII is
// replaced by "sha256:" and its hex digest, so that it is safe in keys,
// logs and headers.
func DeliveryID(h http.Header) string {
	for _, name := range deliveryHeaders {
		if v := h[name]; len(v) == 1 && v[0] != "" {
			return SafeDeliveryID(v[0])
		}
	}
	return ""
}

// SafeDeliveryID returns a sender's delivery id as it is when it is
// printable ASCII of at most 128 bytes, and as "sha256:" and its hex digest
// otherwise.
func SafeDeliveryID(v string) string {
	if printable(v) && len(v) <= maxDeliveryID {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
