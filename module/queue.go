package module

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
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
		Prefix:       h.prefix,
		MaxLength:    h.MaxQueue,
		MaxAge:       time.Duration(h.MaxAge),
		Attempts:     h.Retry.Attempts,
		FirstBackoff: time.Duration(h.Retry.First),
		MaxBackoff:   time.Duration(h.Retry.Max),
		ClaimAfter:   time.Duration(h.ClaimAfter),
		Workers:      h.Workers,
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
		}, h.logger.Named("delivery"))
	}
	h.intake = h.queue
	queues.add(h.queue)
	go h.pollStats(ctx)
}

// intake is the request path's view of the delivery queue.
type intake interface {
	// OneRoundTrip reports whether Admit works here.
	OneRoundTrip() bool
	// Admit guards and enqueues in one round trip.
	Admit(ctx context.Context, g guard.Config, id string, d guard.Delivery, e delivery.Entry) (guard.Decision, error)
	// Enqueue appends an admitted webhook.
	Enqueue(ctx context.Context, e delivery.Entry) (string, error)
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
		return writeResult(w, a.with(outcomeEnqueued, http.StatusOK), msgInvoked)
	}
	return h.enqueueFailed(w, a, err)
}

// enqueueFailed answers a webhook the queue could not take: 503.
func (h *Handler) enqueueFailed(w http.ResponseWriter, a answer, err error) answer {
	a.err = err
	w.Header().Set("Retry-After", "5")
	if errors.Is(err, delivery.ErrFull) {
		return writeDetail(w, a.with(outcomeQueueFull, http.StatusServiceUnavailable), msgQueueFull)
	}
	return writeDetail(w, a.with(outcomeQueueUnavailable, http.StatusServiceUnavailable), msgQueueDown)
}

// queues are the delivery queues of the loaded configuration, by name, for
// the admin API. Handlers sharing a key prefix share an entry.
var queues = queueRegistry{m: map[string]*registered{}}

type queueRegistry struct {
	mu sync.Mutex
	m  map[string]*registered
}

type registered struct {
	q    *delivery.Queue
	refs int
}

func (r *queueRegistry) add(q *delivery.Queue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[q.Name()]
	if !ok {
		e = &registered{q: q}
		r.m[q.Name()] = e
	}
	e.refs++
}

func (r *queueRegistry) remove(q *delivery.Queue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[q.Name()]; ok {
		if e.refs--; e.refs == 0 {
			delete(r.m, q.Name())
		}
	}
}

// get returns the queue named name, or the only queue when name is empty.
func (r *queueRegistry) get(name string) (*delivery.Queue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != "" {
		if e, ok := r.m[name]; ok {
			return e.q, nil
		}
		return nil, errors.New("no delivery queue with that key prefix")
	}
	switch len(r.m) {
	case 0:
		return nil, errors.New("no delivery queue is configured (delivery async with redis)")
	case 1:
		for _, e := range r.m {
			return e.q, nil
		}
	}
	return nil, errors.New("several delivery queues are configured: name one with ?queue=<key prefix>")
}
