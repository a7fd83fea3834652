package dispatch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func ownerTokens(k *testenv.Keycloak) *OwnerTokens {
	edge := NewClientCredentials(k.TokenURL, testenv.KeycloakClientID, testenv.KeycloakClientSecret, &http.Client{})
	return NewOwnerTokens(edge, k.TokenURL, testenv.KeycloakClientID, testenv.KeycloakClientSecret, &http.Client{})
}

func TestOwnerTokens(t *testing.T) {
	k := testenv.StartKeycloak(t, map[string]string{"u-1": "alice", "u-2": "bob"})
	o := ownerTokens(k)
	ctx := context.Background()

	// Concurrent callers for one owner share one exchange.
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Go(func() {
			var err error
			if tokens[i], err = o.Token(ctx, "alice"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if k.Subject(tokens[0]) != "u-1" || k.Exchanges() != 1 {
		t.Fatalf("alice's token is %q's, after %d exchanges; want u-1's after 1", k.Subject(tokens[0]), k.Exchanges())
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("tokens %v: want one", tokens)
		}
	}
	// By id as well as by username; another owner, another token.
	if tok, err := o.Token(ctx, "u-2"); err != nil || k.Subject(tok) != "u-2" {
		t.Errorf("u-2: %q (%v)", k.Subject(tok), err)
	}
	// A token the API refused is exchanged again.
	o.Invalidate("alice", tokens[0])
	if tok, _ := o.Token(ctx, "alice"); tok == tokens[0] || k.Subject(tok) != "u-1" {
		t.Errorf("after Invalidate: %q, want a new token of u-1", tok)
	}

	for _, tc := range []struct {
		name      string
		owner     string
		setup     func()
		retryable bool
		reason    string
	}{
		{"unknown owner", "mallory", nil, false, `owner "mallory": the token endpoint answered 403 (access_denied)`},
		{"impersonation not allowed", "bob", func() { k.SetImpersonation(false) }, false, `owner "bob": the token endpoint answered 403 (access_denied)`},
		{"no owner", "", nil, false, "the integration has no user_id"},
		{"identity provider down", "carol", func() { k.SetDown(http.StatusServiceUnavailable) }, true, "answered 503"},
		{"token exchange failing", "alice", func() { k.FailExchanges(http.StatusBadGateway) }, true, `owner "alice": the token endpoint answered 502 (server_error)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
				defer func() { k.SetImpersonation(true); k.SetDown(0); k.FailExchanges(0) }()
			}
			fresh := ownerTokens(k)
			_, err := fresh.Token(ctx, tc.owner)
			var te *TokenError
			if !errors.As(err, &te) || te.Retryable != tc.retryable || !strings.Contains(te.Error(), tc.reason) {
				t.Errorf("err %v, want a TokenError (retryable %v) saying %q", err, tc.retryable, tc.reason)
			}
			if err != nil && strings.Contains(err.Error(), testenv.KeycloakClientSecret) {
				t.Errorf("the error shows the client secret: %v", err)
			}
		})
	}
}

// TestOwnerTokensBounded: no more than max owners' tokens are kept.
func TestOwnerTokensBounded(t *testing.T) {
	users := map[string]string{}
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		users["id-"+u] = u
	}
	k := testenv.StartKeycloak(t, users)
	o := ownerTokens(k)
	o.max = 2
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		if _, err := o.Token(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		if n := len(o.owners); n > 2 {
			t.Fatalf("%d owners kept, want at most 2", n)
		}
	}
}

// TestOwnerTokensEdgeTokenRefused: when the identity provider no longer
// knows the edge's own token ("Invalid token"), it is dropped and the
// exchange is retryable; the next attempt gets a new one and succeeds.
func TestOwnerTokensEdgeTokenRefused(t *testing.T) {
	k := testenv.StartKeycloak(t, map[string]string{"u-1": "alice"})
	o := ownerTokens(k)
	ctx := context.Background()
	if _, err := o.Token(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	k.Forget()
	fresh := ownerTokens(k)
	fresh.edge = o.edge // the edge token the provider forgot
	_, err := fresh.Token(ctx, "alice")
	var te *TokenError
	if !errors.As(err, &te) || !te.Retryable || !strings.Contains(te.Error(), "400 (invalid_request)") {
		t.Fatalf("err %v, want a retryable 400 invalid_request", err)
	}
	if tok, err := fresh.Token(ctx, "alice"); err != nil || k.Subject(tok) != "u-1" {
		t.Errorf("the next attempt: %q %v, want alice's token", k.Subject(tok), err)
	}
}

// TestOwnerTokenRefusedByCodeMie: a token CodeMie answers 401 to is
// dropped for its owner only; the next call exchanges a new one.
func TestOwnerTokenRefusedByCodeMie(t *testing.T) {
	k := testenv.StartKeycloak(t, map[string]string{"u-1": "alice", "u-2": "bob"})
	api := testenv.StartCodeMie(t)
	o := ownerTokens(k)
	c := newClient(t, api.URL, o)
	alice, bob := job("workflow", "wf", "{}"), job("workflow", "wf", "{}")
	alice.UserID, bob.UserID = "alice", "bob"
	c.Dispatch(context.Background(), alice)
	c.Dispatch(context.Background(), bob)
	first := strings.TrimPrefix(api.Calls()[0].Header.Get("Authorization"), "Bearer ")
	bobs := strings.TrimPrefix(api.Calls()[1].Header.Get("Authorization"), "Bearer ")
	api.FailWith(func(testenv.Call) int { return http.StatusUnauthorized })
	if res := c.Dispatch(context.Background(), alice); res.Status != http.StatusUnauthorized {
		t.Fatalf("result %+v", res)
	}
	api.FailWith(nil)
	api.Reset()
	c.Dispatch(context.Background(), alice)
	c.Dispatch(context.Background(), bob)
	again := strings.TrimPrefix(api.Calls()[0].Header.Get("Authorization"), "Bearer ")
	if again == first || k.Subject(again) != "u-1" {
		t.Errorf("after CodeMie's 401, alice's call carried %q (before %q): want a new token of alice's", again, first)
	}
	if got := strings.TrimPrefix(api.Calls()[1].Header.Get("Authorization"), "Bearer "); got != bobs {
		t.Errorf("bob's token changed with alice's refusal: %q, want %q", got, bobs)
	}
}
