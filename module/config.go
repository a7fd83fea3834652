package module

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"golang.org/x/net/http/httpguts"
)

// Upstream is the CodeMie API and how to authorize calls to it.
type Upstream struct {
	// URL is the API's base URL, such as http://codemie-api:8080.
	URL string `json:"url"`

	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string `json:"bearer_token,omitempty"`

	// OAuth2 gets tokens with the client-credentials grant instead.
	OAuth2 *OAuth2 `json:"oauth2,omitempty"`

	// ActAs is whose identity the calls carry: "service_account" (the
	// token of BearerToken or OAuth2: CodeMie files every conversation,
	// execution and reindex under the service account), or "owner": each
	// call carries a token of the integration's user_id, got by
	// exchanging the OAuth2 client's token (RFC 8693 token exchange with
	// requested_subject; Keycloak: impersonation), as CodeMie's own
	// webhook acts as the owner. Default: service_account.
	ActAs string `json:"act_as,omitempty"`

	// Forward hands each verified delivery to CodeMie's own webhook
	// endpoint, POST <URL>/v1/webhooks/{id} (the API's service address,
	// not the public ingress), with its body and the headers CodeMie
	// needs to verify it again, instead of calling the resource APIs:
	// CodeMie then triggers as the owner itself. Needs no token. The
	// forwarded headers, which may hold secrets, are kept with a queued
	// webhook sealed with secrets_key (in clear without one).
	Forward bool `json:"forward,omitempty"`

	// Timeout bounds each call to the API. Default: 600s, as the backend.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Headers are added to every call.
	Headers map[string]string `json:"headers,omitempty"`
}

// Identities of Upstream.ActAs.
const (
	// ActAsServiceAccount: every call carries the service account's token.
	ActAsServiceAccount = "service_account"
	// ActAsOwner: every call carries a token of the integration's owner.
	ActAsOwner = "owner"
)

// OAuth2 is a client of the client-credentials grant, such as a Keycloak
// service account (token URL {issuer}/protocol/openid-connect/token).
type OAuth2 struct {
	// TokenURL is the identity provider's token endpoint. Required.
	TokenURL string `json:"token_url"`
	// ClientID is the client's id. Required.
	ClientID string `json:"client_id"`
	// ClientSecret is the client's secret, normally a placeholder such as
	// {env.CODEMIE_CLIENT_SECRET}. Required.
	ClientSecret string `json:"client_secret"`
}

// errIncompleteOAuth2 refuses an oauth2 with a field left out.
var errIncompleteOAuth2 = errors.New("oauth2: token_url, client_id and client_secret are required")

// complete reports whether every field is given.
func (o *OAuth2) complete() bool {
	return o.TokenURL != "" && o.ClientID != "" && o.ClientSecret != ""
}

// oauth2Client is an oauth2's fields with placeholders expanded.
type oauth2Client struct{ tokenURL, id, secret string }

// expand expands o's placeholders with repl, and refuses a token URL that
// is not an http(s) URL; what names the error says whose oauth2 it is.
func (o *OAuth2) expand(repl *caddy.Replacer, what string) (oauth2Client, error) {
	c := oauth2Client{repl.ReplaceKnown(o.TokenURL, ""), repl.ReplaceKnown(o.ClientID, ""), repl.ReplaceKnown(o.ClientSecret, "")}
	if _, ok := httpURL(c.tokenURL); !ok {
		return c, fmt.Errorf("%s: oauth2: %q is not an http or https URL", what, c.tokenURL)
	}
	return c, nil
}

// bearerToken expands token's placeholders with repl, and refuses a
// value that cannot be sent in a header (the error never shows it).
func bearerToken(repl *caddy.Replacer, token, what string) (string, error) {
	token = repl.ReplaceKnown(token, "")
	if !httpguts.ValidHeaderFieldValue(token) {
		return "", fmt.Errorf("%s: bearer_token: not a header value", what)
	}
	return token, nil
}

