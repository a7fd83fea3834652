package module

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	answers "github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// consumer names this process in the delivery consumer group: unique per
// process, and the same across config reloads, so a reload's new workers
// and the old ones draining are one consumer.
var consumer = func() string {
	host, err := os.Hostname()
	if err != nil {
		host = "caddy"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}()

// statsInterval is how often the queue's gauges are refreshed.
const statsInterval = 5 * time.Second

// startQueue opens the delivery queue, starts its workers and keeps its
// gauges up to date until the configuration is unloaded.
func (h *Handler) startQueue(ctx caddy.Context) {
	h.queue = delivery.NewQueue(h.redisClient, delivery.Config{
		Space:        h.space,
		MaxLength:    h.MaxQueue,
		MaxAge:       time.Duration(h.MaxAge),
		Attempts:     h.Retry.Attempts,
		FirstBackoff: time.Duration(h.Retry.First),
		MaxBackoff:   time.Duration(h.Retry.Max),
		ClaimAfter:   time.Duration(h.ClaimAfter),
		Workers:      h.Workers,
		MaxInFlight:  h.MaxInFlight,
		Consumer:     consumer,
		Dead: delivery.DeadLimits{
			MaxEntries: h.DeadLetters.MaxEntries,
			MaxAge:     time.Duration(h.DeadLetters.MaxAge),
			MaxBytes:   h.DeadLetters.MaxBytes,
		},
	})
	if h.NoWorkers {
		h.logger.Info("workers off: this instance only takes webhooks in; other instances must dispatch them")
	} else {
		h.workers = h.queue.Start(h.dispatch, delivery.Events{
			Delivered:   func(age time.Duration) { metrics.deliveryAge.Observe(age.Seconds()) },
			Retried:     func() { metrics.retries.Inc() },
			Dead:        func() { metrics.dead.Inc() },
			DeadDropped: func(n int) { metrics.deadDropped.Add(float64(n)) },
			Attempted:   h.attemptedFunc(),
		}, h.logger.Named("delivery"))
	}
	h.intake = h.queue
	queues.add(h.queue.Name(), h.queue)
	go h.pollStats(ctx)
}

// intake is the request path's view of the delivery queue.
type intake interface {
	// OneRoundTrip reports whether Admit works here.
	OneRoundTrip() bool
	// Admit guards and enqueues in one round trip, waiting within b.
	Admit(ctx context.Context, b redisconn.Bound, g guard.Config, id string, d guard.Delivery, e delivery.Entry) (guard.Decision, error)
	// Enqueue appends an admitted webhook, waiting within b.
	Enqueue(ctx context.Context, b redisconn.Bound, e delivery.Entry) error
}

// pollStats refreshes the queue gauges until ctx is done.
func (h *Handler) pollStats(ctx context.Context) {
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		s, err := h.queue.Stats(ctx)
		if err == nil {
			name := h.queue.Name()
			metrics.queueLength.WithLabelValues(name).Set(float64(s.Length))
			metrics.queuePending.WithLabelValues(name).Set(float64(s.Pending))
			metrics.queueRetrying.WithLabelValues(name).Set(float64(s.Retrying))
			metrics.queueDead.WithLabelValues(name).Set(float64(s.Dead))
			metrics.queueOldest.WithLabelValues(name).Set(s.OldestAgeSeconds)
			queue := prometheus.Labels{"queue": name}
			metrics.webhookWaiting.DeletePartialMatch(queue)
			metrics.webhookOldest.DeletePartialMatch(queue)
			for _, w := range s.Webhooks {
				metrics.webhookWaiting.WithLabelValues(name, w.WebhookID).Set(float64(w.Waiting))
				metrics.webhookOldest.WithLabelValues(name, w.WebhookID).Set(w.OldestAgeSeconds)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// enqueued answers 200 once the webhook is in the queue (err is nil), and
// 503 when Redis could not take it: never 200 for a webhook that could be
// lost.
func (h *Handler) enqueued(w http.ResponseWriter, a answer, err error) answer {
	if err == nil {
		return writeAnswer(w, a.with(outcomeEnqueued, http.StatusOK), answers.Invoked)
	}
	return h.enqueueFailed(w, a, err)
}

// enqueueFailed answers a webhook the queue could not take: 503.
func (h *Handler) enqueueFailed(w http.ResponseWriter, a answer, err error) answer {
	a.err = err
	w.Header().Set("Retry-After", "5")
	if errors.Is(err, delivery.ErrFull) {
		return writeAnswer(w, a.with(outcomeQueueFull, http.StatusServiceUnavailable), answers.QueueFull)
	}
	return writeAnswer(w, a.with(outcomeQueueUnavailable, http.StatusServiceUnavailable), answers.QueueDown)
}

// queues are the delivery queues of the loaded configurations, and logs
// their delivery logs, by key prefix, for the admin API and the console.
// While a reload runs, the old configuration's handler and the new one's
// both hold an entry: the newest is the one served, so the console shows
// the new configuration's log (its limits, its Redis) at once.
var (
	queues = &registry[*delivery.Queue]{what: "delivery queue", how: "(delivery async with redis)"}
	logs   = &registry[*history.Log]{what: "delivery log", how: "(redis, without delivery_log off)"}
)

// registry holds the values of the loaded configurations by key prefix.
type registry[T comparable] struct {
	mu       sync.Mutex
	byPrefix map[string][]T // the handlers' values, newest last
	// what a value is, and how it is configured, for errors.
	what, how string
}

func (r *registry[T]) add(prefix string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byPrefix == nil {
		r.byPrefix = map[string][]T{}
	}
	r.byPrefix[prefix] = append(r.byPrefix[prefix], v)
}

func (r *registry[T]) remove(prefix string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	values := r.byPrefix[prefix]
	if i := slices.Index(values, v); i >= 0 {
		values = slices.Delete(values, i, i+1)
	}
	if len(values) == 0 {
		delete(r.byPrefix, prefix)
		return
	}
	r.byPrefix[prefix] = values
}

// get returns the value of key prefix name, or the only value when name is
// empty.
func (r *registry[T]) get(name string) (T, error) {
	r.mu.Lock()
	var found []T
	for prefix, values := range r.byPrefix {
		if name == "" || prefix == name {
			found = append(found, values[len(values)-1])
		}
	}
	r.mu.Unlock()
	var zero T
	switch {
	case len(found) == 1:
		return found[0], nil
	case name != "":
		return zero, fmt.Errorf("no %s with that key prefix", r.what)
	case len(found) == 0:
		return zero, fmt.Errorf("no %s is configured %s", r.what, r.how)
	}
	return zero, fmt.Errorf("several %ss are configured: name one with ?queue=<key prefix>", r.what)
}
