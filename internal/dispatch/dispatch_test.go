package dispatch

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func newClient(t *testing.T, base string, tokens Tokens) *Client {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{BaseURL: u, Tokens: tokens, Timeout: 5 * time.Second,
		Header: http.Header{"X-Env": {"test"}}, Client: &http.Client{}})
}

func job(resourceType, resourceID, body string) Job {
	return Job{WebhookID: "wh", ResourceType: resourceType, ResourceID: resourceID, UserID: "user-1", DeliveryID: "delivery-1", Body: []byte(body)}
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

type wantCall struct{ call, body string }

func checkCalls(t *testing.T, got []testenv.Call, want []wantCall) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].String() != w.call {
			t.Errorf("call %d: %s, want %s", i, got[i], w.call)
		}
		if w.body == "" {
			if got[i].Body != "" {
				t.Errorf("call %d: body %q, want none", i, got[i].Body)
			}
		} else if !jsonEqual(t, got[i].Body, w.body) {
			t.Errorf("call %d: body %s, want %s", i, got[i].Body, w.body)
		}
		h := got[i].Header
		for name, value := range map[string]string{"Authorization": "Bearer tok", "User-Id": "user-1", "X-Request-Id": "delivery-1",
			"Idempotency-Key": "delivery-1", "X-Env": "test", "Accept": "application/json"} {
			if h.Get(name) != value {
				t.Errorf("call %d: header %s = %q, want %q", i, name, h.Get(name), value)
			}
		}
		if w.body != "" && h.Get("Content-Type") != "application/json" {
			t.Errorf("call %d: Content-Type %q", i, h.Get("Content-Type"))
		}
	}
}

