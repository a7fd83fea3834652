package module

import (
	"fmt"
	"net/http"
	"net/textproto"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"

	"github.com/codemie-edge/caddy-webhooks/internal/headers"
)

func init() {
	caddy.RegisterModule(WebhookHeadersFilter{})
}

// WebhookHeadersFilter is a Caddy log field filter for a logged set of HTTP
// headers, such as the access log's `request>headers` or `resp_headers`: it
// keeps only the headers known to be safe for webhook traffic, plus Keep,
// and drops every other header entirely, name and value. Every sender's
// secret (a signature, a GitLab token, a secure header of any name an
// integration chooses) is thus kept out of the log without being listed.
//
// The safe headers are the content and client ones (Content-Type,
// Content-Length, User-Agent, Accept...), the proxies' and tracing ones
// (X-Forwarded-For, X-Real-Ip, X-Request-Id, Traceparent...), the delivery
// and event ids of every sender the handler knows (X-GitHub-Event,
// X-GitHub-Delivery, X-Gitlab-Event-UUID, X-Atlassian-Webhook-Identifier,
// Webhook-Id, Svix-Id, Idempotency-Key...) and the handler's Allow and
// Retry-After (headers.Logged). A secure header cannot take one
// of their names: such a record is malformed.
//
// Names compare case-insensitively. On the access log's whole `request`
// field it filters the request's headers and leaves the rest; any other
// field whose value is not a set of headers is left as it is. Filters of
// fields nested under the one it filters (such as `request>headers>X-Foo`)
// no longer apply.
type WebhookHeadersFilter struct {
	// Keep names more headers to log besides the safe ones. A header that
	// carries a credential (Authorization, Cookie, X-Gitlab-Token, a
	// signature header...) cannot be kept.
	Keep []string `json:"keep,omitempty"`

	keep map[string]struct{}
}

// safeHeaders are the headers that WebhookHeadersFilter keeps: what
// identifies a delivery, its sender and its content, and never a
// credential. An integration's secure header cannot take one of their
// names.
var safeHeaders = canonicalSet(headers.Logged...)

// credentialHeaders are headers.Credentials: WebhookHeadersFilter refuses
// to keep them.
var credentialHeaders = canonicalSet(headers.Credentials...)

// canonicalSet returns the set of names in canonical form.
func canonicalSet(names ...string) map[string]struct{} {
	set := make(map[string]struct{}, len(names))
	for _, name := range names {
		set[textproto.CanonicalMIMEHeaderKey(name)] = struct{}{}
	}
	return set
}

// CaddyModule returns the Caddy module information.
func (WebhookHeadersFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.webhook_headers",
		New: func() caddy.Module { return new(WebhookHeadersFilter) },
	}
}

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. Syntax:
//
//	webhook_headers {
//	    keep <name...>
//	}
//
// keep may be repeated.
func (f *WebhookHeadersFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume filter name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "keep":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			for _, name := range names {
				if err := checkKeep(name); err != nil {
					return d.Errf("keep: %v", err)
				}
			}
			f.Keep = append(f.Keep, names...)
		default:
			return d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

// Provision sets up the filter.
func (f *WebhookHeadersFilter) Provision(caddy.Context) error {
	f.keep = canonicalSet(f.Keep...)
	return nil
}

// Validate refuses a keep list that names a credential or no header at all.
func (f *WebhookHeadersFilter) Validate() error {
	for _, name := range f.Keep {
		if err := checkKeep(name); err != nil {
			return fmt.Errorf("keep: %v", err)
		}
	}
	return nil
}

// checkKeep tells why name cannot be kept, if it cannot.
func checkKeep(name string) error {
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("%q is not a header name", name)
	}
	if _, ok := credentialHeaders[textproto.CanonicalMIMEHeaderKey(name)]; ok {
		return fmt.Errorf("%s carries a credential and is never logged", name)
	}
	return nil
}

// Filter keeps, of a field whose value is a caddyhttp.LoggableHTTPHeader or
// an http.Header, only the safe headers and those of Keep; of a
// caddyhttp.LoggableHTTPRequest (the filter put on `request` rather than
// `request>headers`), it does so with the request's headers. The headers
// and request being logged are not changed: the field gets filtered copies.
func (f *WebhookHeadersFilter) Filter(in zapcore.Field) zapcore.Field {
	switch v := deref(in.Interface).(type) {
	case caddyhttp.LoggableHTTPRequest:
		v.Request = f.safeRequest(v.Request)
		in.Interface = v
	case caddyhttp.LoggableHTTPHeader:
		v.Header = f.safe(v.Header)
		in.Interface = v
	case http.Header:
		in.Interface = f.safe(v)
	}
	return in
}

// deref returns what a non-nil pointer to a logged request or set of
// headers points to, and any other value as it is.
func deref(v any) any {
	switch p := v.(type) {
	case *caddyhttp.LoggableHTTPRequest:
		if p != nil {
			return *p
		}
	case *caddyhttp.LoggableHTTPHeader:
		if p != nil {
			return *p
		}
	}
	return v
}

// safeRequest returns a shallow copy of r whose headers are those that may
// be logged.
func (f *WebhookHeadersFilter) safeRequest(r *http.Request) *http.Request {
	if r == nil {
		return nil
	}
	out := new(http.Request)
	*out = *r
	out.Header = f.safe(r.Header)
	return out
}

// safe returns the headers of h that may be logged.
func (f *WebhookHeadersFilter) safe(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, min(len(h), len(safeHeaders)))
	for name, values := range h {
		if f.kept(textproto.CanonicalMIMEHeaderKey(name)) {
			out[name] = values
		}
	}
	return out
}

// kept reports whether the header of the canonical name may be logged.
func (f *WebhookHeadersFilter) kept(canonical string) bool {
	if _, ok := safeHeaders[canonical]; ok {
		return true
	}
	_, ok := f.keep[canonical]
	return ok
}

// Interface guards
var (
	_ logging.LogFieldFilter = (*WebhookHeadersFilter)(nil)
	_ caddy.Provisioner      = (*WebhookHeadersFilter)(nil)
	_ caddy.Validator        = (*WebhookHeadersFilter)(nil)
	_ caddyfile.Unmarshaler  = (*WebhookHeadersFilter)(nil)
)
