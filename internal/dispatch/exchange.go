package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// RFC 8693 token exchange.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// DefaultMaxOwners bounds how many owners' tokens OwnerTokens keeps.
const DefaultMaxOwners = 10_000

// OwnerTokens gets, for each owner, a token that acts as that owner: the
// edge's own token (client credentials) exchanged at the token endpoint
// for one whose subject is the owner (RFC 8693 token exchange with
// requested_subject; Keycloak calls it impersonation). CodeMie takes the
// caller from the token, so the conversations, executions and reindexes
// are the owner's, as with CodeMie's own webhook.
//
// Each owner's token is kept until shortly before it expires, fetched once
// for concurrent callers, and dropped when the API refuses it; at most
// MaxOwners owners' tokens are kept.
type OwnerTokens struct {
	edge     *ClientCredentials
	tokenURL string
	clientID string
	secret   string
	client   *http.Client
	now      func() time.Time
	max      int

	mu     sync.Mutex
	owners map[string]*ownerToken
}

type ownerToken struct {
	mu      sync.Mutex // one exchange at a time per owner
	token   string
	fetched time.Time
	expires time.Time // zero: never
	refresh time.Time // when the token is replaced; zero: never
}

// NewOwnerTokens returns a source of owners' tokens, exchanging edge's
// tokens at tokenURL as the client clientID, through client.
func NewOwnerTokens(edge *ClientCredentials, tokenURL, clientID, clientSecret string, client *http.Client) *OwnerTokens {
	return &OwnerTokens{edge: edge, tokenURL: tokenURL, clientID: clientID, secret: clientSecret,
		client: client, now: time.Now, max: DefaultMaxOwners, owners: map[string]*ownerToken{}}
}

// Token implements Tokens.
func (o *OwnerTokens) Token(ctx context.Context, owner string) (string, error) {
	if owner == "" {
		return "", &TokenError{msg: "acting as the owner: the integration has no user_id"}
	}
	ot := o.entry(owner)
	ot.mu.Lock()
	defer ot.mu.Unlock()
	now := o.now()
	if fresh(ot.token, ot.refresh, now) {
		return ot.token, nil
	}
	token, expiresIn, err := o.exchange(ctx, owner)
	if err != nil {
		return "", err
	}
	life := lifeOf(expiresIn)
	ot.token, ot.fetched, ot.expires, ot.refresh = token, now, now.Add(life), refreshAt(now, life)
	return token, nil
}

// entry returns owner's entry, making room for it when the cache is full:
// an entry whose token has expired goes first, else any one.
func (o *OwnerTokens) entry(owner string) *ownerToken {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ot, ok := o.owners[owner]; ok {
		return ot
	}
	if len(o.owners) >= o.max {
		o.evict()
	}
	ot := &ownerToken{}
	o.owners[owner] = ot
	return ot
}

// evict drops expired entries, or one entry if none has expired. o.mu
// must be held. An entry being fetched is dropped from the map only: its
// fetch completes for its callers.
func (o *OwnerTokens) evict() {
	now := o.now()
	for owner, ot := range o.owners {
		if ot.mu.TryLock() {
			expired := ot.token == "" || (!ot.expires.IsZero() && !now.Before(ot.expires))
			ot.mu.Unlock()
			if expired {
				delete(o.owners, owner)
			}
		}
	}
	for owner := range o.owners {
		if len(o.owners) < o.max {
			return
		}
		delete(o.owners, owner)
	}
}

// Invalidate implements Tokens: a token the API refused is not used
// again; the next call exchanges a new one, which can help unless the one
// refused was got less than freshFor ago.
func (o *OwnerTokens) Invalidate(owner, token string) bool {
	o.mu.Lock()
	ot, ok := o.owners[owner]
	o.mu.Unlock()
	if !ok {
		return true
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	return dropRefused(&ot.token, ot.fetched, token, o.now())
}

// exchangeAnswer is the token endpoint's answer (RFC 6749 section 5).
type exchangeAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Error       string `json:"error"`
}

// exchange trades the edge's token for owner's. Its errors name the owner
// (not a secret) and the endpoint's status and error code, never a token
// or the endpoint's description.
func (o *OwnerTokens) exchange(ctx context.Context, owner string) (string, int64, error) {
	subject, err := o.edge.Token(ctx, "")
	if err != nil {
		return "", 0, err
	}
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {subject},
		"subject_token_type":   {tokenTypeAccess},
		"requested_token_type": {tokenTypeAccess},
		"requested_subject":    {owner},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &TokenError{msg: "exchanging a token for owner " + quoteOwner(owner) + ": " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(o.clientID), url.QueryEscape(o.secret))
	resp, err := o.client.Do(req)
	if err != nil {
		return "", 0, &TokenError{Retryable: true, msg: "exchanging a token for owner " + quoteOwner(owner) + ": " + NetworkReason(err)}
	}
	defer resp.Body.Close()
	var a exchangeAnswer
	_ = json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&a)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode == http.StatusOK && sendable(a.AccessToken) {
		return a.AccessToken, a.ExpiresIn, nil
	}
	return "", 0, o.refused(owner, subject, resp.StatusCode, a.Error)
}

// refused describes a token endpoint's refusal. The owner unknown, or the
// client not allowed to act as it, is final: Keycloak answers both 403
// access_denied ("Client not allowed to exchange"), so that user names
// cannot be fished. The edge's own token refused (400 "Invalid token") is
// dropped and retried, as are 408, 429 and 5xx.
func (o *OwnerTokens) refused(owner, subject string, status int, code string) *TokenError {
	msg := fmt.Sprintf("exchanging a token for owner %s: the token endpoint answered %d", quoteOwner(owner), status)
	if knownCode(code) {
		msg += " (" + code + ")"
	}
	switch {
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return &TokenError{Retryable: true, msg: msg}
	case status == http.StatusBadRequest && (code == "invalid_request" || code == "invalid_token"):
		o.edge.Invalidate("", subject)
		return &TokenError{Retryable: true, msg: msg}
	case status == http.StatusOK:
		return &TokenError{Retryable: true, msg: msg + ": the answer has no access_token that can be sent"}
	}
	return &TokenError{msg: msg}
}

// quoteOwner quotes an owner id for a message, bounded and escaped.
func quoteOwner(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// knownCode reports whether an OAuth2 error code is one the RFCs define
// (6749, 6750, 8693), and so safe to repeat: a token endpoint could echo
// anything, the client's secret included, as its code.
func knownCode(s string) bool {
	switch s {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "access_denied", "server_error", "temporarily_unavailable", "invalid_token",
		"insufficient_scope", "invalid_target":
		return true
	}
	return false
}
