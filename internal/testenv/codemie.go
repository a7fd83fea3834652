package testenv

import (
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Call is one request the fake CodeMie API received.
type Call struct {
	Method string
	// Path is the escaped path and, if any, "?" and the raw query.
	Path   string
	Header http.Header
	Body   string
	// Status is what the fake answered; 0 when it never did (a hung call,
	// or the API being down).
	Status int
}

// String is "METHOD path", which is what most assertions compare.
func (c Call) String() string { return c.Method + " " + c.Path }

// Datasource is a record that GET /v1/index/{id} answers.
type Datasource struct {
	IndexType   string `json:"index_type"`
	ProjectName string `json:"project_name"`
	RepoName    string `json:"repo_name"`
	// Jira is a Jira datasource's settings; CodeMie stores its JQL there.
	Jira *JiraSettings `json:"jira,omitempty"`
}

// JiraSettings are the Jira part of a datasource, as GET /v1/index/{id}
// answers it.
type JiraSettings struct {
	JQL string `json:"jql"`
}

// Datasources has one datasource of each index type docs/codemie-api.md
// section 4 names, and one that cannot be reindexed, by id.
var Datasources = map[string]Datasource{
	"ds-provider":   {IndexType: "provider", ProjectName: "proj", RepoName: "repo"},
	"ds-code":       {IndexType: "code", ProjectName: "my proj", RepoName: "repo/x"},
	"ds-summary":    {IndexType: "summary", ProjectName: "proj", RepoName: "repo"},
	"ds-chunk":      {IndexType: "chunk-summary", ProjectName: "proj", RepoName: "repo"},
	"ds-jira":       {IndexType: "knowledge_base_jira", ProjectName: "proj", RepoName: "jira-kb", Jira: &JiraSettings{JQL: "project = KB AND updated >= -1d"}},
	"ds-confluence": {IndexType: "knowledge_base_confluence", ProjectName: "proj", RepoName: "wiki"},
	"ds-google":     {IndexType: "llm_routing_google", ProjectName: "proj", RepoName: "gdoc"},
	"ds-file":       {IndexType: "knowledge_base_file", ProjectName: "proj", RepoName: "files"},
}

// CodeMie is a fake CodeMie API that answers the calls the plugin makes
// (docs/codemie-api.md section 4) and records every one. It also serves an
// OAuth2 token endpoint at /token.
type CodeMie struct {
	*httptest.Server

	mu          sync.Mutex
	calls       []Call
	webhooks    map[string]Webhook
	settings    []Setting
	datasources map[string]Datasource
	fail        func(Call) int
	hang        func(Call) bool
	released    chan struct{} // closed when the hang is lifted
	down        bool
	tokens      int
	tokenFail   int
	tokenTTL    int
	nextID      int
}

// Token endpoint credentials the fake accepts.
const (
	FakeClientID     = "edge-client"
	FakeClientSecret = "edge-client-secret-0f9e"
)

// StartCodeMie starts a fake CodeMie API, closed when the test ends.
func StartCodeMie(t testing.TB) *CodeMie {
	t.Helper()
	f := &CodeMie{datasources: map[string]Datasource{}, tokenTTL: 300}
	for id, ds := range Datasources {
		f.datasources[id] = ds
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// SetDatasource makes GET /v1/index/{id} answer ds.
func (f *CodeMie) SetDatasource(id string, ds Datasource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.datasources[id] = ds
}

// FailWith makes every call for which fn returns a status other than 0 be
// answered with that status (after being recorded); 429 and 503 answers
// carry Retry-After: 7. nil clears it.
func (f *CodeMie) FailWith(fn func(Call) int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// HangOn makes every call for which fn returns true wait until the caller
// gives up or the hang is lifted (after being recorded). nil lifts it: the
// calls waiting then go on to be answered.
func (f *CodeMie) HangOn(fn func(Call) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.released != nil {
		close(f.released)
		f.released = nil
	}
	f.hang = fn
	if fn != nil {
		f.released = make(chan struct{})
	}
}

// SetDown makes every call fail as if the API were down: the connection is
// closed without an answer.
func (f *CodeMie) SetDown(down bool) {
	setLocked(&f.mu, &f.down, down)
}

// Succeeded counts, per delivery id (Idempotency-Key), the calls answered 2xx.
func (f *CodeMie) Succeeded() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, c := range f.calls {
		if c.Status >= 200 && c.Status < 300 {
			out[c.Header.Get("Idempotency-Key")]++
		}
	}
	return out
}

// FailTokens makes the token endpoint answer status (0: work again).
func (f *CodeMie) FailTokens(status int) {
	setLocked(&f.mu, &f.tokenFail, status)
}

// SetTokenTTL sets the expires_in, in seconds, of the tokens issued next.
func (f *CodeMie) SetTokenTTL(seconds int) {
	setLocked(&f.mu, &f.tokenTTL, seconds)
}

// TokensIssued counts the tokens the token endpoint gave out.
func (f *CodeMie) TokensIssued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens
}

// Calls returns the API calls received so far (token requests excluded).
func (f *CodeMie) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Reset forgets the calls received so far and numbers ids from 1 again.
func (f *CodeMie) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.nextID = nil, 0
}

func (f *CodeMie) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.serveToken(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	c := Call{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: string(body)}
	if r.URL.RawQuery != "" {
		c.Path += "?" + r.URL.RawQuery
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	index := len(f.calls) - 1
	fail, hang, released, down := f.fail, f.hang, f.released, f.down
	f.nextID++
	n := f.nextID
	ds, dsOK := f.datasources[strings.TrimPrefix(r.URL.Path, "/v1/index/")]
	f.mu.Unlock()

	if down {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	if hang != nil && hang(c) {
		select {
		case <-r.Context().Done():
			return
		case <-released:
		}
	}
	status := http.StatusOK
	if fail != nil {
		if s := fail(c); s != 0 {
			status = s
		}
	}
	f.mu.Lock()
	f.calls[index].Status = status
	f.mu.Unlock()
	if status != http.StatusOK {
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"detail":"fake failure %d"}`, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if detail := invalidBody(r, body); detail != "" {
		// FastAPI's answer to a body its model refuses.
		f.mu.Lock()
		f.calls[index].Status = http.StatusUnprocessableEntity
		f.mu.Unlock()
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, detail)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/settings/project":
		status, answer := f.settingsPage(r)
		f.mu.Lock()
		f.calls[index].Status = status
		f.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, answer)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/webhooks/"):
		status, answer := f.webhook(strings.TrimPrefix(r.URL.Path, "/v1/webhooks/"), r.Header, body)
		f.mu.Lock()
		f.calls[index].Status = status
		f.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, answer)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/conversations":
		fmt.Fprintf(w, `{"id":"conv-%d"}`, n)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/executions"):
		fmt.Fprintf(w, `{"execution_id":"exec-%d"}`, n)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/index/"):
		if !dsOK {
			f.mu.Lock()
			f.calls[index].Status = http.StatusNotFound
			f.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"detail":"Datasource not found"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(ds)
	default:
		fmt.Fprint(w, `{}`)
	}
}

func (f *CodeMie) serveToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case f.tokenFail != 0:
		w.WriteHeader(f.tokenFail)
		fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
	case r.PostForm.Get("grant_type") != "client_credentials" || id != FakeClientID || secret != FakeClientSecret:
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
	default:
		f.tokens++
		fmt.Fprintf(w, `{"access_token":"access-%d","token_type":"Bearer","expires_in":%d}`, f.tokens, f.tokenTTL)
	}
}

// requiredFields are the body fields CodeMie's request models require, by
// "METHOD path" (UpdateKnowledgeBaseJiraRequest, ReIndexKnowledgeBaseRequest,
// UpdateKnowledgeBaseConfluenceRequest): a call without one is answered
// 422. An empty string is a value.
var requiredFields = map[string][]string{
	"PUT /v1/index/knowledge_base/jira":           {"name", "project_name", "jql"},
	"PUT /v1/index/knowledge_base/confluence":     {"name", "project_name"},
	"PUT /v1/index/knowledge_base/google/reindex": {"name", "project_name"},
}

// invalidBody returns CodeMie's 422 body (its own validation handler's
// shape, not FastAPI's default) for a call whose JSON body lacks a field
// the endpoint's model requires, or "".
func invalidBody(r *http.Request, body []byte) string {
	fields, ok := requiredFields[r.Method+" "+r.URL.Path]
	if !ok {
		return ""
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		return `{"error":{"message":"Invalid request","details":[{"loc":["body"],"msg":"JSON decode error","type":"json_invalid"}]}}`
	}
	for _, f := range fields {
		if _, ok := got[f].(string); !ok {
			return fmt.Sprintf(`{"error":{"message":"Invalid request","details":[{"loc":["body",%q],"msg":"Field required","type":"missing"}]}}`, f)
		}
	}
	return ""
}

// Webhook is an integration as CodeMie's own webhook endpoint checks it.
type Webhook struct {
	GitHubSecret      string
	GitLabToken       string
	SecureHeaderName  string
	SecureHeaderValue string
}

// SetWebhook makes POST /v1/webhooks/{id} check deliveries against wh.
func (f *CodeMie) SetWebhook(id string, wh Webhook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.webhooks == nil {
		f.webhooks = map[string]Webhook{}
	}
	f.webhooks[id] = wh
}

// webhook answers POST /v1/webhooks/{id} as CodeMie's router does
// (rest_api/routers/webhook.py and its security modules): the first
// mechanism that matches the request's provider decides; GitHub's
// signature is an HMAC-SHA256 over the raw body.
func (f *CodeMie) webhook(id string, h http.Header, body []byte) (int, string) {
	f.mu.Lock()
	wh, ok := f.webhooks[id]
	f.mu.Unlock()
	detail := func(status int, msg string) (int, string) {
		b, _ := json.Marshal(map[string]string{"detail": msg})
		return status, string(b)
	}
	ua := h.Get("User-Agent")
	switch {
	case !ok:
		return detail(http.StatusBadRequest, "Webhook with ID '"+id+"' not found or not enabled")
	case wh.GitHubSecret != "" && (h.Get("X-Hub-Signature-256") != "" || h.Get("X-Hub-Signature") != "" ||
		h.Get("X-GitHub-Event") != "" || strings.Contains(ua, "GitHub-Hookshot")):
		sig, has := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
		switch {
		case h.Get("X-Hub-Signature-256") == "":
			return detail(http.StatusUnauthorized, "Missing GitHub webhook signature header")
		case !has || !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(HMACSHA256([]byte(wh.GitHubSecret), string(body))))):
			return detail(http.StatusUnauthorized, "Invalid GitHub webhook signature")
		}
	case wh.GitLabToken != "" && (h.Get("X-Gitlab-Event") != "" || h.Get("X-Gitlab-Token") != "" || strings.HasPrefix(ua, "GitLab/")):
		if !hmac.Equal([]byte(h.Get("X-Gitlab-Token")), []byte(wh.GitLabToken)) {
			return detail(http.StatusUnauthorized, "Invalid GitLab token")
		}
	case wh.SecureHeaderName != "" && wh.SecureHeaderValue != "":
		if h.Get(wh.SecureHeaderName) != wh.SecureHeaderValue {
			return detail(http.StatusUnauthorized, "Invalid security header")
		}
	}
	return http.StatusOK, `{"message":"Webhook invoked successfully"}`
}

// Setting is a settings row as CodeMie's settings API answers it.
type Setting struct {
	ID               string            `json:"id"`
	UserID           string            `json:"user_id"`
	ProjectName      string            `json:"project_name"`
	Alias            string            `json:"alias"`
	CredentialType   string            `json:"credential_type"`
	CredentialValues []CredentialValue `json:"credential_values"`
	SettingType      string            `json:"setting_type"`
}

// CredentialValue is one key of a setting's credential_values.
type CredentialValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// SetSettings replaces the project settings that GET /v1/settings/project
// lists, newest first as CodeMie orders them.
func (f *CodeMie) SetSettings(settings []Setting) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settings = settings
}

// sensitiveFields are the webhook fields CodeMie's settings API masks
// (LIST_OF_SENSITIVE_FIELDS: secure_header_value only; GitHub and GitLab
// secrets come back in clear).
var sensitiveFields = map[string]bool{"secure_header_value": true}

// settingsPage answers GET /v1/settings/project as CodeMie does
// (rest_api/routers/project_settings.py): authenticated callers only;
// filters a JSON object whose "type" is the credential type; page from 0,
// per_page default 10; sensitive values masked as ten asterisks, empty
// ones not.
func (f *CodeMie) settingsPage(r *http.Request) (int, string) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return http.StatusUnauthorized, `{"detail":"Not authenticated"}`
	}
	q := r.URL.Query()
	var filters map[string]string
	if v := q.Get("filters"); v != "" {
		if err := json.Unmarshal([]byte(v), &filters); err != nil {
			return http.StatusInternalServerError, `{"detail":"Internal Server Error"}` // CodeMie does not catch it
		}
	}
	page, perPage := 0, 10
	fmt.Sscan(q.Get("page"), &page)
	fmt.Sscan(q.Get("per_page"), &perPage)
	if page < 0 || perPage < 1 {
		return http.StatusUnprocessableEntity, `{"error":{"message":"Invalid request","details":[]}}`
	}
	f.mu.Lock()
	var rows []Setting
	for _, s := range f.settings {
		if t := filters["type"]; t == "" || s.CredentialType == t {
			rows = append(rows, masked(s))
		}
	}
	f.mu.Unlock()
	total := len(rows)
	pages := (total + perPage - 1) / perPage
	from, to := min(page*perPage, total), min((page+1)*perPage, total)
	data := rows[from:to]
	if data == nil {
		data = []Setting{}
	}
	b, _ := json.Marshal(map[string]any{"data": data,
		"pagination": map[string]int{"page": page, "per_page": perPage, "total": total, "pages": pages}})
	return http.StatusOK, string(b)
}

// masked is s as the settings API shows it.
func masked(s Setting) Setting {
	values := make([]CredentialValue, len(s.CredentialValues))
	for i, c := range s.CredentialValues {
		if v, ok := c.Value.(string); ok && v != "" && sensitiveFields[c.Key] {
			c.Value = "**********"
		}
		values[i] = c
	}
	s.CredentialValues = values
	return s
}

// setLocked sets *dst to v under mu: how a fake's knobs are turned while
// it serves.
func setLocked[T any](mu *sync.Mutex, dst *T, v T) {
	mu.Lock()
	defer mu.Unlock()
	*dst = v
}
