package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
)

// events streams the log's new records that the query selects, and the
// summary every Interval, as Server-Sent Events until the client goes.
func (c *Console) events(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := c.src.Log()
	if err != nil {
		return unavailable(err)
	}
	after, err := l.Last(r.Context())
	if err != nil {
		return unavailable(err)
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &stream{w: w, rc: rc}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		// The summary, now and every Interval, from this goroutine; the
		// records from Follow's. Sends are serialized by the stream.
		t := time.NewTicker(c.Interval)
		defer t.Stop()
		for {
			if sum, err := c.summary(ctx, nil); err == nil {
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
	}()
	err = l.Follow(ctx, after, q, c.Block, func(rec history.Record) error { return s.send("delivery", rec) })
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		_ = s.send("error", map[string]string{"error": err.Error()})
	}
	return nil // the answer has started: nothing more to say
}

// stream writes Server-Sent Events, one at a time.
type stream struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *stream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}
