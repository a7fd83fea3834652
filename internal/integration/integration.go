// Package integration holds the webhook integration record: the fields the
// CodeMie backend stores in an integration's credential_values, decoded from a
// Redis hash or a JSON file, validated, with its secrets kept out of every
// printed or marshalled form.
package integration

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/codemie-edge/caddy-webhooks/internal/expr"
	"github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// Field names, exactly as the CodeMie backend stores them.
const (
	FieldWebhookID           = "webhook_id"
	FieldIsEnabled           = "is_enabled"
	FieldSecureHeaderName    = "secure_header_name"
	FieldSecureHeaderValue   = "secure_header_value"
	FieldGitHubRequireSHA256 = "github_require_sha256"
	FieldGitHubWebhookSecret = "github_webhook_secret"
	FieldGitHubEventFilter   = "github_event_filter"
	FieldGitLabWebhookToken  = "gitlab_webhook_token"
	FieldGitLabEventFilter   = "gitlab_event_filter"
	FieldResourceType        = "resource_type"
	FieldResourceID          = "resource_id"
	FieldUserID              = "user_id"
	FieldProjectName         = "project_name"
	FieldAlias               = "alias"

	// Fields beyond the backend's, for senders other than GitHub and GitLab.
	FieldSignatureScheme    = "signature_scheme"
	FieldSignatureSecret    = "signature_secret"
	FieldSignatureHeader    = "signature_header"
	FieldSignaturePrefix    = "signature_prefix"
	FieldSignatureEncoding  = "signature_encoding"
	FieldSignatureTolerance = "signature_tolerance"
	FieldEventFilter        = "event_filter"
	FieldEventField         = "event_field"
	FieldGraphValidation    = "graph_validation"
	FieldFilter             = "filter"
	FieldPrompt             = "prompt"
	FieldLogPreview         = "log_preview"
)

// Signature schemes of signature_scheme.
const (
	SchemeStandardWebhooks = "standard-webhooks"
	SchemeSlack            = "slack"
	SchemeStripe           = "stripe"
	SchemeZendesk          = "zendesk"
	SchemeHMACSHA256       = "hmac-sha256"
)

// Schemes are the signature schemes: the one list of them. Each has its
// check in internal/verify (schemes.go) and its words in Explain.
var Schemes = []string{SchemeStandardWebhooks, SchemeSlack, SchemeStripe, SchemeZendesk, SchemeHMACSHA256}

// Defaults of the signature fields.
const (
	DefaultSignatureTolerance = 5 * time.Minute
	DefaultEventField         = "type"
)

// Resource types an integration can trigger.
const (
	ResourceAssistant  = "assistant"
	ResourceWorkflow   = "workflow"
	ResourceDatasource = "datasource"
)

// ResourceTypes are the resource types an integration can trigger: the
// one list of them.
var ResourceTypes = []string{ResourceAssistant, ResourceWorkflow, ResourceDatasource}

// KnownResourceType reports whether t is one of ResourceTypes.
func KnownResourceType(t string) bool { return slices.Contains(ResourceTypes, t) }

// resourceType returns the constant for a known resource type, so that
// the many cached records share it instead of holding a copy each.
func resourceType(s string) string {
	if i := slices.Index(ResourceTypes, s); i >= 0 {
		return ResourceTypes[i]
	}
	return s
}

// MaxIDLength is the longest webhook id accepted, in bytes.
const MaxIDLength = 128

