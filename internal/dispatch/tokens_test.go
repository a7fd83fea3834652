package dispatch

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func TestClientCredentials(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.SetTokenTTL(300)
	cc := NewClientCredentials(api.URL+"/token", testenv.FakeClientID, testenv.FakeClientSecret, &http.Client{})
	now := time.Unix(1_700_000_000, 0)
	cc.now = func() time.Time { return now }
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if tok, err := cc.Token(ctx, ""); err != nil || tok != "access-1" {
				t.Errorf("Token() = %q, %v", tok, err)
			}
		})
	}
	wg.Wait()
	if n := api.TokensIssued(); n != 1 {
		t.Fatalf("concurrent callers fetched %d tokens, want 1", n)
	}

	now = now.Add(269 * time.Second) // 31s before expiry: still good
	if tok, _ := cc.Token(ctx, ""); tok != "access-1" {
		t.Errorf("before expiry: %q, want the cached token", tok)
	}
	now = now.Add(2 * time.Second) // within 30s of expiry: refreshed
	if tok, _ := cc.Token(ctx, ""); tok != "access-2" {
		t.Errorf("near expiry: %q, want a refreshed token", tok)
	}

	cc.Invalidate("", "access-1") // an old token: no effect
	if tok, _ := cc.Token(ctx, ""); tok != "access-2" {
		t.Errorf("after invalidating an old token: %q", tok)
	}
	cc.Invalidate("", "access-2")
	if tok, _ := cc.Token(ctx, ""); tok != "access-3" {
		t.Errorf("after invalidating the current token: %q, want a new one", tok)
	}
}

func TestTokenFailures(t *testing.T) {
	api := testenv.StartCodeMie(t)
	u := api.URL
	for _, tc := range []struct {
		name      string
		secret    string
		fail      int
		retryable bool
		msg       string
	}{
		{"endpoint down", testenv.FakeClientSecret, http.StatusServiceUnavailable, true, "the token endpoint answered 503 (temporarily_unavailable)"},
		{"wrong secret", "wrong-secret-7c1d", 0, false, "the token endpoint answered 401 (invalid_client)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.FailTokens(tc.fail)
			defer api.FailTokens(0)
			api.Reset()
			cc := NewClientCredentials(u+"/token", testenv.FakeClientID, tc.secret, &http.Client{})
			res := newClient(t, u, cc).Dispatch(context.Background(), job("workflow", "w", "x"))
			want := Final
			if tc.retryable {
				want = Retryable
			}
			if res.Class != want || res.Step != "authenticate" || !strings.Contains(res.Reason, tc.msg) {
				t.Errorf("result %+v, want %v at authenticate with %q", res, want, tc.msg)
			}
			if strings.Contains(res.Reason, tc.secret) {
				t.Errorf("reason %q holds the client secret", res.Reason)
			}
			if n := len(api.Calls()); n != 0 {
				t.Errorf("%d API calls without a token", n)
			}
		})
	}

	port, _ := testenv.FreePort()
	cc := NewClientCredentials("http://127.0.0.1:"+strconv.Itoa(port)+"/token", "id", "secret", &http.Client{})
	if _, err := cc.Token(context.Background(), ""); err == nil || !err.(*TokenError).Retryable {
		t.Errorf("unreachable token endpoint: %v, want a retryable error", err)
	}
}

func TestUnauthorizedInvalidatesToken(t *testing.T) {
	api := testenv.StartCodeMie(t)
	cc := NewClientCredentials(api.URL+"/token", testenv.FakeClientID, testenv.FakeClientSecret, &http.Client{})
	c := newClient(t, api.URL, cc)
	api.FailWith(func(testenv.Call) int { return http.StatusUnauthorized })
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Final || res.Status != 401 {
		t.Fatalf("result %+v, want final 401", res)
	}
	api.FailWith(nil)
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Success {
		t.Fatalf("result %+v", res)
	}
	calls := api.Calls()
	if a, b := calls[0].Header.Get("Authorization"), calls[1].Header.Get("Authorization"); a != "Bearer access-1" || b != "Bearer access-2" {
		t.Errorf("Authorization %q then %q: a refused token must be replaced", a, b)
	}
}
