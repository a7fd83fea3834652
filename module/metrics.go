package module

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// outcome is how a request ended; it labels caddy_codemie_webhooks_requests_total.
type outcome string

// Outcomes of a request.
const (
	outcomeMethodNotAllowed    outcome = "method_not_allowed"
	outcomeBadID               outcome = "bad_id"
	outcomeTooLarge            outcome = "too_large"
	outcomeBadBody             outcome = "bad_body"
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
	// and the outcomes of verification: verify.Outcome values other than Pass.
)

// metrics are created once and registered with every configuration's
// registry, so counts survive config reloads.
var metrics = struct {
	once            sync.Once
	requests        *prometheus.CounterVec
	staleServed     prometheus.Counter
	unauthenticated prometheus.Counter
	guardErrors     prometheus.Counter

	dispatches       *prometheus.CounterVec
	dispatchDuration *prometheus.HistogramVec
}{}

const namespace, subsystem = "caddy", "codemie_webhooks"

func registerMetrics(reg prometheus.Registerer) error {
	metrics.once.Do(func() {
		metrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "requests_total",
			Help:      "Webhook requests by how they ended.",
		}, []string{"outcome"})
		metrics.staleServed = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "integrations_stale_served_total",
			Help:      "Integrations served past their cache TTL because the store could not be reached.",
		})
		metrics.unauthenticated = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "unauthenticated_requests_total",
			Help:      "Requests to webhooks whose integration configures no authentication mechanism.",
		})
		metrics.guardErrors = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "guard_errors_total",
			Help:      "Requests admitted without rate limit and replay guard because Redis could not be reached.",
		})
		metrics.dispatches = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "dispatch_total",
			Help:      "Attempts to trigger a CodeMie resource, by resource type and result (success, retryable, final).",
		}, []string{"resource_type", "result"})
		metrics.dispatchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: subsystem,
			Name:      "dispatch_duration_seconds",
			Help:      "Time to make one attempt at triggering a CodeMie resource, all calls included.",
			Buckets:   prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5ms to about 5min
		}, []string{"resource_type"})
	})
	for _, c := range []prometheus.Collector{metrics.requests, metrics.staleServed, metrics.unauthenticated,
		metrics.guardErrors, metrics.dispatches, metrics.dispatchDuration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