// Integration is one webhook's record (docs/codemie-api.md section 2). A
// cache holds one per webhook, so the mechanisms a record seldom sets
// together are behind pointers, nil when unset: 144 bytes a record.
type Integration struct {
	// ID is the webhook id, the last segment of the webhook URL.
	ID string
	// Enabled is false when the webhook must process nothing. Unset: false.
	Enabled bool
	// GitHubRequireSHA256 false also accepts X-Hub-Signature: sha1=. Unset: true.
	GitHubRequireSHA256 bool
	// SecureHeader is a shared header check; nil when there is none.
	SecureHeader *SecureHeader
	// GitHubSecret is the HMAC key of GitHub signatures.
	GitHubSecret Secrets
	// GitHubEventFilter lists the allowed X-GitHub-Event values; empty allows all.
	GitHubEventFilter []string
	// GitLab is the GitLab token and event filter; nil when neither is set.
	GitLab *GitLab
	// ResourceType is what to trigger: assistant, workflow or datasource.
	// Other values are kept and refused at dispatch, as the backend does.
	ResourceType string
	// ResourceID is the id of the resource to trigger.
	ResourceID string
	// UserID is the owner, sent to CodeMie as user-id. (project_name and
	// alias are for people, not for the request path: they are not kept.)
	UserID string

	// Sender holds the fields beyond the backend's, for every other kind of
	// sender. It is nil when a record sets none of them, as most records
	// do, so that a cached record stays small.
	Sender *Sender
}

// SecureHeader is a header every request must carry, with one of the
// values. Both are set, or neither (and then there is no SecureHeader).
type SecureHeader struct {
	Name  string
	Value Secrets
}

// GitLab is what GitLab webhooks are checked against.
type GitLab struct {
	// Token is the expected X-Gitlab-Token.
	Token Secrets
	// EventFilter lists the allowed merge-request actions; empty allows all.
	EventFilter []string
}

// Sender is how a sender other than GitHub and GitLab signs, and which of
// its events are taken.
type Sender struct {
	// SignatureScheme is how the sender signs: standard-webhooks, slack,
	// stripe, zendesk or hmac-sha256; empty for none. With it,
	// SignatureSecret holds the keys (for standard-webhooks, decoded from
	// their whsec_ base64 form).
	SignatureScheme string
	SignatureSecret Secrets
	// SignatureHeader, SignaturePrefix and SignatureEncoding (hex or
	// base64) describe the hmac-sha256 scheme's signature.
	SignatureHeader   string
	SignaturePrefix   string
	SignatureEncoding string
	// SignatureTolerance bounds how far a signed timestamp may be from now.
	// Unset: 5m.
	SignatureTolerance time.Duration
	// EventFilter lists the allowed values of the payload's EventField (a
	// gjson path, as expr.Path makes it of the field as written; unset:
	// "type"); empty allows all.
	EventFilter []string
	EventField  string
	// GraphValidation answers Microsoft Graph's subscription validation
	// (a POST with a validationToken query parameter) with the token.
	GraphValidation bool
	// Filter takes only the deliveries for which it is true (a CEL
	// expression, compiled when the record is loaded); nil takes all.
	Filter *expr.Filter
	// Prompt is what an assistant or a workflow is given instead of the
	// body (a template, compiled when the record is loaded); nil: the body.
	Prompt *expr.Prompt
	// LogPreview keeps a redacted preview of each delivery's body in the
	// delivery log. Unset: false.
	LogPreview bool
}

// Filter is the integration's filter expression; nil when it has none.
func (in *Integration) Filter() *expr.Filter {
	if in.Sender == nil {
		return nil
	}
	return in.Sender.Filter
}

// Prompt is the integration's prompt template; nil when it has none.
func (in *Integration) Prompt() *expr.Prompt {
	if in.Sender == nil {
		return nil
	}
	return in.Sender.Prompt
}

// LogPreview reports whether the delivery log keeps a preview of the
// integration's bodies.
func (in *Integration) LogPreview() bool { return in.Sender != nil && in.Sender.LogPreview }

// SecretValues are every secret value the integration holds, for hiding
// them wherever a body is shown.
func (in *Integration) SecretValues() [][]byte {
	var out [][]byte
	add := func(s Secrets) {
		for _, v := range s {
			out = append(out, []byte(v))
		}
	}
	add(in.GitHubSecret)
	if in.SecureHeader != nil {
		add(in.SecureHeader.Value)
	}
	if in.GitLab != nil {
		add(in.GitLab.Token)
	}
	if in.Sender != nil {
		add(in.Sender.SignatureSecret)
	}
	return out
}

// loggedHeader reports whether name (canonical) is one of headers.Logged.
func loggedHeader(name string) bool {
	return headers.Named(headers.Logged, name)
}

