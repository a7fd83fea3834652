package module

import (
	"context"
	"strings"
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

// watchEviction reads how the Redis servers evict when full, at once and
// then every evictionInterval until ctx is done: it keeps the
// redis_maxmemory_policy gauge and logs what changes. A Redis that may
// evict loses what the edge promised to keep: queued webhooks and
// integrations (allkeys-*), replay markers and rate-limit counters
// (volatile-*).
func (h *Handler) watchEviction(ctx context.Context) {
	var last []redisconn.Eviction
	for {
		now, err := h.redis.Evictions(ctx, h.redisClient)
		if err != nil {
			h.logger.Debug("reading the Redis eviction policy", zap.Error(err))
		} else {
			reportEvictions(h.logger, last, now)
			last = now
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(evictionInterval.Load())):
		}
	}
}

// reportEvictions sets the gauge for each server in now and logs each
// whose policy or limit is not what it was in last.
func reportEvictions(logger *zap.Logger, last, now []redisconn.Eviction) {
	for _, e := range now {
		metrics.redisPolicy.DeletePartialMatch(prometheus.Labels{"server": e.Server})
		metrics.redisPolicy.WithLabelValues(e.Server, e.Policy).Set(1)
		before, seen := findEviction(last, e.Server)
		if seen && before == e {
			continue
		}
		fields := []zap.Field{zap.String("server", e.Server), zap.String("maxmemory_policy", e.Policy), zap.Int64("maxmemory", e.MaxMemory)}
		switch {
		case e.EvictsAny() && e.MaxMemory > 0:
			logger.Error("Redis evicts any key when it is full: queued webhooks, integrations and dead letters can be lost; "+
				"set maxmemory-policy noeviction", fields...)
		case e.EvictsAny() || e.EvictsExpiring():
			logger.Warn(evictionWarning(e), fields...)
		case seen && (before.EvictsAny() || before.EvictsExpiring()):
			logger.Info("Redis no longer evicts keys", fields...)
		}
	}
}

// evictionWarning says what a policy that is not yet, or only partly, a
// danger can lose.
func evictionWarning(e redisconn.Eviction) string {
	var b strings.Builder
	if e.EvictsAny() {
		b.WriteString("Redis would evict any key once a maxmemory is set: queued webhooks, integrations and dead letters could be lost")
	} else {
		b.WriteString("Redis evicts keys that expire when it is full: replay markers and rate-limit counters can be lost, " +
			"so a redelivered webhook may run twice")
		if e.MaxMemory == 0 {
			b.WriteString(" (once a maxmemory is set)")
		}
	}
	b.WriteString("; set maxmemory-policy noeviction")
	return b.String()
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
