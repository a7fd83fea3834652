// Package verify decides, from an integration, the request's headers and its
// raw body, whether a webhook request may trigger anything: the checks of
// docs/codemie-api.md section 3 (GitHub signature and event filter, GitLab
// token and merge-request filter, secure header), fail-closed. It is pure:
// no I/O, no clock, no logging.
package verify

import (
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/expr"
	senderheaders "github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// Request headers, in canonical form so they index http.Header directly.
const (
	HeaderGitHubSignature256 = "X-Hub-Signature-256"
	HeaderGitHubSignature1   = "X-Hub-Signature"
	HeaderGitHubEvent        = "X-Github-Event"
	HeaderGitLabToken        = "X-Gitlab-Token"
	HeaderGitLabEvent        = "X-Gitlab-Event"
)

// Outcome names what verification decided; it labels logs and metrics.
type Outcome string

// Outcomes of verification.
const (
	Pass                Outcome = "pass"
	SignatureMissing    Outcome = "github_signature_missing"
	SignatureInvalid    Outcome = "github_signature_invalid"
	GitLabTokenInvalid  Outcome = "gitlab_token_invalid"
	SecureHeaderInvalid Outcome = "secure_header_invalid"
	AuthRequired        Outcome = "auth_required"
	Filtered            Outcome = "filtered"
	Ping                Outcome = "ping"
	// Handshake: a sender's endpoint check (Slack's url_verification,
	// Microsoft Graph's validationToken), answered with Result.Text.
	Handshake Outcome = "handshake"

	SchemeSignatureMissing Outcome = "signature_missing"
	SchemeSignatureInvalid Outcome = "signature_invalid"
	SignatureStale         Outcome = "signature_stale"
)

// maxHandshakeToken bounds a handshake's token, in bytes.
const maxHandshakeToken = 1024

// handshakeToken reports whether a handshake's token may be echoed: 1 to
// maxHandshakeToken printable ASCII bytes.
func handshakeToken(s string) bool {
	if s == "" || len(s) > maxHandshakeToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// GraphValidation returns the token of Microsoft Graph's subscription
// validation (a POST to the notification URL with a validationToken query
// parameter and no body), for an integration that allows it: the token is
// to be answered, 200 text/plain, and nothing triggered. Graph signs
// nothing in it, so it is answered before authentication; ok is false when
// the request is not such a validation.
func GraphValidation(in *integration.Integration, rawQuery string) (token string, ok bool) {
	if in.Sender == nil || !in.Sender.GraphValidation || !strings.Contains(rawQuery, "validationToken=") {
		return "", false
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q["validationToken"]) != 1 {
		return "", false
	}
	token = q.Get("validationToken")
	return token, handshakeToken(token)
}

// maxEventEcho bounds how much of a sender's event name is echoed back.
const maxEventEcho = 128

// Options are the handler's settings that change decisions.
type Options struct {
	// RequireAuth rejects integrations that configure no mechanism.
	RequireAuth bool
	// FilteredStatus is the status of a GitHub event that the filter drops:
	// 200 (the default, so senders do not count it as a failure) or 400 (the
	// CodeMie backend's answer).
	FilteredStatus int
	// Now is the time signed timestamps are held against; zero: time.Now().
	Now time.Time
}

// Result is the decision. When Outcome is Pass the request goes on; any
// other outcome is answered with Status and Message (as {"detail":...} for
// errors, {"message":...} for 2xx) and triggers nothing.
type Result struct {
	Outcome Outcome
	Status  int
	Message string
	// Unauthenticated is set when the request passed because the
	// integration configures no mechanism at all.
	Unauthenticated bool
	// Text is a Handshake's answer, sent as text/plain.
	Text string
	// EventID is the sender's own id of the event, from a signature scheme
	// that has one (Standard Webhooks' webhook-id, Stripe's and Slack's
	// event ids, Zendesk's invocation id); it feeds the replay guard.
	EventID string
	// DroppedBy names the field of the filter that dropped a Filtered
	// request (github_event_filter, gitlab_event_filter, event_filter,
	// filter).
	DroppedBy string
	// Expression is what the integration's filter expression gave: ""
	// when it was not evaluated, else ExpressionPass, ExpressionDrop or
	// ExpressionError (then Err says why).
	Expression string
	Err        error
	// Vars are what the filter saw, for the prompt; nil when no filter ran.
	Vars *expr.Vars
}

// What a filter expression gave, for Result.Expression.
const (
	ExpressionPass  = "pass"
	ExpressionDrop  = "drop"
	ExpressionError = "error"
)

// Check verifies a request against in. Every mechanism the integration
// configures must pass, whatever headers the request carries; then pings
// are answered and event filters applied, so filters never speak to a
// sender that has not authenticated.
func Check(in *integration.Integration, h http.Header, body []byte, opts Options) Result {
	auth := authenticate(in, h, body, opts)
	if auth.Outcome != Pass {
		return auth
	}
	r := decide(in, h, body, opts)
	r.Unauthenticated, r.EventID = !in.HasAuth(), auth.EventID
	return r
}

// decide answers pings and applies the event filters to an authenticated
// request.
func decide(in *integration.Integration, h http.Header, body []byte, opts Options) Result {
	event := single(h, HeaderGitHubEvent)
	switch {
	case event == "ping":
		return Result{Outcome: Ping, Status: http.StatusOK, Message: answer.Pong}
	case in.Sender != nil && in.Sender.SignatureScheme == integration.SchemeSlack &&
		gjson.GetBytes(body, "type").String() == "url_verification":
		// Slack checks the endpoint, signed, when the Events API URL is
		// set: the answer is the challenge, and nothing is triggered.
		challenge := gjson.GetBytes(body, "challenge").String()
		if !handshakeToken(challenge) {
			return Result{Outcome: Handshake, Status: http.StatusBadRequest, Message: answer.BadHandshake}
		}
		return Result{Outcome: Handshake, Status: http.StatusOK, Text: challenge}
	case len(in.GitHubEventFilter) > 0 && !GitHubEventAllowed(in.GitHubEventFilter, event, payload(h, body)):
		if opts.FilteredStatus == http.StatusBadRequest {
			return Result{Outcome: Filtered, Status: http.StatusBadRequest, DroppedBy: integration.FieldGitHubEventFilter,
				Message: answer.EventNotAllowed(truncate(event, maxEventEcho))}
		}
		return filtered(integration.FieldGitHubEventFilter)
	case in.GitLab != nil && len(in.GitLab.EventFilter) > 0 && !GitLabActionAllowed(in.GitLab.EventFilter, body):
		// Always 200: GitLab disables hooks that keep answering non-2xx.
		return filtered(integration.FieldGitLabEventFilter)
	case in.Sender != nil && len(in.Sender.EventFilter) > 0 &&
		!slices.Contains(in.Sender.EventFilter, expr.Field(payload(h, body), in.Sender.EventField)):
		return filtered(integration.FieldEventFilter)
	case in.Filter() != nil:
		return evaluate(in, h, body)
	}
	return Result{Outcome: Pass}
}

// filtered is a request dropped by the filter in field: 200, as the
// backend answers.
func filtered(field string) Result {
	return Result{Outcome: Filtered, Status: http.StatusOK, Message: answer.FilteredOut, DroppedBy: field}
}

// evaluate applies the integration's filter expression. An error drops the
// request, as false does: nothing is dispatched that the filter did not
// take.
func evaluate(in *integration.Integration, h http.Header, body []byte) Result {
	vars := ExpressionVars(in, h, body)
	ok, err := in.Filter().Allows(vars)
	switch {
	case err != nil:
		r := filtered(integration.FieldFilter)
		r.Expression, r.Err = ExpressionError, err
		return r
	case !ok:
		r := filtered(integration.FieldFilter)
		r.Expression = ExpressionDrop
		return r
	}
	return Result{Outcome: Pass, Expression: ExpressionPass, Vars: &vars}
}

// ExpressionVars are what in's expressions see of a request: the event
// (the GitHub or GitLab event header, else the sender's event field), the
// action, the JSON document, the headers that carry no secret, and the
// webhook's own fields.
func ExpressionVars(in *integration.Integration, h http.Header, body []byte) expr.Vars {
	doc := payload(h, body)
	event := cmp.Or(single(h, HeaderGitHubEvent), single(h, HeaderGitLabEvent))
	if event == "" && in.Sender != nil {
		event = expr.Field(doc, in.Sender.EventField)
	}
	actionPath := "action"
	if h.Get(HeaderGitLabEvent) != "" {
		actionPath = "object_attributes.action"
	}
	action := gjson.GetBytes(doc, actionPath).String()
	if !validJSON(doc) {
		doc = nil
	}
	return expr.Vars{
		Event: event, Action: action, Body: doc, Headers: senderheaders.WithoutSecrets(h, in.SecretHeaders()),
		Webhook: map[string]string{"id": in.ID, "resource_type": in.ResourceType, "resource_id": in.ResourceID, "user_id": in.UserID},
	}
}

// authenticate runs every configured mechanism, in the CodeMie backend's
// order (docs/codemie-api.md section 3), then the signature scheme.
func authenticate(in *integration.Integration, h http.Header, body []byte, opts Options) Result {
	if len(in.GitHubSecret) > 0 {
		if r := checkGitHub(in, h, body); r.Outcome != Pass {
			return r
		}
	}
	if r := checkTokens(in, h); r.Outcome != Pass {
		return r
	}
	if in.Sender != nil && in.Sender.SignatureScheme != "" {
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		return checkScheme(in.Sender, h, body, now)
	}
	if opts.RequireAuth && !in.HasAuth() {
		return Result{Outcome: AuthRequired, Status: http.StatusUnauthorized, Message: answer.AuthRequired}
	}
	return Result{Outcome: Pass}
}

// checkTokens checks the GitLab token and the secure header, each in
// constant time.
func checkTokens(in *integration.Integration, h http.Header) Result {
	if gl := in.GitLab; gl != nil && len(gl.Token) > 0 && !tokenMatches(single(h, HeaderGitLabToken), gl.Token) {
		return Result{Outcome: GitLabTokenInvalid, Status: http.StatusUnauthorized, Message: answer.GitLabToken}
	}
	if sh := in.SecureHeader; sh != nil && !tokenMatches(single(h, sh.Name), sh.Value) {
		return Result{Outcome: SecureHeaderInvalid, Status: http.StatusUnauthorized, Message: answer.SecureHeader}
	}
	return Result{Outcome: Pass}
}

// RefusedByHeaders returns what Check answers a request to in whatever its
// body, when its headers alone decide it fails: a GitHub signature missing
// or malformed, else a GitLab token or secure header that does not match,
// a signature scheme's headers missing, or no mechanism where opts
// require one, in Check's order. A sender without the secret is then
// answered before its body is read, and holds none of the bodies' memory
// budget.
func RefusedByHeaders(in *integration.Integration, h http.Header, opts Options) (Result, bool) {
	if len(in.GitHubSecret) > 0 {
		var sum [sha256.Size]byte
		_, _, r := githubSignature(in, h, &sum)
		return r, r.Outcome != Pass // else the body decides first
	}
	if r := checkTokens(in, h); r.Outcome != Pass {
		return r, true
	}
	if in.Sender != nil && in.Sender.SignatureScheme != "" {
		if _, ok := readScheme(in.Sender, h); !ok {
			return schemeMissing, true
		}
		return Result{}, false // else the body decides first
	}
	if opts.RequireAuth && !in.HasAuth() {
		return Result{Outcome: AuthRequired, Status: http.StatusUnauthorized, Message: answer.AuthRequired}, true
	}
	return Result{}, false
}

// checkGitHub verifies X-Hub-Signature-256; or, without it,
// X-Hub-Signature: sha256= (Jira, Bitbucket, WebSub), or X-Hub-Signature:
// sha1= when the integration allows SHA-1.
func checkGitHub(in *integration.Integration, h http.Header, body []byte) Result {
	var sum [sha256.Size]byte
	m, signed, r := githubSignature(in, h, &sum)
	if r.Outcome != Pass {
		return r
	}
	if !m.matchAny(in.GitHubSecret, [][]byte{signed}, body) {
		return githubInvalid
	}
	return r
}

// githubInvalid is the answer to a GitHub signature that is not the body's.
var githubInvalid = Result{Outcome: SignatureInvalid, Status: http.StatusUnauthorized, Message: answer.SignatureInvalid}

// githubSignature picks the signature checkGitHub verifies and parses it
// into sum: its MAC and its bytes, with Pass; or the failure the headers
// alone decide, missing or malformed.
func githubSignature(in *integration.Integration, h http.Header, sum *[sha256.Size]byte) (*mac, []byte, Result) {
	v, ok := h[HeaderGitHubSignature256]
	if !ok {
		if v1, ok1 := h[HeaderGitHubSignature1]; ok1 && len(v1) == 1 && strings.HasPrefix(v1[0], "sha256=") {
			v, ok = v1, true
		}
	}
	if ok {
		if len(v) != 1 || !ParseHexSignature(v[0], "sha256=", sum[:]) {
			return nil, nil, githubInvalid
		}
		return hmacSHA256, sum[:], Result{Outcome: Pass}
	}
	if v, ok := h[HeaderGitHubSignature1]; ok && !in.GitHubRequireSHA256 {
		if len(v) != 1 || !ParseHexSignature(v[0], "sha1=", sum[:sha1.Size]) {
			return nil, nil, githubInvalid
		}
		return hmacSHA1, sum[:sha1.Size], Result{Outcome: Pass}
	}
	return nil, nil, Result{Outcome: SignatureMissing, Status: http.StatusUnauthorized, Message: answer.SignatureMissing}
}

// ParseHexSignature decodes v, which must be prefix followed by exactly
// 2*len(dst) lowercase hex digits, into dst.
func ParseHexSignature(v, prefix string, dst []byte) bool {
	digits, ok := strings.CutPrefix(v, prefix)
	if !ok || len(digits) != 2*len(dst) {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if c := digits[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(digits))
	return err == nil
}

// tokenMatches compares a sent token with every stored value in constant
// time. Both sides are hashed first, so not even the length is revealed.
func tokenMatches(got string, secrets integration.Secrets) bool {
	if got == "" {
		return false
	}
	g := sha256.Sum256([]byte(got))
	match := 0
	for _, s := range secrets {
		want := sha256.Sum256(s)
		match |= subtle.ConstantTimeCompare(g[:], want[:])
	}
	return match == 1
}

// single returns the one value of header name; "" when it is missing or
// sent more than once.
func single(h http.Header, name string) string {
	if v := h[name]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// GitHubEventAllowed reports whether event passes filter: some entry is the
// event's name, or "<event>.<action>" with the payload's top-level action.
// An absent event passes nothing.
func GitHubEventAllowed(filter []string, event string, payload []byte) bool {
	if event == "" {
		return false
	}
	var action string
	actionRead := false
	for _, f := range filter {
		if f == event {
			return true
		}
		if len(f) <= len(event) || f[len(event)] != '.' || f[:len(event)] != event {
			continue
		}
		if !actionRead {
			action, actionRead = gjson.GetBytes(payload, "action").String(), true
		}
		if f[len(event)+1:] == action {
			return true
		}
	}
	return false
}

// GitLabActionAllowed reports whether a GitLab payload passes a
// merge-request action filter. Other events than merge requests are outside
// the filter and pass, as in the CodeMie backend.
func GitLabActionAllowed(filter []string, payload []byte) bool {
	if gjson.GetBytes(payload, "object_kind").String() != "merge_request" {
		return true
	}
	action := gjson.GetBytes(payload, "object_attributes.action").String()
	return action != "" && slices.Contains(filter, action)
}

// payload returns the JSON document of a GitHub delivery: the body, or the
// payload field of a form-encoded body. A form-typed body that is itself a
// JSON document is that document: people and senders post JSON under the
// form type (curl's -d sends it), and a real form, which opens with a field
// name and "=", is never valid JSON.
func payload(h http.Header, body []byte) []byte {
	if doc, ok := FormPayload(single(h, "Content-Type"), body); ok {
		return doc
	}
	if isForm(single(h, "Content-Type")) && !validJSON(body) {
		return nil // a form without a payload field has no document
	}
	return body
}

// FormPayload returns the payload field of a form-encoded body (GitHub's
// "application/x-www-form-urlencoded" deliveries put the JSON document
// there), and false when the body is not such a form: another content
// type, JSON sent under the form type, or a form without the field.
func FormPayload(contentType string, body []byte) ([]byte, bool) {
	if !isForm(contentType) || validJSON(body) {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || !form.Has("payload") {
		return nil, false
	}
	return []byte(form.Get("payload")), true
}

func isForm(contentType string) bool {
	return strings.HasPrefix(contentType, "application/x-www-form-urlencoded")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