func TestDispatchResources(t *testing.T) {
	api := testenv.StartCodeMie(t) // serves testenv.Datasources
	c := newClient(t, api.URL, StaticToken("tok"))
	const body = `{"action":"opened","title":"<b>fix</b> & more"}`
	for _, tc := range []struct {
		name   string
		job    Job
		want   []wantCall
		answer *Answer
	}{
		{"assistant", job("assistant", "asst-1", body), []wantCall{
			{"POST /v1/conversations", `{"initial_assistant_id":"asst-1","folder":"job"}`},
			{"PUT /v1/conversations/conv-1", `{"name":"Webhook: asst-1"}`},
			{"POST /v1/assistants/asst-1/model", `{"conversation_id":"conv-1","text":` + quote(body) +
				`,"content_raw":` + quote("<p>"+body+"</p>") + `,"stream":false}`}, // not escaped, as the backend's f'<p>{task}</p>'
		}, nil},
		{"workflow", job("workflow", "wf-1", body), []wantCall{
			{"POST /v1/workflows/wf-1/executions", `{"user_input":` + quote(body) + `}`},
		}, nil},
		{"workflow, body not UTF-8", job("workflow", "wf-1", "a\xffb"), []wantCall{
			{"POST /v1/workflows/wf-1/executions", `{"user_input":"a\ufffdb"}`},
		}, nil},
		{"datasource provider", job("datasource", "ds-provider", body), []wantCall{
			{"GET /v1/index/ds-provider", ""}, {"PUT /v1/index/provider/ds-provider/reindex", `{}`},
		}, nil},
		{"datasource code", job("datasource", "ds-code", body), []wantCall{
			{"GET /v1/index/ds-code", ""}, {"PUT /v1/application/my%20proj/index/repo%2Fx?full_reindex=true", `{}`},
		}, nil},
		{"datasource summary", job("datasource", "ds-summary", body), []wantCall{
			{"GET /v1/index/ds-summary", ""}, {"PUT /v1/application/proj/index/repo?full_reindex=true", `{}`},
		}, nil},
		{"datasource chunk-summary", job("datasource", "ds-chunk", body), []wantCall{
			{"GET /v1/index/ds-chunk", ""}, {"PUT /v1/application/proj/index/repo?full_reindex=true", `{}`},
		}, nil},
		{"datasource jira", job("datasource", "ds-jira", body), []wantCall{
			{"GET /v1/index/ds-jira", ""}, {"PUT /v1/index/knowledge_base/jira?incremental_reindex=true", `{"name":"jira-kb","project_name":"proj","jql":"project = KB AND updated >= -1d"}`},
		}, nil},
		{"datasource confluence", job("datasource", "ds-confluence", body), []wantCall{
			{"GET /v1/index/ds-confluence", ""}, {"PUT /v1/index/knowledge_base/confluence?full_reindex=true", `{"name":"wiki","project_name":"proj"}`},
		}, nil},
		{"datasource google", job("datasource", "ds-google", body), []wantCall{
			{"GET /v1/index/ds-google", ""}, {"PUT /v1/index/knowledge_base/google/reindex", `{"name":"gdoc","project_name":"proj"}`},
		}, nil},
		{"datasource not reindexable", job("datasource", "ds-file", body), []wantCall{
			{"GET /v1/index/ds-file", ""},
		}, &Answer{Status: 403, Detail: "Datasource type 'knowledge_base_file' is not supported via webhook."}},
		{"unsupported resource type", job("robot", "r", body), nil,
			&Answer{Status: 400, Detail: "Unsupported resource type 'robot'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.Reset()
			res := c.Dispatch(context.Background(), tc.job)
			checkCalls(t, api.Calls(), tc.want)
			if tc.answer != nil {
				if res.Class != Final || res.Answer == nil || *res.Answer != *tc.answer {
					t.Errorf("result %+v, want final with answer %+v", res, tc.answer)
				}
				return
			}
			if res.Class != Success || res.Warning != "" {
				t.Errorf("result %+v, want success", res)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestDispatchFailures(t *testing.T) {
	api := testenv.StartCodeMie(t)
	c := newClient(t, api.URL, StaticToken("tok"))
	ctx := context.Background()
	status := func(method, path string, code int) func(testenv.Call) int {
		return func(c testenv.Call) int {
			if c.Method == method && strings.HasPrefix(c.Path, path) {
				return code
			}
			return 0
		}
	}
	for _, tc := range []struct {
		name       string
		fail       func(testenv.Call) int
		job        Job
		class      Class
		step       string
		code       int
		retryAfter time.Duration
		calls      []string
	}{
		{"404 resource", status("POST", "/v1/workflows/", 404), job("workflow", "missing", "x"), Final, "create workflow execution", 404, 0,
			[]string{"POST /v1/workflows/missing/executions"}},
		{"401 to a static token", status("POST", "/v1/workflows/", 401), job("workflow", "w", "x"), Final, "create workflow execution", 401, 0,
			[]string{"POST /v1/workflows/w/executions"}},
		{"500", status("POST", "/v1/workflows/", 500), job("workflow", "w", "x"), Retryable, "create workflow execution", 500, 0,
			[]string{"POST /v1/workflows/w/executions"}},
		{"408", status("POST", "/v1/workflows/", 408), job("workflow", "w", "x"), Retryable, "create workflow execution", 408, 0,
			[]string{"POST /v1/workflows/w/executions"}},
		{"429 with Retry-After", status("POST", "/v1/workflows/", 429), job("workflow", "w", "x"), Retryable, "create workflow execution", 429, 7 * time.Second,
			[]string{"POST /v1/workflows/w/executions"}},
		{"assistant model fails: conversation deleted", status("POST", "/v1/assistants/", 503), job("assistant", "a", "x"), Retryable, "call assistant", 503, 7 * time.Second,
			[]string{"POST /v1/conversations", "PUT /v1/conversations/conv-1", "POST /v1/assistants/a/model", "DELETE /v1/conversations/conv-1"}},
		{"assistant conversation not created", status("POST", "/v1/conversations", 422), job("assistant", "a", "x"), Final, "create conversation", 422, 0,
			[]string{"POST /v1/conversations"}},
		{"datasource unknown", nil, job("datasource", "nope", "x"), Final, "read datasource", 404, 0,
			[]string{"GET /v1/index/nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.Reset()
			api.FailWith(tc.fail)
			defer api.FailWith(nil)
			res := c.Dispatch(ctx, tc.job)
			if res.Class != tc.class || res.Step != tc.step || res.Status != tc.code || res.RetryAfter != tc.retryAfter {
				t.Errorf("result %+v\nwant class %v step %q status %d retry after %v", res, tc.class, tc.step, tc.code, tc.retryAfter)
			}
			if !strings.HasPrefix(res.Reason, tc.step+": ") || strings.Contains(res.Reason, "fake failure") {
				t.Errorf("reason %q: want the step and no upstream body", res.Reason)
			}
			var got []string
			for _, c := range api.Calls() {
				got = append(got, c.String())
			}
			if !reflect.DeepEqual(got, tc.calls) {
				t.Errorf("calls %v, want %v", got, tc.calls)
			}
		})
	}
}

// TestDispatchAnswerCutShort: a 2xx answer cut short (the connection
// lost, the call's timeout, a stop) is retried, not dead-lettered; one
// that is not the JSON expected is final; the workflow call needs no
// answer at all.
func TestDispatchAnswerCutShort(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		job    Job
		class  Class
	}{
		{"conversation answer cut", cutAnswer(`{"id":`), job("assistant", "a", "x"), Retryable},
		{"conversation answer not JSON", func(w http.ResponseWriter) { _, _ = w.Write([]byte("<html>")) }, job("assistant", "a", "x"), Final},
		{"conversation answer empty", func(http.ResponseWriter) {}, job("assistant", "a", "x"), Final},
		{"datasource answer cut", cutAnswer(`{"index_type":`), job("datasource", "d", "x"), Retryable},
		{"datasource answer too long", func(w http.ResponseWriter) {
			_, _ = w.Write([]byte(`{"index_type":"` + strings.Repeat("x", maxResponse) + `"}`))
		}, job("datasource", "d", "x"), Final},
		{"execution answer empty", func(http.ResponseWriter) {}, job("workflow", "w", "x"), Success},
		{"execution answer cut", cutAnswer(`{"execution_id":`), job("workflow", "w", "x"), Success},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				tc.answer(w)
			}))
			t.Cleanup(api.Close)
			res := newClient(t, api.URL, StaticToken("tok")).Dispatch(context.Background(), tc.job)
			if res.Class != tc.class || res.Status != http.StatusOK {
				t.Errorf("result %+v, want %s", res, tc.class)
			}
		})
	}
}

