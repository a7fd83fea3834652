package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// Headers of the signature schemes, canonical.
const (
	HeaderStandardID        = "Webhook-Id"
	HeaderStandardTimestamp = "Webhook-Timestamp"
	HeaderStandardSignature = "Webhook-Signature"
	HeaderSvixID            = "Svix-Id"
	HeaderSvixTimestamp     = "Svix-Timestamp"
	HeaderSvixSignature     = "Svix-Signature"
	HeaderSlackTimestamp    = "X-Slack-Request-Timestamp"
	HeaderSlackSignature    = "X-Slack-Signature"
	HeaderStripeSignature   = "Stripe-Signature"
	HeaderZendeskSignature  = "X-Zendesk-Webhook-Signature"
	HeaderZendeskTimestamp  = "X-Zendesk-Webhook-Signature-Timestamp"
	HeaderZendeskInvocation = "X-Zendesk-Webhook-Invocation-Id"
)

// maxSignatures bounds how many signatures of one request are tried.
const maxSignatures = 8

var (
	schemeMissing = Result{Outcome: SchemeSignatureMissing, Status: http.StatusUnauthorized, Message: answer.SchemeSignatureMissing}
	schemeInvalid = Result{Outcome: SchemeSignatureInvalid, Status: http.StatusUnauthorized, Message: answer.SchemeSignatureInvalid}
	schemeStale   = Result{Outcome: SignatureStale, Status: http.StatusUnauthorized, Message: answer.SignatureStale}
)

// signedHeaders are the headers a request's scheme signature comes in:
// the signature, and, for the schemes that have them, the signed
// timestamp and the sender's id of the event (or of the call).
type signedHeaders struct{ signature, timestamp, id string }

// readScheme reads the headers s's scheme signs with. ok is false when
// one the scheme needs is missing (or given more than once): no body can
// mend that, so RefusedByHeaders answers it before the body is read.
func readScheme(s *integration.Sender, h http.Header) (sh signedHeaders, ok bool) {
	switch s.SignatureScheme {
	case integration.SchemeStandardWebhooks:
		sh = signedHeaders{single(h, HeaderStandardSignature), single(h, HeaderStandardTimestamp), single(h, HeaderStandardID)}
		if sh.signature == "" {
			sh = signedHeaders{single(h, HeaderSvixSignature), single(h, HeaderSvixTimestamp), single(h, HeaderSvixID)}
		}
		return sh, sh.signature != "" && sh.timestamp != "" && sh.id != ""
	case integration.SchemeSlack:
		sh = signedHeaders{signature: single(h, HeaderSlackSignature), timestamp: single(h, HeaderSlackTimestamp)}
		return sh, sh.signature != "" && sh.timestamp != ""
	case integration.SchemeStripe:
		sh = signedHeaders{signature: single(h, HeaderStripeSignature)} // the timestamp is inside it
	case integration.SchemeZendesk:
		sh = signedHeaders{single(h, HeaderZendeskSignature), single(h, HeaderZendeskTimestamp), single(h, HeaderZendeskInvocation)}
		return sh, sh.signature != "" && sh.timestamp != ""
	case integration.SchemeHMACSHA256:
		sh = signedHeaders{signature: single(h, s.SignatureHeader)}
	}
	return sh, sh.signature != ""
}

// checkScheme verifies the sender's signature_scheme. A request that
// passes carries, in EventID, the sender's own id of the event, if the
// scheme has one.
func checkScheme(s *integration.Sender, h http.Header, body []byte, now time.Time) Result {
	sh, ok := readScheme(s, h)
	if !ok {
		return schemeMissing
	}
	keys := s.SignatureSecret // every secret is tried: rotation
	switch s.SignatureScheme {
	case integration.SchemeStandardWebhooks:
		return standardWebhooks(keys, s.SignatureTolerance, sh, body, now)
	case integration.SchemeSlack:
		return slack(keys, s.SignatureTolerance, sh, body, now)
	case integration.SchemeStripe:
		return stripe(keys, s.SignatureTolerance, sh, body, now)
	case integration.SchemeZendesk:
		return zendesk(keys, s.SignatureTolerance, sh, body, now)
	case integration.SchemeHMACSHA256:
		return genericHMAC(keys, s, sh, body)
	}
	return schemeInvalid // validated away when the record is decoded
}

// standardWebhooks: webhook-id, webhook-timestamp and webhook-signature
// ("v1,<base64>", several separated by spaces) over "{id}.{timestamp}.{body}"
// (https://www.standardwebhooks.com); Svix's svix-* headers likewise.
func standardWebhooks(keys integration.Secrets, tolerance time.Duration, sh signedHeaders, body []byte, now time.Time) Result {
	sums := ParseStandardSignatures(sh.signature)
	t, ok := ParseUnixTimestamp(sh.timestamp)
	if !ok || len(sums) == 0 || !hmacSHA256.matchAny(keys, sums, []byte(sh.id+"."+sh.timestamp+"."), body) {
		return schemeInvalid
	}
	return inWindow(t, now, tolerance, sh.id)
}

