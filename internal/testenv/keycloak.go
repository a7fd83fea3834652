package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Keycloak client of the fake, as a Keycloak service account.
const (
	KeycloakClientID     = "codemie-webhooks-edge"
	KeycloakClientSecret = "edge-client-secret-4f1d"
)

// Keycloak is a fake Keycloak token endpoint
// ({issuer}/protocol/openid-connect/token) for one confidential client
// with a service account, as Keycloak answers it:
//   - grant_type=client_credentials: the service account's token;
//   - grant_type=urn:ietf:params:oauth:grant-type:token-exchange with a
//     subject_token and requested_subject (Keycloak's legacy token exchange,
//     impersonation): a token whose subject is that user, when the client
//     may impersonate. The user is looked up by username, then by id; an
//     unknown user is answered like a client not allowed to exchange (403
//     access_denied "Client not allowed to exchange"), so that user names
//     cannot be fished; a subject token it did not issue is 400
//     invalid_request "Invalid token"; a bad client 401 invalid_client.
//
// Every token it issues is recorded with its subject, so that tests can
// tell whose identity a call to the fake CodeMie carried.
type Keycloak struct {
	*httptest.Server
	// TokenURL is the token endpoint's URL.
	TokenURL string

	mu          sync.Mutex
	users       map[string]string // id -> username
	impersonate bool
	subjects    map[string]string // token -> subject (user id, or service-account-<client>)
	exchanges   int
	down        int // status to answer every request with; 0: none
	exchangeErr int // status to answer token exchanges with; 0: none
}

// ServiceAccount is the subject of the client's own tokens.
const ServiceAccount = "service-account-" + KeycloakClientID

// StartKeycloak starts a fake Keycloak that knows users (id -> username)
// and lets the client impersonate them.
func StartKeycloak(t testing.TB, users map[string]string) *Keycloak {
	t.Helper()
	k := &Keycloak{users: users, impersonate: true, subjects: map[string]string{}}
	k.Server = httptest.NewServer(http.HandlerFunc(k.serve))
	k.TokenURL = k.URL + "/realms/codemie/protocol/openid-connect/token"
	t.Cleanup(k.Close)
	return k
}

// SetImpersonation allows or forbids the client to impersonate users.
func (k *Keycloak) SetImpersonation(allowed bool) {
	setLocked(&k.mu, &k.impersonate, allowed)
}

// SetDown makes every request answer status (0: work again).
func (k *Keycloak) SetDown(status int) {
	setLocked(&k.mu, &k.down, status)
}

// FailExchanges makes token exchanges (only) answer status, as Keycloak
// answers a failure of its own (0: work again).
func (k *Keycloak) FailExchanges(status int) {
	setLocked(&k.mu, &k.exchangeErr, status)
}

// Forget makes the fake forget every token it issued, as a Keycloak
// restarted with new keys would: they are then "Invalid token".
func (k *Keycloak) Forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.subjects = map[string]string{}
}

// Subject returns the subject of a token the fake issued ("" if none).
func (k *Keycloak) Subject(token string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.subjects[token]
}

// Exchanges counts the token exchanges granted.
func (k *Keycloak) Exchanges() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exchanges
}

func (k *Keycloak) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case k.down != 0:
		oauthError(w, k.down, "temporarily_unavailable", "Service unavailable")
		return
	case r.Method != http.MethodPost || r.URL.Path != "/realms/codemie/protocol/openid-connect/token":
		oauthError(w, http.StatusNotFound, "not_found", "Not found")
		return
	}
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != KeycloakClientID || secret != KeycloakClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		k.issue(w, ServiceAccount)
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		k.exchange(w, r)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

// exchange answers a token exchange. k.mu is held.
func (k *Keycloak) exchange(w http.ResponseWriter, r *http.Request) {
	if k.exchangeErr != 0 {
		oauthError(w, k.exchangeErr, "server_error", "Unexpected error")
		return
	}
	subject, ok := k.subjects[r.PostForm.Get("subject_token")]
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid token")
		return
	}
	requested := r.PostForm.Get("requested_subject")
	if requested == "" {
		k.issue(w, subject) // a plain exchange keeps the subject
		return
	}
	user := ""
	for uid, name := range k.users {
		if name == requested {
			user = uid
		}
	}
	if _, known := k.users[requested]; user == "" && known {
		user = requested
	}
	if user == "" || !k.impersonate || subject != ServiceAccount {
		oauthError(w, http.StatusForbidden, "access_denied", "Client not allowed to exchange")
		return
	}
	k.exchanges++
	k.issue(w, user)
}

// issue answers a new token for subject. k.mu is held.
func (k *Keycloak) issue(w http.ResponseWriter, subject string) {
	token := fmt.Sprintf("kctok-%d-%s", len(k.subjects)+1, subject)
	k.subjects[token] = subject
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": token, "expires_in": 300, "refresh_expires_in": 0, "token_type": "Bearer",
		"not-before-policy": 0, "scope": "profile email",
	})
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
