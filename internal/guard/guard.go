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

	"github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
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
	// Collapsed says the request is admitted and covered by a reindex of
	// the same webhook that is queued and not yet started: nothing more is
	// queued.
	Collapsed
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
	// CollapseTTL is how long a queued reindex's marker is kept, at most:
	// past it, a trigger queues another reindex.
	CollapseTTL time.Duration
}

// Off reports whether neither guard is on.
func (c Config) Off() bool { return c.Limit <= 0 && c.ReplayWindow <= 0 }

// Guard checks requests against the limits.
type Guard interface {
	// Check counts a request to webhook id against its rate limit and,
	// unless d's Key is empty or already seen, records it (and the
	// digest of a delivery with an id).
	Check(ctx context.Context, id string, d Delivery) (Decision, error)
	// Forget drops what Check recorded of d, for a request that was not
	// accepted after all, so that the sender's retry is not a duplicate.
	Forget(ctx context.Context, id string, d Delivery) error
}

// Delivery is what tells one delivery from another, for the replay guard.
type Delivery struct {
	// ID is the sender's delivery id; "" when it gives none.
	ID string
	// Digest is "sha256:<hex>" of the body of an authenticated request;
	// "" for an unauthenticated one.
	Digest string
	// Collapse says the request triggers a datasource reindex, which one
	// queued and not yet taken covers (AdmitAndAppend only: the marker is
	// set with the entry, in one script).
	Collapse bool
}

// NewDelivery returns the Delivery of a request whose sender gave
// deliveryID ("" for none): the body's digest is kept only when the
// request is authenticated (a digest of what anyone could send proves
// nothing).
func NewDelivery(deliveryID string, authenticated bool, body []byte) Delivery {
	d := Delivery{ID: deliveryID}
	if authenticated {
		const prefix = "sha256:"
		var digest [len(prefix) + 2*sha256.Size]byte
		sum := sha256.Sum256(body)
		copy(digest[:], prefix)
		hex.Encode(digest[len(prefix):], sum[:])
		d.Digest = string(digest[:])
	}
	return d
}

// Key is what the guard checks: the sender's id when it gives one (even
// where the sender does not sign it, as GitHub's X-GitHub-Delivery: two
// deliveries may carry the same body, and the CodeMie backend triggers
// each), else the body's digest; "" when there is neither.
func (d Delivery) Key() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Digest
}

// also is what the guard records besides Key, unchecked: the digest of a
// delivery that has an id, so that the same request replayed without its
// delivery header is a duplicate.
func (d Delivery) also() string {
	if d.ID != "" {
		return d.Digest
	}
	return ""
}

// maxDeliveryID is the longest delivery id kept as sent, in bytes.
const maxDeliveryID = 128

// DeliveryID returns the sender's id of this delivery, or "" when the
// request carries none. An id that is long or not printable ASCII is
// replaced by "sha256:" and its hex digest, so that it is safe in keys,
// logs and headers.
func DeliveryID(h http.Header) string {
	for _, name := range headers.DeliveryID {
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
	if integration.PrintableASCII(v) && len(v) <= maxDeliveryID {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}
