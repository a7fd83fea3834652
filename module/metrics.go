package module

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codemie-edge/caddy-webhooks/internal/body"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
)

// outcome is how a request ended; it labels caddy_codemie_webhooks_requests_total.
type outcome string

// Outcomes of a request, besides those of verification (verify.Outcome
// values other than Pass).
const (
	outcomeMethodNotAllowed    outcome = "method_not_allowed"
	outcomeBadID               outcome = "bad_id"
	outcomeTooLarge            outcome = "too_large"
	outcomeBadBody             outcome = "bad_body"
	outcomeBodyBudget          outcome = "body_budget"
	outcomeBodyTimeout         outcome = "body_timeout"
	outcomeNotFound            outcome = "not_found"
	outcomeDisabled            outcome = "disabled"
	outcomeMalformed           outcome = "malformed"
	outcomeStoreUnavailable    outcome = "store_unavailable"
	outcomeRateLimited         outcome = "rate_limited"
	outcomeDuplicate           outcome = "duplicate"
	outcomeUnsupported         outcome = "unsupported_resource"
	outcomeDispatched          outcome = "dispatched"
	outcomeDispatchRefused     outcome = "dispatch_refused"
	outcomeDispatchFailed      outcome = "dispatch_failed"
	outcomeDispatchUnavailable outcome = "dispatch_unavailable"
	outcomeEnqueued            outcome = "enqueued"
	outcomeCollapsed           outcome = "collapsed"
	outcomeQueueFull           outcome = "queue_full"
	outcomeQueueUnavailable    outcome = "queue_unavailable"
)

// outcomeState is what each outcome keeps, made on first use: its counter
// and its placeholder value, so that recording one allocates nothing.
type outcomeState struct {
	counter prometheus.Counter
	value   any
}

var outcomes sync.Map // outcome -> *outcomeState

func (o outcome) state() *outcomeState {
	if s, ok := outcomes.Load(o); ok {
		return s.(*outcomeState)
	}
	s, _ := outcomes.LoadOrStore(o, &outcomeState{counter: metrics.requests.WithLabelValues(string(o)), value: string(o)})
	return s.(*outcomeState)
}

// counter is the outcome's caddy_codemie_webhooks_requests_total.
func (o outcome) counter() prometheus.Counter { return o.state().counter }

// value is the outcome as a placeholder's value.
func (o outcome) value() any { return o.state().value }

// metrics are created once and registered with every configuration's
// registry, so counts survive config reloads.
var metrics struct {
	once            sync.Once
	collectors      []prometheus.Collector
	requests        *prometheus.CounterVec
	staleServed     prometheus.Counter
	unauthenticated prometheus.Counter
	guardErrors     prometheus.Counter

	dispatches       *prometheus.CounterVec
	dispatchDuration *prometheus.HistogramVec

	retries     prometheus.Counter
	dead        prometheus.Counter
	deadDropped prometheus.Counter
	logDropped  prometheus.Counter
	deliveryAge prometheus.Histogram

	syncLast     prometheus.Gauge
	syncSettings prometheus.Gauge
	syncChanges  prometheus.Counter
	syncErrors   prometheus.Counter

	queueLength   *prometheus.GaugeVec
	queuePending  *prometheus.GaugeVec
	queueRetrying *prometheus.GaugeVec
	queueDead     *prometheus.GaugeVec
	queueOldest   *prometheus.GaugeVec
	// What filter expressions gave: pass, drop, error.
	expressions *prometheus.CounterVec
	// Per webhook, for the delivery.TopWebhooks with the most waiting.
	webhookWaiting *prometheus.GaugeVec
	webhookOldest  *prometheus.GaugeVec
}

const namespace, subsystem = "caddy", "codemie_webhooks"

func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
}

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
	metrics.collectors = append(metrics.collectors, c)
	return c
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	metrics.collectors = append(metrics.collectors, c)
	return c
}

func plainGauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts(opts(name, help)))
	metrics.collectors = append(metrics.collectors, g)
	return g
}

// gauge registers a gauge whose value is read from value when scraped.
func gauge(name, help string, value func() float64) {
	metrics.collectors = append(metrics.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), value))
}