// SecretHeaders returns the names (canonical) of the request headers that
// carry this integration's own secrets under a name of its choosing: the
// secure header, and the hmac-sha256 scheme's signature header. Nil when
// there are none.
func (in *Integration) SecretHeaders() []string {
	var out []string
	if in.SecureHeader != nil {
		out = append(out, in.SecureHeader.Name)
	}
	if in.Sender != nil && in.Sender.SignatureHeader != "" {
		out = append(out, in.Sender.SignatureHeader)
	}
	return out
}

// ValidID reports whether id can be a webhook id: 1 to MaxIDLength bytes of
// [A-Za-z0-9._~-] (the URL's unreserved characters), but not "." or "..",
// which name no path segment of their own.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !unreserved[id[i]] {
			return false
		}
	}
	return true
}

var unreserved = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~" {
		t[c] = true
	}
	return t
}()

// FieldError says which field of which webhook's record is malformed. It
// never holds the field's value.
type FieldError struct {
	ID     string
	Field  string
	Reason string
	// Disabled says the record is disabled all the same (is_enabled
	// false or unset): it is answered as a disabled webhook, like an
	// unknown one, so that ids cannot be probed.
	Disabled bool
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("integration %q: field %s: %s", e.ID, e.Field, e.Reason)
}

// IsMalformed reports whether err says a record is malformed (as opposed to
// a store that could not be reached).
func IsMalformed(err error) bool {
	if err == nil {
		return false
	}
	var fe *FieldError
	return errors.As(err, &fe)
}

// IsDisabled reports whether err says a record is malformed but disabled.
func IsDisabled(err error) bool {
	if err == nil {
		return false
	}
	var fe *FieldError
	return errors.As(err, &fe) && fe.Disabled
}

// Decode builds the integration with the given id from its fields, as stored
// in a Redis hash. Unknown fields are ignored; empty values count as unset.
// Secret values stored encrypted ("enc:v1:...") are opened with keys; plain
// ones are used as they are.
func Decode(id string, fields map[string]string, keys *seal.Keys) (*Integration, error) {
	d := decoder{id: id, fields: fields, keys: keys}
	var secureHeader *SecureHeader // both fields, or neither
	if name, value := fields[FieldSecureHeaderName], d.secrets(FieldSecureHeaderValue); name != "" || len(value) > 0 {
		secureHeader = &SecureHeader{Name: name, Value: value}
	}
	in := &Integration{
		ID:                  id,
		Enabled:             d.boolean(FieldIsEnabled, false),
		SecureHeader:        secureHeader,
		GitHubRequireSHA256: d.boolean(FieldGitHubRequireSHA256, true),
		GitHubSecret:        d.secrets(FieldGitHubWebhookSecret),
		GitHubEventFilter:   splitList(fields[FieldGitHubEventFilter]),
		ResourceType:        resourceType(fields[FieldResourceType]),
		ResourceID:          fields[FieldResourceID],
		UserID:              fields[FieldUserID],
	}
	if token, filter := d.secrets(FieldGitLabWebhookToken), splitList(fields[FieldGitLabEventFilter]); len(token) > 0 || len(filter) > 0 {
		in.GitLab = &GitLab{Token: token, EventFilter: filter}
	}
	if slices.ContainsFunc(SenderFields, func(f string) bool { return fields[f] != "" }) {
		in.Sender = &Sender{
			SignatureScheme:    fields[FieldSignatureScheme],
			SignatureSecret:    d.secrets(FieldSignatureSecret),
			SignatureHeader:    fields[FieldSignatureHeader],
			SignaturePrefix:    fields[FieldSignaturePrefix],
			SignatureEncoding:  fields[FieldSignatureEncoding],
			SignatureTolerance: d.duration(FieldSignatureTolerance, DefaultSignatureTolerance),
			EventFilter:        splitList(fields[FieldEventFilter]),
			EventField:         d.path(FieldEventField, DefaultEventField),
			GraphValidation:    d.boolean(FieldGraphValidation, false),
			Filter:             compiled(&d, FieldFilter, "a boolean CEL expression", expr.CompileFilter),
			Prompt:             compiled(&d, FieldPrompt, "a prompt template", expr.CompilePrompt),
			LogPreview:         d.boolean(FieldLogPreview, false),
		}
	}
	err := d.err
	if err == nil {
		err = in.validate(fields[FieldWebhookID])
	}
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && !in.Enabled && fe.Field != FieldIsEnabled {
			fe.Disabled = true
		}
		return nil, err
	}
	return in, nil
}

