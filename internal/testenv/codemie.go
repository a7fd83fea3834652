package testenv

import (
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
}

// Datasources has one datasource of each index type the contract names,
// and one that cannot be reindexed, by id.
var Datasources = map[string]Datasource{
	"ds-provider":   {IndexType: "provider", ProjectName: "proj", RepoName: "repo"},
	"ds-code":       {IndexType: "code", ProjectName: "my proj", RepoName: "repo/x"},
	"ds-summary":    {IndexType: "summary", ProjectName: "proj", RepoName: "repo"},
	"ds-chunk":      {IndexType: "chunk-summary", ProjectName: "proj", RepoName: "repo"},
	"ds-jira":       {IndexType: "knowledge_base_jira", ProjectName: "proj", RepoName: "jira-kb"},
	"ds-confluence": {IndexType: "knowledge_base_confluence", ProjectName: "proj", RepoName: "wiki"},
	"ds-google":     {IndexType: "llm_routing_google", ProjectName: "proj", RepoName: "gdoc"},
	"ds-file":       {IndexType: "knowledge_base_file", ProjectName: "proj", RepoName: "files"},
}

// CodeMie is a fake CodeMie API that answers the calls the plugin makes
// (codemie-contract.md section 4) and records every one. It also serves an
// OAuth2 token endpoint at /token.
type CodeMie struct {
	*httptest.Server

	mu          sync.Mutex
	calls       []Call
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
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
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
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenFail = status
}

// SetTokenTTL sets the expires_in, in seconds, of the tokens issued next.
func (f *CodeMie) SetTokenTTL(seconds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenTTL = seconds
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
	switch {
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