// ParseStandardSignatures returns the decoded v1 signatures of a
// webhook-signature header; other versions and malformed entries are
// skipped.
func ParseStandardSignatures(v string) [][]byte {
	var sums [][]byte
	for _, entry := range strings.Fields(v) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" || len(sums) == maxSignatures {
			continue
		}
		if sum, err := base64.StdEncoding.DecodeString(sig); err == nil && len(sum) == sha256.Size {
			sums = append(sums, sum)
		}
	}
	return sums
}

// slack: X-Slack-Signature "v0=<hex>" over "v0:{timestamp}:{body}"
// (https://api.slack.com/authentication/verifying-requests-from-slack).
func slack(keys integration.Secrets, tolerance time.Duration, sh signedHeaders, body []byte, now time.Time) Result {
	var sum [sha256.Size]byte
	t, ok := ParseUnixTimestamp(sh.timestamp)
	if !ok || !ParseHexSignature(sh.signature, "v0=", sum[:]) ||
		!hmacSHA256.matchAny(keys, [][]byte{sum[:]}, []byte("v0:"+sh.timestamp+":"), body) {
		return schemeInvalid
	}
	return inWindow(t, now, tolerance, gjson.GetBytes(body, "event_id").String())
}

// stripe: Stripe-Signature "t=<timestamp>,v1=<hex>[,v1=<hex>...]" over
// "{timestamp}.{body}" (https://docs.stripe.com/webhooks#verify-manually).
func stripe(keys integration.Secrets, tolerance time.Duration, sh signedHeaders, body []byte, now time.Time) Result {
	ts, sums := ParseStripeSignature(sh.signature)
	t, ok := ParseUnixTimestamp(ts)
	if !ok || len(sums) == 0 || !hmacSHA256.matchAny(keys, sums, []byte(ts+"."), body) {
		return schemeInvalid
	}
	return inWindow(t, now, tolerance, gjson.GetBytes(body, "id").String())
}

// ParseStripeSignature returns the timestamp and the decoded v1 signatures
// of a Stripe-Signature header.
func ParseStripeSignature(v string) (timestamp string, sums [][]byte) {
	for _, item := range strings.Split(v, ",") {
		key, value, _ := strings.Cut(strings.TrimSpace(item), "=")
		switch {
		case key == "t":
			timestamp = value
		case key == "v1" && len(sums) < maxSignatures:
			sum := make([]byte, sha256.Size)
			if ParseHexSignature(value, "", sum) {
				sums = append(sums, sum)
			}
		}
	}
	return timestamp, sums
}

// zendesk: X-Zendesk-Webhook-Signature, base64 of the HMAC of the
// X-Zendesk-Webhook-Signature-Timestamp (RFC 3339) followed by the body
// (https://developer.zendesk.com/documentation/webhooks/verifying/).
func zendesk(keys integration.Secrets, tolerance time.Duration, sh signedHeaders, body []byte, now time.Time) Result {
	sum, err := base64.StdEncoding.DecodeString(sh.signature)
	t, terr := time.Parse(time.RFC3339, sh.timestamp)
	if err != nil || terr != nil || len(sum) != sha256.Size || !hmacSHA256.matchAny(keys, [][]byte{sum}, []byte(sh.timestamp), body) {
		return schemeInvalid
	}
	return inWindow(t, now, tolerance, sh.id)
}

// genericHMAC: the HMAC-SHA256 of the body, in the integration's header,
// after its prefix, hex or base64. There is no timestamp to check.
func genericHMAC(keys integration.Secrets, s *integration.Sender, sh signedHeaders, body []byte) Result {
	sig, ok := strings.CutPrefix(sh.signature, s.SignaturePrefix)
	var sum []byte
	var err error
	if s.SignatureEncoding == "base64" {
		sum, err = base64.StdEncoding.DecodeString(sig)
	} else {
		sum, err = hex.DecodeString(sig)
	}
	if !ok || err != nil || len(sum) != sha256.Size || !hmacSHA256.matchAny(keys, [][]byte{sum}, body) {
		return schemeInvalid
	}
	return Result{Outcome: Pass}
}

// ParseUnixTimestamp reads whole seconds since the epoch.
func ParseUnixTimestamp(v string) (time.Time, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// inWindow passes a verified request whose signed timestamp is within
// tolerance of now, either way, with the sender's event id.
func inWindow(t, now time.Time, tolerance time.Duration, eventID string) Result {
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return schemeStale
	}
	return Result{Outcome: Pass, EventID: eventID}
}