// validate checks what the fields cannot say on their own. stored is the
// webhook_id field as stored, which may be empty in a Redis hash (the key
// names the webhook) but never disagree with it.
func (in *Integration) validate(stored string) error {
	if !ValidID(in.ID) {
		return in.fieldErr(FieldWebhookID, "must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")
	}
	if stored != "" && stored != in.ID {
		return in.fieldErr(FieldWebhookID, "does not match the webhook id it is stored under")
	}
	if err := in.validateResource(); err != nil {
		return err
	}
	if sh := in.SecureHeader; sh != nil {
		if sh.Name == "" || len(sh.Value) == 0 {
			return in.fieldErr(FieldSecureHeaderName, "secure_header_name and secure_header_value must be set together")
		}
		if !httpguts.ValidHeaderFieldName(sh.Name) {
			return in.fieldErr(FieldSecureHeaderName, "not a valid HTTP header name")
		}
		sh.Name = http.CanonicalHeaderKey(sh.Name)
		if loggedHeader(sh.Name) {
			return in.fieldErr(FieldSecureHeaderName, "names a header that logs keep as harmless (such as User-Agent): choose a name of its own")
		}
	}
	return in.validateSignature()
}

// validateResource checks the fields that end up in the CodeMie API's
// paths and headers: a resource id that is empty or a dot segment would
// walk the API's paths ("/v1/workflows/../executions"), and a user id
// with a line break can never be sent.
func (in *Integration) validateResource() error {
	if KnownResourceType(in.ResourceType) && in.ResourceID == "" {
		return in.fieldErr(FieldResourceID, "is required with resource_type "+in.ResourceType)
	}
	if id := in.ResourceID; id == "." || id == ".." || strings.Contains(id, "/") || !PrintableASCII(id) {
		return in.fieldErr(FieldResourceID, "must be printable ASCII without / and not . or ..")
	}
	if !httpguts.ValidHeaderFieldValue(in.UserID) || strings.TrimSpace(in.UserID) != in.UserID {
		return in.fieldErr(FieldUserID, "must be a valid HTTP header value, without line breaks or surrounding spaces")
	}
	return nil
}

// PrintableASCII reports whether s holds only bytes 0x21 to 0x7e: no
// space, no control byte, nothing beyond ASCII.
func PrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// SenderFields are the fields a Sender is decoded from: the edge's own
// fields, beyond CodeMie's (which never lists them).
var SenderFields = []string{FieldSignatureScheme, FieldSignatureSecret, FieldSignatureHeader, FieldSignaturePrefix,
	FieldSignatureEncoding, FieldSignatureTolerance, FieldEventFilter, FieldEventField, FieldGraphValidation, FieldFilter, FieldPrompt, FieldLogPreview}

// validateSignature checks the signature fields, and turns Standard
// Webhooks secrets into their keys.
func (in *Integration) validateSignature() error {
	s := in.Sender
	if s == nil {
		return nil
	}
	if (s.SignatureScheme == "") != (len(s.SignatureSecret) == 0) {
		return in.fieldErr(FieldSignatureScheme, "signature_scheme and signature_secret must be set together")
	}
	switch s.SignatureScheme {
	case "", SchemeSlack, SchemeStripe, SchemeZendesk:
	case SchemeStandardWebhooks:
		for i, secret := range s.SignatureSecret {
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(secret), "whsec_"))
			if err != nil || len(key) == 0 {
				return in.fieldErr(FieldSignatureSecret, "a Standard Webhooks secret is whsec_ and base64")
			}
			s.SignatureSecret[i] = key
		}
	case SchemeHMACSHA256:
		if !httpguts.ValidHeaderFieldName(s.SignatureHeader) {
			return in.fieldErr(FieldSignatureHeader, "the hmac-sha256 scheme needs the signature's header name")
		}
		s.SignatureHeader = http.CanonicalHeaderKey(s.SignatureHeader)
		switch s.SignatureEncoding {
		case "":
			s.SignatureEncoding = "hex"
		case "hex", "base64":
		default:
			return in.fieldErr(FieldSignatureEncoding, "must be hex or base64")
		}
	default:
		return in.fieldErr(FieldSignatureScheme, "must be one of "+strings.Join(Schemes, ", "))
	}
	if s.SignatureTolerance <= 0 {
		return in.fieldErr(FieldSignatureTolerance, "must be a positive duration")
	}
	return nil
}

