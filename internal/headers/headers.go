// Package headers names the HTTP headers that webhook senders send, by what
// the edge does with them: which carry a delivery id, which are kept with a
// queued webhook, which access logs may keep, which CodeMie's own webhook
// reads, and which carry a credential. It is the one home of those lists
// (docs/codemie-api.md section 5 describes the senders' headers).
package headers

import (
	"net/http"
	"slices"
	"strings"
)

// DeliveryID are the headers that carry a sender's delivery id, most
// specific first; each stays the same when the sender retries or
// redelivers.
var DeliveryID = []string{
	"X-Github-Delivery",
	"X-Gitlab-Event-Uuid",
	"Idempotency-Key",
	"X-Atlassian-Webhook-Identifier",
	"Webhook-Id",
}

// Kept are the request headers stored with a queued webhook: what tells
// ops which delivery it was. None carries a secret, and all are Logged.
var Kept = append([]string{
	"Content-Type",
	"User-Agent",
	"X-Github-Event",
	"X-Github-Hook-Id",
	"X-Gitlab-Event",
}, DeliveryID...)

// Logged are the request headers known not to carry a secret: what
// identifies a delivery, its sender and its content. Access logs keep them
// (the webhook_headers log filter), so an integration's secure header
// cannot take one of their names.
var Logged = []string{
	// Content and client.
	"Accept",
	"Accept-Encoding",
	"Content-Encoding",
	"Content-Length",
	"Content-Type",
	"User-Agent",
	// Proxies and tracing.
	"Traceparent",
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Real-Ip",
	"X-Request-Id",
	// Delivery and event ids of the senders the handler knows.
	"Idempotency-Key",
	"X-GitHub-Delivery",
	"X-GitHub-Event",
	"X-GitHub-Hook-ID",
	"X-GitHub-Hook-Installation-Target-ID",
	"X-GitHub-Hook-Installation-Target-Type",
	"X-Gitlab-Event",
	"X-Gitlab-Event-UUID",
	"X-Gitlab-Instance",
	"X-Gitlab-Webhook-UUID",
	"X-Atlassian-Webhook-Identifier",
	"X-Atlassian-Webhook-Retry",
	"X-Event-Key",
	"X-Hook-UUID",
	"X-Request-UUID",
	"Webhook-Id",
	"Webhook-Timestamp",
	"Svix-Id",
	"Svix-Timestamp",
	"X-Slack-Request-Timestamp",
	"X-Slack-Retry-Num",
	"X-Slack-Retry-Reason",
	"X-Zendesk-Webhook-Id",
	"X-Zendesk-Webhook-Invocation-Id",
	"X-Zendesk-Webhook-Signature-Timestamp",
	// Answers of the handler.
	"Allow",
	"Retry-After",
}

// Forwarded are the request headers CodeMie's webhook reads to verify and
// describe a delivery, besides an integration's own secure header: the
// signatures, the GitLab token, the events and delivery ids, and what tells
// GitHub and GitLab apart (the content type, the user agent).
var Forwarded = []string{
	"Content-Type",
	"User-Agent",
	"X-Hub-Signature-256",
	"X-Hub-Signature",
	"X-Github-Event",
	"X-Github-Delivery",
	"X-Github-Hook-Id",
	"X-Gitlab-Token",
	"X-Gitlab-Event",
	"X-Gitlab-Event-Uuid",
	"X-Gitlab-Delivery",
}

// Credentials are headers known to carry a credential: none is Logged.
var Credentials = []string{
	"Authorization",
	"Cookie",
	"Proxy-Authorization",
	"Set-Cookie",
	"Stripe-Signature",
	"Svix-Signature",
	"Webhook-Signature",
	"X-Api-Key",
	"X-Gitlab-Token",
	"X-Hub-Signature",
	"X-Hub-Signature-256",
	"X-Slack-Signature",
	"X-Zendesk-Webhook-Signature",
}

// Named reports whether header name is in list, in any case.
func Named(list []string, name string) bool {
	return slices.ContainsFunc(list, func(n string) bool { return strings.EqualFold(n, name) })
}

// WithoutSecrets returns h without the Credentials and the headers named
// in secret (an integration's own secret-bearing headers, any case).
func WithoutSecrets(h http.Header, secret []string) http.Header {
	out := make(http.Header, len(h))
	for name, values := range h {
		if Named(Credentials, name) || Named(secret, name) {
			continue
		}
		out[name] = values
	}
	return out
}