// TestHTTPClientBoundsHeaders: the shared client reads at most
// maxResponseHeader bytes of an answer's headers (Go's default, 10 MiB,
// for each of hundreds of calls in flight).
func TestHTTPClientBoundsHeaders(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("x", maxResponseHeader))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(api.Close)
	u, _ := url.Parse(api.URL)
	res := New(Config{BaseURL: u, Tokens: StaticToken("tok"), Client: HTTPClient}).Dispatch(context.Background(), job("workflow", "w", "x"))
	if res.Class != Retryable || res.Status != 0 || !strings.Contains(res.Reason, "headers exceeded") {
		t.Errorf("result %+v, want the answer refused for its headers", res)
	}
}

// cutAnswer writes the start of an answer, then drops the connection.
func cutAnswer(start string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		_, _ = w.Write([]byte(start))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

func TestDispatchRenameFailureIsAWarning(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.FailWith(func(c testenv.Call) int {
		if c.Method == "PUT" {
			return 500
		}
		return 0
	})
	res := newClient(t, api.URL, StaticToken("tok")).Dispatch(context.Background(), job("assistant", "a", "x"))
	if res.Class != Success || !strings.Contains(res.Warning, "rename conversation: CodeMie answered 500") {
		t.Errorf("result %+v: want success with a warning", res)
	}
}

func TestDispatch500ThenSuccess(t *testing.T) {
	api := testenv.StartCodeMie(t)
	c := newClient(t, api.URL, StaticToken("tok"))
	api.FailWith(func(testenv.Call) int { return 500 })
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Retryable {
		t.Fatalf("first attempt %+v, want retryable", res)
	}
	api.FailWith(nil)
	if res := c.Dispatch(context.Background(), job("workflow", "w", "x")); res.Class != Success {
		t.Fatalf("second attempt %+v, want success", res)
	}
	calls := api.Calls()
	if len(calls) != 2 || calls[0].Header.Get("Idempotency-Key") != calls[1].Header.Get("Idempotency-Key") {
		t.Errorf("both attempts must carry the same Idempotency-Key: %v", calls)
	}
}

func TestDispatchUpstreamDown(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, "http://127.0.0.1:"+strconv.Itoa(port), StaticToken("tok"))
	res := c.Dispatch(context.Background(), job("workflow", "w", "x"))
	if res.Class != Retryable || res.Status != 0 || !strings.Contains(res.Reason, "connection refused") {
		t.Errorf("result %+v, want retryable: connection refused", res)
	}
}