func (in *Integration) fieldErr(field, reason string) error {
	return &FieldError{ID: in.ID, Field: field, Reason: reason}
}

// decoder reads typed fields and keeps the first error.
type decoder struct {
	id     string
	fields map[string]string
	keys   *seal.Keys
	err    error
}

// secrets reads a secret field: its values, one per line, each opened if
// it is stored encrypted.
func (d *decoder) secrets(field string) Secrets {
	lines := SplitSecretValues(d.fields[field])
	if len(lines) == 0 {
		if d.fields[field] != "" && d.err == nil {
			// Only line breaks: configured, yet with no value to check
			// against. Taken as unset, it would turn the check off.
			d.err = &FieldError{ID: d.id, Field: field, Reason: "holds no value, only line breaks"}
		}
		return nil
	}
	out := make(Secrets, 0, len(lines))
	for _, line := range lines {
		v, err := d.keys.Open(d.id, line)
		if err == nil {
			err = weakSecret(v)
		}
		if err != nil {
			if d.err == nil {
				d.err = &FieldError{ID: d.id, Field: field, Reason: err.Error()}
			}
			return nil
		}
		out = append(out, Secret(v))
	}
	return out
}

// weakSecret refuses a secret value that is only spaces, or holds a
// control character: a NUL key signs as no key does (HMAC pads keys with
// zero bytes), so a value of NULs would let unsigned requests through.
func weakSecret(v []byte) error {
	if len(bytes.TrimSpace(v)) == 0 {
		return errors.New("a value is only spaces")
	}
	if bytes.ContainsFunc(v, unicode.IsControl) {
		return errors.New("a value holds a control character")
	}
	return nil
}

func (d *decoder) boolean(field string, unset bool) bool {
	v, ok := ParseBool(d.fields[field])
	switch {
	case d.fields[field] == "":
		return unset
	case !ok && d.err == nil:
		d.err = &FieldError{ID: d.id, Field: field, Reason: "not a boolean (true, false, 1, 0, True, False)"}
	}
	return v
}

// path reads a path field (expr.Path) as a gjson path; unset when empty.
func (d *decoder) path(field, unset string) string {
	p, err := expr.Path(cmp.Or(d.fields[field], unset))
	if err != nil && d.err == nil {
		d.err = &FieldError{ID: d.id, Field: field, Reason: "not a path of keys separated by dots: " + err.Error()}
	}
	return p
}

// duration reads a duration field: a Go duration ("5m") or whole seconds.
func (d *decoder) duration(field string, unset time.Duration) time.Duration {
	v := d.fields[field]
	if v == "" {
		return unset
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	dur, err := time.ParseDuration(v)
	if err != nil && d.err == nil {
		d.err = &FieldError{ID: d.id, Field: field, Reason: "not a duration (such as 5m, or seconds)"}
	}
	return dur
}

// compiled compiles field with compile, which takes what the field must
// be (for the error); nil when it is unset.
func compiled[T any](d *decoder, field, what string, compile func(string) (*T, error)) *T {
	v := d.fields[field]
	if v == "" {
		return nil
	}
	c, err := compile(v)
	if err != nil && d.err == nil {
		d.err = &FieldError{ID: d.id, Field: field, Reason: "not " + what + ": " + err.Error()}
	}
	return c
}

// ParseBool accepts the spellings the backend and its clients write.
func ParseBool(s string) (value, ok bool) {
	switch s {
	case "true", "True", "TRUE", "1":
		return true, true
	case "false", "False", "FALSE", "0":
		return false, true
	}
	return false, false
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty entries, as the backend does.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
