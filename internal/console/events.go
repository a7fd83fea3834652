package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
)

// events streams the log's new records that the query selects, and the
// summary every Interval, as Server-Sent Events until the client goes,
// the console closes, or MaxStream has passed.
func (c *Console) events(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := c.src.Log()
	if err != nil {
		return unavailable(err)
	}
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		return &Error{http.StatusServiceUnavailable, fmt.Errorf("%d events streams are open: close a console", MaxStreams)}
	}
	from, err := l.Now(r.Context())
	if err != nil {
		return unavailable(err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.MaxStream)
	defer cancel()
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &stream{w: w, rc: http.NewResponseController(w), timeout: c.WriteTimeout}
	defer s.deadline() // the server's last write after the handler, too
	var summaries sync.WaitGroup
	summaries.Go(func() { c.summaries(ctx, cancel, s) })
	err = l.Follow(ctx, from, q, c.Block, func(rec history.Record) error { return s.send("delivery", rec) })
	failed := err != nil && ctx.Err() == nil // Redis, not the end of the stream
	cancel()
	summaries.Wait() // nothing writes to w once the handler returns
	if failed {
		_ = s.send("error", map[string]string{"error": err.Error()})
	}
	return nil // the answer has started: nothing more to say
}

// summaries sends the summary now and every Interval until ctx ends; a
// failed send (the client went) cancels the stream.
func (c *Console) summaries(ctx context.Context, cancel context.CancelFunc, s *stream) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		if sum, err := c.summary(ctx, nil); err == nil && ctx.Err() == nil {
			if s.send("summary", sum) != nil {
				cancel()
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stream writes Server-Sent Events, one at a time, each within timeout.
type stream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// deadline gives the next write timeout to finish (none when timeout is
// 0, or when the writer cannot take a deadline).
func (s *stream) deadline() {
	if s.timeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	}
}

func (s *stream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline()
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}