// TestDispatchReasonQuotesNoPeer: a peer whose answer is malformed gets a
// reason in the edge's own words, that quotes nothing it sent. Go's
// transport quotes a malformed line whole (a megabyte of it went to the
// logs, the delivery log and dead letters), and a peer that echoes the
// request had the bearer token, or the token form's client secret, quoted
// back.
func TestDispatchReasonQuotesNoPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go echoMalformed(conn)
		}
	}()
	for _, tokens := range []Tokens{
		StaticToken("tok-s3cret"),
		NewClientCredentials("http://"+ln.Addr().String()+"/token", "id", "client-s3cret", &http.Client{}),
	} {
		c := newClient(t, "http://"+ln.Addr().String(), tokens)
		res := c.Dispatch(context.Background(), job("workflow", "w", "x"))
		if res.Class != Retryable || strings.Contains(res.Reason, "s3cret") || !strings.Contains(res.Reason, "malformed") {
			t.Errorf("result %s %q, want a retryable reason naming the fault, quoting nothing", res.Class, res.Reason)
		}
	}
}

// echoMalformed answers a request with its body and its Authorization as
// a header line without a colon: malformed, and quoted in Go's error.
func echoMalformed(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	req, err := http.ReadRequest(r)
	if err != nil {
		return
	}
	body, _ := io.ReadAll(req.Body)
	echo := strings.NewReplacer(":", "", "\n", "", "\r", "").Replace(string(body) + " " + req.Header.Get("Authorization"))
	_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\n" + echo + "\r\n\r\n"))
}

func TestShortReason(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // bytes
	}{
		{"", 0},
		{strings.Repeat("a", MaxReason), MaxReason},
		{strings.Repeat("a", MaxReason+1), MaxReason},
		{strings.Repeat("é", MaxReason), MaxReason - 1}, // cut between characters: 2 bytes each
	} {
		got := ShortReason(tc.in)
		if len(got) != tc.want || !utf8.ValidString(got) {
			t.Errorf("ShortReason of %d bytes: %d bytes (valid UTF-8: %v), want %d", len(tc.in), len(got), utf8.ValidString(got), tc.want)
		}
	}
}

func TestDispatchTimeout(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.HangOn(func(testenv.Call) bool { return true })
	c := newClient(t, api.URL, StaticToken("tok"))
	c.cfg.Timeout = 50 * time.Millisecond
	res := c.Dispatch(context.Background(), job("workflow", "w", "x"))
	if res.Class != Retryable || res.Reason != "create workflow execution: timed out" {
		t.Errorf("result %+v, want retryable: timed out", res)
	}
}

