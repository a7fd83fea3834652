package dispatch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// clockedCredentials returns a client of a fake CodeMie's token endpoint
// issuing tokens good for ttl seconds, on a clock the test moves.
func clockedCredentials(t *testing.T, ttl int) (*testenv.CodeMie, *ClientCredentials, *time.Time) {
	t.Helper()
	api := testenv.StartCodeMie(t)
	api.SetTokenTTL(ttl)
	cc := NewClientCredentials(api.URL+"/token", testenv.FakeClientID, testenv.FakeClientSecret, &http.Client{})
	now := time.Unix(1_700_000_000, 0)
	cc.now = func() time.Time { return now }
	return api, cc, &now
}

func TestClientCredentials(t *testing.T) {
	api, cc, clock := clockedCredentials(t, 300)
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

	*clock = clock.Add(269 * time.Second) // 31s before expiry: still good
	if tok, _ := cc.Token(ctx, ""); tok != "access-1" {
		t.Errorf("before expiry: %q, want the cached token", tok)
	}
	*clock = clock.Add(2 * time.Second) // within 30s of expiry: refreshed
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

// TestShortLivedToken: a token good for less than twice refreshBefore is
// kept for half its life; one good for 10 s used to be fetched again for
// every call, each fetch holding the source's lock.
func TestShortLivedToken(t *testing.T) {
	_, cc, clock := clockedCredentials(t, 10)
	for _, step := range []struct {
		after time.Duration
		want  string
	}{{0, "access-1"}, {4 * time.Second, "access-1"}, {2 * time.Second, "access-2"}} {
		*clock = clock.Add(step.after)
		if tok, err := cc.Token(context.Background(), ""); err != nil || tok != step.want {
			t.Errorf("after %v more: %q, %v, want %q", step.after, tok, err, step.want)
		}
	}
}

// TestLongTokenLife: a token whose expires_in is past a day (up to
// overflowing a time.Duration, which made it expired at once and fetched
// again for every call), or that has none (0), is kept for a day.
func TestLongTokenLife(t *testing.T) {
	for _, ttl := range []int{9223372037, 0} {
		_, cc, clock := clockedCredentials(t, ttl)
		for _, step := range []struct {
			after time.Duration
			want  string
		}{{0, "access-1"}, {time.Hour, "access-1"}, {24 * time.Hour, "access-2"}} {
			*clock = clock.Add(step.after)
			if tok, err := cc.Token(context.Background(), ""); err != nil || tok != step.want {
				t.Errorf("expires_in %d, after %v more: %q, %v, want %q", ttl, step.after, tok, err, step.want)
			}
		}
	}
}

// TestUnsendableTokenIsNotKept: an access_token that cannot be sent in a
// header, or is longer than maxToken, fails the fetch (retryable) and is
// not kept: kept, it failed every call until it expired, and for good
// without an expiry; one of megabytes was kept for each of 10,000 owners.
func TestUnsendableTokenIsNotKept(t *testing.T) {
	for _, token := range []string{`tok\r\nX-Injected: 1`, strings.Repeat("X", maxToken+1)} {
		var fetches atomic.Int64
		idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"` + token + `","token_type":"bearer"}`))
		}))
		t.Cleanup(idp.Close)
		cc := NewClientCredentials(idp.URL, "id", "secret", idp.Client())
		for range 2 {
			_, err := cc.Token(context.Background(), "")
			var te *TokenError
			if !errors.As(err, &te) || !te.Retryable || strings.Contains(err.Error(), "Injected") || strings.Contains(err.Error(), "XXX") {
				t.Errorf("err %v, want a retryable error that does not show the token", err)
			}
		}
		if n := fetches.Load(); n != 2 {
			t.Errorf("%d fetches, want 2: the unsendable token must not be kept", n)
		}
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

	// An error code the RFCs do not define is not repeated: the endpoint
	// could echo the form, secret and all, as its code.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, secret, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"` + secret + r.PostForm.Get("client_secret") + `"}`))
	}))
	t.Cleanup(echo.Close)
	_, err := NewClientCredentials(echo.URL, "id", "s3cret", echo.Client()).Token(context.Background(), "")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.HasSuffix(err.Error(), "answered 400") {
		t.Errorf("error %v, want the status alone", err)
	}
}

// TestUnauthorizedInvalidatesToken: a token CodeMie refuses is replaced;
// the attempt is retried when the token was old enough to have expired
// early or been revoked, and final when it was just fetched (a new one
// would be refused too: every attempt used to fetch one and be refused).
func TestUnauthorizedInvalidatesToken(t *testing.T) {
	api, cc, clock := clockedCredentials(t, 3600)
	c := newClient(t, api.URL, cc)
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Success {
		t.Fatalf("result %+v", res)
	}
	*clock = clock.Add(10 * time.Minute)
	api.FailWith(func(testenv.Call) int { return http.StatusUnauthorized })
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Retryable || res.Status != 401 {
		t.Fatalf("result %+v, want 401 retryable: the next attempt carries a new token", res)
	}
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Final || res.Status != 401 {
		t.Fatalf("result %+v, want 401 final: the token refused was just fetched", res)
	}
	api.FailWith(nil)
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Success {
		t.Fatalf("result %+v", res)
	}
	var got []string
	for _, call := range api.Calls() {
		if call.Path != "/token" {
			got = append(got, call.Header.Get("Authorization"))
		}
	}
	if want := []string{"Bearer access-1", "Bearer access-1", "Bearer access-2", "Bearer access-3"}; !slices.Equal(got, want) {
		t.Errorf("Authorization %q, want %q: each refused token replaced", got, want)
	}
}
