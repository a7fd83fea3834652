// Package console is the deliveries console: a page, its static assets
// (embedded: no CDN, no build step) and the JSON and Server-Sent Events
// API it reads, over the delivery queue and the delivery log.
//
// Every route is relative to where the console is mounted (the page is at
// "<base>/", the API at "<base>/api/..."). The routes that change
// something are POSTs that must carry the page's CSRF token in
// X-CSRF-Token and must not come from another site (Sec-Fetch-Site,
// Origin): a page on another origin can neither read the token nor pass
// those checks.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
)

//go:embed assets
var assets embed.FS

// Sources find the queue and the log the console shows. Either may
// answer ErrNone: a configuration without a queue (delivery sync) or
// without a log (no Redis, or the log off).
type Sources interface {
	Queue() (*delivery.Queue, error)
	Log() (*history.Log, error)
}

// ErrNone says there is no queue, or no log, to show.
var ErrNone = errors.New("not configured")

// Console serves the console over Sources.
type Console struct {
	src   Sources
	token string
	// Interval is how often the events stream sends the summary.
	Interval time.Duration
	// Block is how often an events stream looks for new log records.
	Block time.Duration
	// MaxStream bounds one events stream's life: the browser opens the
	// next one by itself.
	MaxStream time.Duration
	// WriteTimeout bounds each write to an events stream: a client that
	// stops reading ends its stream, and frees its slot, instead of
	// holding them (and the server's shutdown) for as long as it likes.
	WriteTimeout time.Duration

	streams   chan struct{} // a slot per events stream open
	closed    chan struct{} // closed by Close: streams end
	closeOnce sync.Once
}

// MaxStreams bounds the events streams open at once on one console.
const MaxStreams = 64

// New returns the console over src; token is the CSRF token its page
// carries and its POSTs must send back.
func New(src Sources, token string) *Console {
	return &Console{src: src, token: token, Interval: 5 * time.Second, Block: time.Second, MaxStream: 10 * time.Minute,
		WriteTimeout: 10 * time.Second, streams: make(chan struct{}, MaxStreams), closed: make(chan struct{})}
}

// Close ends the events streams open, and any opened later: a server that
// shuts down must not wait on its consoles' streams.
func (c *Console) Close() { c.closeOnce.Do(func() { close(c.closed) }) }

// Serve answers r, whose path relative to the console's base is rel
// (without a leading slash). It returns an *Error for the caller to
// answer as it answers errors.
func (c *Console) Serve(w http.ResponseWriter, r *http.Request, rel string) error {
	if api, ok := strings.CutPrefix(rel, "api/"); ok {
		return c.api(w, r, api)
	}
	if err := need(r, http.MethodGet); err != nil {
		return err
	}
	switch rel {
	case "", "index.html":
		return c.page(w)
	case "app.js", "style.css":
		return asset(w, rel)
	}
	return notFound(rel)
}

// Error is an answer other than 200, with what to say.
type Error struct {
	Status int
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

func notFound(rel string) error {
	return &Error{http.StatusNotFound, fmt.Errorf("no such resource: %s", rel)}
}

func need(r *http.Request, method string) error {
	if r.Method != method {
		return &Error{http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed, use %s", r.Method, method)}
	}
	return nil
}

// unavailable wraps a failure to read Redis.
func unavailable(err error) error {
	if errors.Is(err, ErrNone) {
		return &Error{http.StatusNotFound, err}
	}
	return &Error{http.StatusServiceUnavailable, err}
}

func (c *Console) page(w http.ResponseWriter) error {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		return err
	}
	page := strings.Replace(string(b), "__CSRF_TOKEN__", c.token, 1)
	setPageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err = w.Write([]byte(page))
	return err
}

// setPageHeaders keeps the page from being framed or cached, and from
// loading anything but its own assets.
func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func asset(w http.ResponseWriter, name string) error {
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		return notFound(name)
	}
	setPageHeaders(w)
	if strings.HasSuffix(name, ".js") {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	_, err = w.Write(b)
	return err
}

func (c *Console) api(w http.ResponseWriter, r *http.Request, path string) error {
	if r.Method == http.MethodPost {
		if err := c.sameSite(r); err != nil {
			return err
		}
	}
	switch {
	case path == "summary":
		return c.getJSON(w, r, c.summary)
	case path == "deliveries":
		return c.getJSON(w, r, c.deliveries)
	case path == "counts":
		return c.getJSON(w, r, c.counts)
	case path == "dead":
		return c.getJSON(w, r, c.dead)
	case path == "events":
		if err := need(r, http.MethodGet); err != nil {
			return err
		}
		return c.events(w, r)
	case strings.HasPrefix(path, "dead/"):
		return c.deadLetter(w, r, strings.TrimPrefix(path, "dead/"))
	}
	return notFound("api/" + path)
}

// sameSite refuses a POST that comes from another site or does not carry
// the page's token.
func (c *Console) sameSite(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return &Error{http.StatusForbidden, errors.New("cross-site request refused")}
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return &Error{http.StatusForbidden, errors.New("cross-origin request refused")}
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	if c.token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(c.token)) != 1 {
		return &Error{http.StatusForbidden, errors.New("missing or wrong X-CSRF-Token: reload the console")}
	}
	return nil
}

func (c *Console) getJSON(w http.ResponseWriter, r *http.Request, read func(ctx context.Context, q url.Values) (any, error)) error {
	if err := need(r, http.MethodGet); err != nil {
		return err
	}
	v, err := read(r.Context(), r.URL.Query())
	if err != nil {
		return err
	}
	return writeJSON(w, v)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}