// TestDispatchUnbuildableCalls covers values that would walk the API's
// paths or break a header: no call leaves, and the result is final, since
// no retry can build the call.
func TestDispatchUnbuildableCalls(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.SetDatasource("ds-dotdot", testenv.Datasource{IndexType: "code", ProjectName: "..", RepoName: "repo"})
	c := newClient(t, api.URL, StaticToken("t"))
	withUser := func(j Job, user string) Job { j.UserID = user; return j }
	withDelivery := func(j Job, id string) Job { j.DeliveryID = id; return j }
	for _, tc := range []struct {
		name  string
		job   Job
		calls int // calls that did leave before the one that could not be built
	}{
		{"workflow id ..", job("workflow", "..", "{}"), 0},
		{"workflow id .", job("workflow", ".", "{}"), 0},
		{"workflow id empty", job("workflow", "", "{}"), 0},
		{"assistant id ..", job("assistant", "..", "{}"), 0},
		{"datasource id ..", job("datasource", "..", "{}"), 0},
		{"datasource project ..", job("datasource", "ds-dotdot", "{}"), 1},
		{"user id with CRLF", withUser(job("workflow", "wf", "{}"), "u\r\nX-Evil: 1"), 0},
		{"delivery id with LF", withDelivery(job("workflow", "wf", "{}"), "d\nX"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.Reset()
			res := c.Dispatch(context.Background(), tc.job)
			if res.Class != Final {
				t.Errorf("class %v (%s), want final", res.Class, res.Reason)
			}
			if got := api.Calls(); len(got) != tc.calls {
				t.Errorf("calls %v, want %d", got, tc.calls)
			}
		})
	}
}

// TestDispatchStaysOnTheBaseHost: a base path with an empty segment would
// make "//v1/..." a network-path reference to host v1.
func TestDispatchStaysOnTheBaseHost(t *testing.T) {
	api := testenv.StartCodeMie(t)
	c := newClient(t, api.URL+"//v1", StaticToken("t"))
	res := c.Dispatch(context.Background(), job("workflow", "wf", "{}"))
	if res.Class != Final || !strings.Contains(res.Reason, "leaves the API's host") {
		t.Errorf("result %+v, want final: leaves the API's host", res)
	}
}

// TestDispatchFormEncodedText: a form-encoded GitHub delivery's text is its
// payload field, the JSON document, not the raw form; other bodies are
// sent as they are.
func TestDispatchFormEncodedText(t *testing.T) {
	api := testenv.StartCodeMie(t)
	c := newClient(t, api.URL, StaticToken("tok"))
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, contentType, body, want string
	}{
		{"form with payload", form, "payload=%7B%22action%22%3A%22opened%22%7D", `{"action":"opened"}`},
		{"form with charset", form + "; charset=utf-8", "payload=%7B%7D&other=1", `{}`},
		{"JSON under the form type", form, `{"action":"opened"}`, `{"action":"opened"}`},
		{"form without payload", form, "a=1&b=2", "a=1&b=2"},
		{"JSON", "application/json", `{"payload":"x"}`, `{"payload":"x"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.Reset()
			j := job("workflow", "wf", tc.body)
			j.ContentType = tc.contentType
			if res := c.Dispatch(context.Background(), j); res.Class != Success {
				t.Fatalf("result %+v", res)
			}
			want, _ := json.Marshal(map[string]string{"user_input": tc.want})
			checkCalls(t, api.Calls(), []wantCall{{"POST /v1/workflows/wf/executions", string(want)}})
		})
	}
}

// TestDispatchJiraWithoutStoredJQL: a Jira datasource with no stored JQL is
// reindexed with "" as CodeMie's own webhook does; the field itself is
// required (the fake, as CodeMie, answers 422 without it).
func TestDispatchJiraWithoutStoredJQL(t *testing.T) {
	api := testenv.StartCodeMie(t)
	api.SetDatasource("ds-jira-nojql", testenv.Datasource{IndexType: "knowledge_base_jira", ProjectName: "proj", RepoName: "kb"})
	c := newClient(t, api.URL, StaticToken("tok"))
	if res := c.Dispatch(context.Background(), job("datasource", "ds-jira-nojql", "{}")); res.Class != Success {
		t.Fatalf("result %+v", res)
	}
	checkCalls(t, api.Calls(), []wantCall{{"GET /v1/index/ds-jira-nojql", ""},
		{"PUT /v1/index/knowledge_base/jira?incremental_reindex=true", `{"name":"kb","project_name":"proj","jql":""}`}})

	req, _ := http.NewRequest(http.MethodPut, api.URL+"/v1/index/knowledge_base/jira?incremental_reindex=true",
		strings.NewReader(`{"name":"kb","project_name":"proj"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("the fake answered %d to a reindex without jql, want 422 as CodeMie", resp.StatusCode)
	}
}
