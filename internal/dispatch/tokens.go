package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TokenError says the API could not be authorized. It never holds a
// secret: not the client secret, not a token, not the token endpoint's body.
type TokenError struct {
	// Retryable is false when the token endpoint refused the client (4xx):
	// trying again without a configuration change cannot help.
	Retryable bool
	msg       string
}

func (e *TokenError) Error() string { return e.msg }

// StaticToken is a bearer token that never changes.
type StaticToken string

// Token implements Tokens.
func (t StaticToken) Token(context.Context, string) (string, error) { return string(t), nil }

// Invalidate implements Tokens; a static token cannot be renewed.
func (StaticToken) Invalidate(string, string) bool { return false }

// refreshBefore is how long before its expiry a token is replaced.
const refreshBefore = 30 * time.Second

// refreshAt is when a token fetched at now, good for life, is replaced:
// refreshBefore before it expires, or halfway through a shorter life (a
// token good for 30 s or less used to be fetched again for every call).
func refreshAt(now time.Time, life time.Duration) time.Time {
	return now.Add(life - min(refreshBefore, life/2))
}

// fresh reports whether a token replaced at refresh (zero: never) is
// still used at now.
func fresh(token string, refresh, now time.Time) bool {
	return token != "" && (refresh.IsZero() || now.Before(refresh))
}

// freshFor is how long after it was fetched a token the API refuses is
// not worth renewing: the API refuses the client, not a token that expired
// early or was revoked, and a new one would be refused too.
const freshFor = time.Minute

// justFetched reports whether a token fetched at fetched is within freshFor
// of now.
func justFetched(fetched, now time.Time) bool { return now.Sub(fetched) < freshFor }

// dropRefused is Invalidate's rule, for a token kept (fetched at fetched,
// under its holder's lock): the refused token is dropped if it is still
// the one kept, and a new one is worth fetching unless the one refused was
// just fetched (one replaced already is).
func dropRefused(kept *string, fetched time.Time, refused string, now time.Time) bool {
	if *kept != refused {
		return true // replaced already
	}
	*kept = ""
	return !justFetched(fetched, now)
}

// maxToken is the longest token kept, in bytes: it is sent twice in each
// call's headers, and one is kept for each of up to 10,000 owners.
// Keycloak's run to a few KB with many roles.
const maxToken = 16 << 10

// maxLife is the longest a token is kept, whatever its expires_in says
// (one that overflows a time.Duration too).
const maxLife = 24 * time.Hour

// sendable reports whether a token can be sent in a header: one that
// cannot would fail every call it is kept for.
func sendable(token string) bool {
	return token != "" && len(token) <= maxToken && httpguts.ValidHeaderFieldValue(token)
}

// lifeOf is how long a token good for expiresIn seconds is kept: at most
// maxLife, and maxLife when the answer gives none (0).
func lifeOf(expiresIn int64) time.Duration {
	if expiresIn <= 0 || expiresIn >= int64(maxLife/time.Second) {
		return maxLife
	}
	return time.Duration(expiresIn) * time.Second
}

// ClientCredentials gets tokens with the OAuth2 client-credentials grant
// (as Keycloak service accounts do), keeps each until shortly before it
// expires, and shares one fetch among concurrent callers.
type ClientCredentials struct {
	cfg    clientcredentials.Config
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	token   string
	fetched time.Time
	refresh time.Time // when the token is replaced; zero: never
}

// NewClientCredentials returns a token source for the client at tokenURL,
// fetching tokens through client.
func NewClientCredentials(tokenURL, clientID, clientSecret string, client *http.Client) *ClientCredentials {
	return &ClientCredentials{
		cfg:    clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL},
		client: client,
		now:    time.Now,
	}
}

// Token implements Tokens: the client's own token, whoever the owner.
func (cc *ClientCredentials) Token(ctx context.Context, _ string) (string, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	now := cc.now()
	if fresh(cc.token, cc.refresh, now) {
		return cc.token, nil
	}
	t, err := cc.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, cc.client))
	if err != nil {
		return "", tokenError(err)
	}
	if !sendable(t.AccessToken) {
		return "", &TokenError{Retryable: true, msg: "fetching OAuth2 token: the answer has no access_token that can be sent"}
	}
	cc.token, cc.fetched, cc.refresh = t.AccessToken, now, time.Time{}
	switch {
	case t.ExpiresIn <= 0 && !t.Expiry.IsZero():
		// The library dates the expiry by the wall clock; keep its
		// distance, on this source's clock.
		cc.refresh = refreshAt(now, min(max(time.Until(t.Expiry), 0), maxLife))
	default:
		cc.refresh = refreshAt(now, lifeOf(t.ExpiresIn))
	}
	return cc.token, nil
}

// Invalidate implements Tokens: a token the API refused is not used
// again; the next call fetches a new one, which can help unless the one
// refused was fetched less than freshFor ago.
func (cc *ClientCredentials) Invalidate(_, token string) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return dropRefused(&cc.token, cc.fetched, token, cc.now())
}

// tokenError describes a failed fetch by status only.
func tokenError(err error) *TokenError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status := re.Response.StatusCode
		msg := fmt.Sprintf("fetching OAuth2 token: the token endpoint answered %d", status)
		if knownCode(re.ErrorCode) {
			msg += " (" + re.ErrorCode + ")"
		}
		return &TokenError{Retryable: status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500, msg: msg}
	}
	return &TokenError{Retryable: true, msg: "fetching OAuth2 token: " + NetworkReason(err)}
}
