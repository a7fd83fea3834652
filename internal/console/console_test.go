package console_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/console"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const token = "csrf-token-3b9d"

type sources struct {
	q *delivery.Queue
	l *history.Log
}

func (s sources) Queue() (*delivery.Queue, error) { return s.q, nil }
func (s sources) Log() (*history.Log, error)      { return s.l, nil }

// server serves the console at /c/, as a mount point would.
func server(t *testing.T) (*httptest.Server, *history.Log) {
	srv, l, _ := serverWith(t)
	return srv, l
}

// serverWith is server, with the console.
func serverWith(t *testing.T) (*httptest.Server, *history.Log, *console.Console) {
	t.Helper()
	r := testenv.StartRedis(t)
	space := keyspace.Space{Prefix: keyspace.DefaultPrefix}
	l := history.New(r.Client, space.Log(), space.LogUnauthenticated(), history.Limits{MaxEntries: 100})
	c := console.New(sources{delivery.NewQueue(r.Client, delivery.Config{Space: space, Consumer: "test"}), l}, token)
	c.Interval, c.Block = 50*time.Millisecond, 10*time.Millisecond
	srv := httptest.NewServer(http.StripPrefix("/c/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Serve(w, r, r.URL.Path); err != nil {
			status := http.StatusInternalServerError
			if ce, ok := err.(*console.Error); ok {
				status = ce.Status
			}
			http.Error(w, err.Error(), status)
		}
	})))
	t.Cleanup(srv.Close)
	return srv, l, c
}

func TestMutationsRefuseCrossSite(t *testing.T) {
	srv, _ := server(t)
	replay := srv.URL + "/c/api/dead/1-0/replay"
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", nil, http.StatusForbidden},
		{"wrong token", map[string]string{"X-CSRF-Token": "guess"}, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site but another origin", map[string]string{"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"another origin", map[string]string{"X-CSRF-Token": token, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"a form post from another site", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, http.StatusForbidden},
		// Past the checks: the dead letter does not exist.
		{"the page's own", map[string]string{"X-CSRF-Token": token, "Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, http.StatusNotFound},
		{"a client that is not a browser", map[string]string{"X-CSRF-Token": token}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, replay, strings.NewReader("x=1"))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// A GET changes nothing.
	resp, err := http.Get(replay)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET replay: %d", resp.StatusCode)
	}
}

func TestPageAndAPI(t *testing.T) {
	srv, l := server(t)
	resp, err := http.Get(srv.URL + "/c/")
	if err != nil {
		t.Fatal(err)
	}
	page := new(strings.Builder)
	_, _ = bufio.NewReader(resp.Body).WriteTo(page)
	resp.Body.Close()
	if !strings.Contains(page.String(), `content="`+token+`"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("the page lacks its token or its policy: %s", resp.Header)
	}
	for path, want := range map[string]int{
		"/c/app.js": 200, "/c/style.css": 200, "/c/api/summary": 200, "/c/api/deliveries": 200, "/c/api/counts": 200, "/c/api/dead": 200,
		"/c/api/deliveries?outcome=bogus": 400, "/c/api/deliveries?before=x": 400, "/c/api/dead?count=0": 400, "/c/nope": 404,
		"/c/../console.go": 404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// Live: a record written after the stream opened arrives on it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/c/api/events?webhook=wh", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: %s", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	waitFor := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				return lines.Text()
			}
		}
		t.Fatalf("no %q on the stream: %v", prefix, lines.Err())
		return ""
	}
	waitFor("event: summary") // the stream is open
	recs := []history.Record{
		{Time: time.Now(), WebhookID: "other", Outcome: history.Accepted},
		{Time: time.Now(), WebhookID: "wh", DeliveryID: "d-live", Outcome: history.Dispatched},
	}
	if err := l.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	waitFor("event: delivery")
	if data := waitFor("data: "); !strings.Contains(data, `"delivery_id":"d-live"`) {
		t.Errorf("streamed %s", data)
	}
}

// TestStalledStreamEnds: a client that opens an events stream and stops
// reading has its stream ended once a write has waited WriteTimeout, and
// its slot freed; it used to hold both (and a shutdown) until MaxStream.
func TestStalledStreamEnds(t *testing.T) {
	r := testenv.StartRedis(t)
	space := keyspace.Space{Prefix: keyspace.DefaultPrefix}
	l := history.New(r.Client, space.Log(), space.LogUnauthenticated(), history.Limits{MaxEntries: 100_000})
	c := console.New(sources{delivery.NewQueue(r.Client, delivery.Config{Space: space, Consumer: "test"}), l}, token)
	c.Interval, c.Block, c.WriteTimeout = 50*time.Millisecond, 10*time.Millisecond, 200*time.Millisecond
	ended := make(chan struct{})
	srv := httptest.NewServer(http.StripPrefix("/c/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = c.Serve(w, r, r.URL.Path)
		close(ended)
	})))
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(2048)
	if _, err := conn.Write([]byte("GET /c/api/events HTTP/1.1\r\nHost: edge\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Records enough to fill the socket's buffers, while the client reads
	// nothing, until the stream ends.
	reason := strings.Repeat("r", 512)
	ctx := context.Background()
	for range 1000 {
		select {
		case <-ended:
			return
		default:
		}
		batch := make([]history.Record, 100)
		for j := range batch {
			batch[j] = history.Record{Time: time.Now(), WebhookID: "wh", Outcome: history.Dispatched, Reason: reason}
		}
		if err := l.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled stream did not end")
	}
}

// TestCloseEndsStreams: a server shutting down does not wait on open
// consoles' event streams.
func TestCloseEndsStreams(t *testing.T) {
	srv, _, c := serverWith(t)
	resp, err := http.Get(srv.URL + "/c/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() { // the first summary: the stream is open
		t.Fatal(lines.Err())
	}
	c.Close()
	for lines.Scan() {
	}
	if err := lines.Err(); err != nil {
		t.Errorf("the stream ended with %v", err)
	}
	// A closed console opens no stream that lasts.
	resp2, err := http.Get(srv.URL + "/c/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	if _, err := io.ReadAll(resp2.Body); err != nil {
		t.Errorf("reading the stream of a closed console: %v", err)
	}
}