func queueGauge(name, help string) *prometheus.GaugeVec { return gaugeVec(name, help, "queue") }

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), labels)
	metrics.collectors = append(metrics.collectors, g)
	return g
}

// durationBuckets span 5ms to about 2 minutes (0.005 x 2.5^11 = 119 s); a
// longer call counts in +Inf.
var durationBuckets = prometheus.ExponentialBuckets(0.005, 2.5, 12)

func registerMetrics(reg prometheus.Registerer) error {
	metrics.once.Do(func() {
		metrics.requests = counterVec("requests_total", "Webhook requests by how they ended.", "outcome")
		metrics.staleServed = counter("integrations_stale_served_total",
			"Integrations served past their cache TTL because the store could not be reached.")
		metrics.unauthenticated = counter("unauthenticated_requests_total",
			"Requests to webhooks whose integration configures no authentication mechanism.")
		metrics.guardErrors = counter("guard_errors_total",
			"Requests admitted without rate limit and replay guard because Redis could not be reached.")
		gauge("body_bytes_in_flight", "Bytes of buffers held by request bodies being read or handled, bounded by max_bodies_in_flight.",
			func() float64 { n, _ := body.InFlight(); return float64(n) })
		gauge("bodies_in_flight", "Request bodies being read or handled.", func() float64 { _, n := body.InFlight(); return float64(n) })
		metrics.dispatches = counterVec("dispatch_total",
			"Attempts to trigger a CodeMie resource, by resource type and result (success, retryable, final).",
			"resource_type", "result")
		metrics.dispatchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "dispatch_duration_seconds",
			Help:    "Time to make one attempt at triggering a CodeMie resource, all calls included.",
			Buckets: durationBuckets,
		}, []string{"resource_type"})
		metrics.retries = counter("delivery_retries_total", "Queued webhooks whose attempt failed and was scheduled again.")
		metrics.dead = counter("delivery_dead_total", "Queued webhooks moved to the dead stream.")
		metrics.deadDropped = counter("delivery_dead_dropped_total",
			"Dead letters dropped, oldest first, to keep the dead stream within dead_letters.")
		metrics.logDropped = counter("delivery_log_dropped_total",
			"Delivery log records not written: the writer's buffer was full, or Redis failed a batch.")
		metrics.deliveryAge = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "delivery_age_seconds",
			Help:    "Time from a webhook's arrival to its successful dispatch from the queue.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 16), // 5ms to about 20h
		})
		metrics.syncLast = plainGauge("sync_last_success_timestamp_seconds", "When the last sync from CodeMie succeeded, in Unix seconds.")
		metrics.syncSettings = plainGauge("sync_settings", "Webhook settings CodeMie listed at the last sync.")
		metrics.syncChanges = counter("sync_changes_total", "Integrations created, updated or deleted by syncs from CodeMie.")
		metrics.syncErrors = counter("sync_errors_total", "Syncs from CodeMie that failed.")
		metrics.queueLength = queueGauge("queue_length", "Webhooks in the delivery queue: waiting, in flight or waiting to retry.")
		metrics.queuePending = queueGauge("queue_pending", "Webhooks being dispatched.")
		metrics.queueRetrying = queueGauge("queue_retrying", "Webhooks waiting for their next attempt.")
		metrics.queueDead = queueGauge("queue_dead", "Webhooks in the dead stream.")
		metrics.queueOldest = queueGauge("queue_oldest_age_seconds", "Age of the oldest webhook in the delivery queue.")
		metrics.expressions = counterVec("filter_expressions_total",
			"Integrations' filter expressions evaluated, by result: pass, drop, or error (dropped too).", "result")
		metrics.webhookWaiting = gaugeVec("queue_webhook_waiting",
			fmt.Sprintf("Webhooks waiting to be dispatched, for the %d webhooks with the most.", delivery.TopWebhooks), "queue", "webhook")
		metrics.webhookOldest = gaugeVec("queue_webhook_oldest_age_seconds",
			fmt.Sprintf("Age of the oldest webhook waiting, for the %d webhooks with the most waiting.", delivery.TopWebhooks), "queue", "webhook")
		metrics.collectors = append(metrics.collectors, metrics.dispatchDuration, metrics.deliveryAge, newPolicyCollector())
	})
	for _, c := range metrics.collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