// Summary is what api/summary answers.
type Summary struct {
	Queue *delivery.Stats `json:"queue"`
	Log   *LogSummary     `json:"log"`
}

// LogSummary describes the delivery log.
type LogSummary struct {
	Length        int64   `json:"length"`
	MaxEntries    int64   `json:"max_entries"`
	MaxAgeSeconds float64 `json:"max_age_seconds"`
}

func (c *Console) summary(ctx context.Context, _ url.Values) (any, error) {
	var s Summary
	if q, err := c.src.Queue(); err == nil {
		stats, err := q.Stats(ctx)
		if err != nil {
			return nil, unavailable(err)
		}
		s.Queue = &stats
	}
	if l, err := c.src.Log(); err == nil {
		n, err := l.Length(ctx)
		if err != nil {
			return nil, unavailable(err)
		}
		s.Log = &LogSummary{Length: n, MaxEntries: l.Limits().MaxEntries, MaxAgeSeconds: l.Limits().MaxAge.Seconds()}
	}
	return s, nil
}

// query reads a history.Query from API parameters.
func query(v url.Values) (history.Query, error) {
	q := history.Query{WebhookID: v.Get("webhook"), Outcome: v.Get("outcome"), DeliveryID: v.Get("delivery"), Before: v.Get("before")}
	if q.Outcome != "" && !slices.Contains(history.Outcomes, q.Outcome) {
		return q, &Error{http.StatusBadRequest, fmt.Errorf("outcome must be one of %s", strings.Join(history.Outcomes, ", "))}
	}
	if q.Before != "" && !history.ValidID(q.Before) {
		return q, &Error{http.StatusBadRequest, errors.New("before must be a record id")}
	}
	if s := v.Get("since"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return q, &Error{http.StatusBadRequest, errors.New("since must be Unix milliseconds")}
		}
		if ms > 0 {
			q.Since = time.UnixMilli(ms)
		}
	}
	if s := v.Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > history.MaxCount {
			return q, &Error{http.StatusBadRequest, fmt.Errorf("count must be 1 to %d", history.MaxCount)}
		}
		q.Count = n
	}
	return q, nil
}

func (c *Console) deliveries(ctx context.Context, v url.Values) (any, error) {
	q, err := query(v)
	if err != nil {
		return nil, err
	}
	l, err := c.src.Log()
	if err != nil {
		return nil, unavailable(err)
	}
	records, next, err := l.List(ctx, q)
	if err != nil {
		return nil, unavailable(err)
	}
	if records == nil {
		records = []history.Record{}
	}
	return struct {
		Records []history.Record `json:"records"`
		Next    string           `json:"next,omitempty"`
	}{records, next}, nil
}

// The counts' chart: the last hour, a bar a minute, the busiest webhooks.
const (
	countBuckets = 60
	countWidth   = time.Minute
	countTop     = 10
)

func (c *Console) counts(ctx context.Context, _ url.Values) (any, error) {
	l, err := c.src.Log()
	if err != nil {
		return nil, unavailable(err)
	}
	now := time.Now()
	counts, err := l.Counts(ctx, now, countWidth, countBuckets, countTop)
	if err != nil {
		return nil, unavailable(err)
	}
	return struct {
		From          int64                   `json:"from"`
		BucketSeconds int                     `json:"bucket_seconds"`
		Webhooks      []history.WebhookCounts `json:"webhooks"`
	}{now.Add(-countWidth * countBuckets).UnixMilli(), int(countWidth / time.Second), counts}, nil
}

func (c *Console) dead(ctx context.Context, v url.Values) (any, error) {
	after, count, err := delivery.DeadPage(v.Get("after"), v.Get("count"))
	if err != nil {
		return nil, &Error{http.StatusBadRequest, err}
	}
	q, err := c.src.Queue()
	if err != nil {
		return nil, unavailable(err)
	}
	letters, next, err := q.DeadLetters(ctx, after, count)
	if err != nil {
		return nil, unavailable(err)
	}
	if letters == nil {
		letters = []delivery.DeadLetter{}
	}
	return struct {
		Entries []delivery.DeadLetter `json:"entries"`
		Next    string                `json:"next,omitempty"`
	}{letters, next}, nil
}

// deadLetter serves dead/<id>/replay and dead/<id>/delete, both POST.
func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request, rest string) error {
	id, action, _ := strings.Cut(rest, "/")
	if !delivery.ValidEntryID(id) || (action != "replay" && action != "delete") {
		return notFound("api/dead/" + rest)
	}
	if err := need(r, http.MethodPost); err != nil {
		return err
	}
	q, err := c.src.Queue()
	if err != nil {
		return unavailable(err)
	}
	if action == "replay" {
		err = q.Replay(r.Context(), id)
	} else {
		err = q.DeleteDead(r.Context(), id)
	}
	switch {
	case errors.Is(err, delivery.ErrNoSuchEntry):
		return &Error{http.StatusNotFound, err}
	case errors.Is(err, delivery.ErrUnreadable):
		return &Error{http.StatusUnprocessableEntity, err}
	case err != nil:
		return unavailable(err)
	}
	if action == "replay" {
		return writeJSON(w, map[string]int{"replayed": 1})
	}
	return writeJSON(w, map[string]int{"deleted": 1})
}
