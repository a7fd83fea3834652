package module

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// evictionInterval is how often the Redis servers' eviction policy is read
// again, in nanoseconds (a variable for the tests).
var evictionInterval atomic.Int64

func init() { evictionInterval.Store(int64(time.Minute)) }

// unknownPolicy is the gauge's policy for a server that could not be read.
const unknownPolicy = "unknown"

// evictionWatches holds what each running watchEviction read last, by
// handler: the redis_maxmemory_policy gauge shows them at every scrape, so
// a server no configuration uses any more has no series.
var evictionWatches = &watches{last: map[*Handler][]redisconn.Eviction{}}

// watches is the running watchers' last readings.
type watches struct {
	mu   sync.Mutex
	last map[*Handler][]redisconn.Eviction
}

// set stores h's reading and returns the one before.
func (w *watches) set(h *Handler, now []redisconn.Eviction) (last []redisconn.Eviction) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, w.last[h] = w.last[h], now
	return last
}

// remove drops h's reading: its configuration is unloaded.
func (w *watches) remove(h *Handler) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, h)
}

// policyCollector is the redis_maxmemory_policy gauge: 1 for each server
// and policy that a running watcher read last.
type policyCollector struct{ desc *prometheus.Desc }

func newPolicyCollector() policyCollector {
	return policyCollector{desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "redis_maxmemory_policy"),
		"1 for each Redis server that takes writes, labelled with its maxmemory-policy (read every minute; unknown when it "+
			"cannot be read): anything but noeviction can lose queued webhooks (allkeys-*) or replay markers (volatile-*).",
		[]string{"server", "policy"}, nil)}
}

// Describe implements prometheus.Collector.
func (c policyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. Handlers that share a server
// give one series (two while their readings differ).
func (c policyCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[2]string]bool{}
	evictionWatches.mu.Lock()
	defer evictionWatches.mu.Unlock()
	for _, readings := range evictionWatches.last {
		for _, e := range readings {
			labels := [2]string{e.Server, e.Policy}
			if e.Err != nil {
				labels[1] = unknownPolicy
			}
			if !seen[labels] {
				seen[labels] = true
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, labels[0], labels[1])
			}
		}
	}
}

// watchEviction reads how the Redis servers evict when full, at once and
// then every evictionInterval until ctx is done, for the gauge, and logs
// what changes. A Redis that may evict loses what the edge promised to
// keep: queued webhooks and integrations (allkeys-*), replay markers and
// rate-limit counters (volatile-*).
func (h *Handler) watchEviction(ctx context.Context) {
	defer evictionWatches.remove(h)
	for {
		now := h.redis.Evictions(ctx, h.redisClient)
		if ctx.Err() != nil {
			return // unloaded while reading: the error says nothing of Redis
		}
		reportEvictions(h.logger, evictionWatches.set(h, now), now)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(evictionInterval.Load())):
		}
	}
}

// reportEvictions logs each server in now whose reading is not what it
// was in last.
func reportEvictions(logger *zap.Logger, last, now []redisconn.Eviction) {
	for _, e := range now {
		before, seen := findEviction(last, e.Server)
		if seen && before.Same(e) {
			continue
		}
		fields := []zap.Field{zap.String("server", e.Server), zap.String("maxmemory_policy", e.Policy), zap.Int64("maxmemory", e.MaxMemory)}
		switch {
		case e.Err != nil:
			logger.Warn(unreadableEviction(e.Err), zap.String("server", e.Server), zap.Error(e.Err))
		case e.EvictsAny() && e.MaxMemory > 0:
			logger.Error("Redis evicts any key when it is full: queued webhooks, integrations and dead letters can be lost; "+
				"set maxmemory-policy noeviction", fields...)
		case e.EvictsAny():
			logger.Warn("Redis would evict any key once a maxmemory is set: queued webhooks, integrations and dead letters "+
				"could be lost; set maxmemory-policy noeviction", fields...)
		case e.EvictsExpiring():
			logger.Warn("Redis evicts keys that expire when it is full (once a maxmemory is set): replay markers and rate-limit "+
				"counters can be lost, so a redelivered webhook may run twice; set maxmemory-policy noeviction", fields...)
		case seen:
			logger.Info("Redis does not evict keys", fields...)
		}
	}
}

// unreadableEviction says that a server's policy could not be read, and
// what to do when the user may not run INFO.
func unreadableEviction(err error) string {
	msg := "cannot read Redis's maxmemory-policy (INFO memory), so whether it may evict what the edge keeps is unknown"
	if strings.Contains(err.Error(), "NOPERM") {
		msg += "; allow the Redis user the INFO command (+info)"
	}
	return msg
}

// findEviction returns the entry of server in all, if any.
func findEviction(all []redisconn.Eviction, server string) (redisconn.Eviction, bool) {
	for _, e := range all {
		if e.Server == server {
			return e, true
		}
	}
	return redisconn.Eviction{}, false
}
