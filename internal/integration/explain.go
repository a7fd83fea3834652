package integration

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// DecodeForWrite decodes fields as they are about to be written, and also
// requires what a webhook needs to trigger anything: a supported
// resource_type and a resource_id.
func DecodeForWrite(id string, fields map[string]string, keys *seal.Keys) (*Integration, error) {
	in, err := Decode(id, fields, keys)
	if err != nil {
		return nil, err
	}
	if !KnownResourceType(in.ResourceType) {
		return nil, in.fieldErr(FieldResourceType, "must be one of "+strings.Join(ResourceTypes, ", "))
	}
	if in.ResourceID == "" {
		return nil, in.fieldErr(FieldResourceID, "required")
	}
	return in, nil
}

// Explain says, in plain words, what a request must carry to pass the
// integration's checks, and what it then triggers; alias and project are
// the record's display name and project. It names no secret.
func (in *Integration) Explain(alias, project string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	name := in.ID
	if alias != "" {
		name += " (" + alias + ")"
	}
	state := "enabled"
	if !in.Enabled {
		state = "DISABLED: every request is answered 400 until it is enabled"
	}
	w("Webhook %s: %s.", name, state)
	w("It triggers %s %q as user %q (project %q).", in.ResourceType, in.ResourceID, in.UserID, project)
	w("")
	w("A request must be a POST to .../webhooks/%s, and carry:", in.ID)
	if !in.HasAuth() {
		w("  nothing else: no mechanism is configured (refused with require_auth).")
	}
	rotating := func(s Secrets) string {
		if len(s) > 1 {
			return fmt.Sprintf(" (%d secrets accepted while one is rotated)", len(s))
		}
		return ""
	}
	if len(in.GitHubSecret) > 0 {
		w("  X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256 of the raw body, keyed with the GitHub secret>%s", rotating(in.GitHubSecret))
		if !in.GitHubRequireSHA256 {
			w("    or, without it, X-Hub-Signature: sha1=<hex HMAC-SHA1> (github_require_sha256 is false)")
		}
	}
	gitlab := cmp.Or(in.GitLab, &GitLab{})
	if len(gitlab.Token) > 0 {
		w("  X-Gitlab-Token: <the GitLab token>%s", rotating(gitlab.Token))
	}
	if sh := in.SecureHeader; sh != nil {
		w("  %s: <the secure header value>%s", sh.Name, rotating(sh.Value))
	}
	sender := cmp.Or(in.Sender, &Sender{})
	if sender.SignatureScheme != "" {
		words := schemeWords[sender.SignatureScheme]
		w("  %s%s", words.headers, rotating(sender.SignatureSecret))
		if words.timestamped {
			w("    with a signed timestamp within %s of now (signature_tolerance)", sender.SignatureTolerance)
		}
		if sender.SignatureScheme == SchemeHMACSHA256 {
			w("    %s: %s<%s HMAC-SHA256 of the raw body, keyed with the signature secret>", sender.SignatureHeader, sender.SignaturePrefix, sender.SignatureEncoding)
		}
	}
	if len(in.GitHubEventFilter) > 0 || len(gitlab.EventFilter) > 0 || len(sender.EventFilter) > 0 {
		w("")
		w("Events (anything else is answered as filtered out, and triggers nothing):")
	}
	if len(in.GitHubEventFilter) > 0 {
		w("  X-GitHub-Event one of: %s (\"event.action\" also needs the payload's action); ping is answered pong", strings.Join(in.GitHubEventFilter, ", "))
	}
	if len(gitlab.EventFilter) > 0 {
		w("  merge-request events with object_attributes.action one of: %s (other events pass)", strings.Join(gitlab.EventFilter, ", "))
	}
	if len(sender.EventFilter) > 0 {
		w("  the payload's %s one of: %s", sender.EventField, strings.Join(sender.EventFilter, ", "))
	}
	if f := in.Filter(); f != nil {
		w("")
		w("Only deliveries for which this filter is true are taken (false, or an error such as a missing field, is answered as filtered out):")
		w("  %s", f.Source())
	}
	if p := in.Prompt(); p != nil && in.ResourceType != ResourceDatasource {
		w("")
		w("The %s is given this prompt instead of the body (unless the upstream forwards):", in.ResourceType)
		w("  %s", p.Source())
	}
	return b.String()
}

// schemeWords says what each signature scheme's sender sends, and whether
// it signs a timestamp (checked against signature_tolerance).
var schemeWords = map[string]struct {
	headers     string
	timestamped bool
}{
	SchemeStandardWebhooks: {"webhook-id, webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}> (Standard Webhooks; svix-* headers too)", true},
	SchemeSlack:            {"X-Slack-Request-Timestamp and X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}> (Slack)", true},
	SchemeStripe:           {"Stripe-Signature: t=<timestamp>,v1=<hex HMAC-SHA256 of {timestamp}.{body}> (Stripe)", true},
	SchemeZendesk:          {"X-Zendesk-Webhook-Signature-Timestamp and X-Zendesk-Webhook-Signature: <base64 HMAC-SHA256 of {timestamp}{body}> (Zendesk)", true},
	SchemeHMACSHA256:       {"a signature header (generic HMAC-SHA256):", false},
}