// httpURL parses raw as an absolute http or https URL with a host; false
// for anything else.
func httpURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	return u, err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// DeadLetters are the bounds of the dead stream; a bound left at 0 takes
// its default.
type DeadLetters struct {
	// MaxEntries is the most dead letters kept. Default: 10000.
	MaxEntries int64 `json:"max_entries,omitempty"`
	// MaxAge is how long a dead letter is kept after it died. Default:
	// 168h (7 days).
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// MaxBytes is the most the dead letters may take in all, in bytes:
	// their field names and values, bodies included. Default: 268435456
	// (256 MiB).
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

// DeliveryLog is the delivery log kept in Redis for the console and the
// tail: a record per request to a webhook and per dispatch attempt's
// outcome. A bound left at 0 takes its default.
type DeliveryLog struct {
	// Off keeps no log.
	Off bool `json:"off,omitempty"`
	// MaxEntries is the most records kept, the oldest dropped first.
	// Default: 50000.
	MaxEntries int64 `json:"max_entries,omitempty"`
	// MaxAge is how long a record is kept. Default: 24h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// PreviewBytes is the most a body's preview holds, for the
	// integrations with log_preview, in bytes. Default: 512.
	PreviewBytes int `json:"preview_bytes,omitempty"`
}

// Retry is an exponential backoff with full jitter.
type Retry struct {
	// Attempts is the number of dispatch attempts in all.
	Attempts int `json:"attempts,omitempty"`
	// First bounds the first wait; each next bound doubles.
	First caddy.Duration `json:"first,omitempty"`
	// Max caps the bound.
	Max caddy.Duration `json:"max,omitempty"`
}

// RateLimit is a fixed window per webhook.
type RateLimit struct {
	// Requests admitted per window; 0 turns the rate limit off.
	Requests int `json:"requests"`
	// Window is the window's length. Default: 60s.
	Window caddy.Duration `json:"window,omitempty"`
}

// RedisConfig is where and how integrations are kept in Redis.
type RedisConfig struct {
	redisconn.Config

	// KeyPrefix starts every key. Default: "codemie:webhooks:".
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// validate checks the upstream's values and how they combine.
func (u *Upstream) validate() error {
	switch {
	case u.URL == "":
		return errors.New("the CodeMie API's URL is required")
	case u.Timeout < 0:
		return errors.New("timeout must not be negative")
	case u.BearerToken != "" && u.OAuth2 != nil:
		return errors.New("bearer_token and oauth2 are exclusive")
	case u.OAuth2 != nil && !u.OAuth2.complete():
		return errIncompleteOAuth2
	case u.Forward && (u.ActAs == ActAsOwner || u.BearerToken != "" || u.OAuth2 != nil):
		return errors.New("forward hands deliveries to CodeMie's own webhook, which takes no token: drop bearer_token, oauth2 and act_as")
	}
	switch u.ActAs {
	case ActAsServiceAccount, "":
	case ActAsOwner:
		if u.OAuth2 == nil {
			return errors.New("act_as owner exchanges the oauth2 client's tokens: configure oauth2")
		}
	default:
		return fmt.Errorf("act_as %q: must be owner or service_account", u.ActAs)
	}
	return nil
}

// validate checks that the backoff's bounds are in order (validBounds
// checks each).
func (r *Retry) validate() error {
	if r.Max < r.First {
		return fmt.Errorf("max %s is less than first %s", time.Duration(r.Max), time.Duration(r.First))
	}
	return nil
}

// validate checks the byte bound (validBounds checks the others).
func (d *DeadLetters) validate() error {
	if d.MaxBytes < 0 {
		return errors.New("max_bytes must not be negative")
	}
	return nil
}

// validFilteredStatus checks a filtered_status.
func validFilteredStatus(n int) error {
	if n != http.StatusOK && n != http.StatusBadRequest {
		return fmt.Errorf("%d: must be 200 or 400", n)
	}
	return nil
}

// validDelivery checks a delivery mode.
func validDelivery(s string) error {
	if s != DeliverySync && s != DeliveryAsync {
		return fmt.Errorf("%q: must be async or sync", s)
	}
	return nil
}
