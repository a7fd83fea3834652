package module

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	answers "github.com/codemie-edge/caddy-webhooks/internal/answer"
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
	Enqueue(ctx context.Context, e delivery.Entry) error
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

// queues are the delivery queues of the loaded configurations, by key
// prefix, for the admin API: handlers sharing a key prefix share an entry,
// held while any configuration uses it (a caddy.UsagePool, as the Redis
// clients are).
var queues = queueRegistry{caddy.NewUsagePool()}

type queueRegistry struct{ pool *caddy.UsagePool }

// pooledQueue is a queue in the pool. It has nothing to destruct: its
// workers end with their handler.
type pooledQueue struct{ *delivery.Queue }

// Destruct implements caddy.Destructor.
func (pooledQueue) Destruct() error { return nil }

// Interface guard.
var _ caddy.Destructor = pooledQueue{}

func (r queueRegistry) add(q *delivery.Queue) { r.pool.LoadOrStore(q.Name(), pooledQueue{q}) }

func (r queueRegistry) remove(q *delivery.Queue) { _, _ = r.pool.Delete(q.Name()) }

// get returns the queue named name, or the only queue when name is empty.
func (r queueRegistry) get(name string) (*delivery.Queue, error) {
	var found []*delivery.Queue
	r.pool.Range(func(key, value any) bool {
		if name == "" || key == name {
			found = append(found, value.(pooledQueue).Queue)
		}
		return true
	})
	switch {
	case len(found) == 1:
		return found[0], nil
	case name != "":
		return nil, errors.New("no delivery queue with that key prefix")
	case len(found) == 0:
		return nil, errors.New("no delivery queue is configured (delivery async with redis)")
	}
	return nil, errors.New("several delivery queues are configured: name one with ?queue=<key prefix>")
}
