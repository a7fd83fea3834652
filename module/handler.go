// Package module holds the Caddy modules of caddy-webhooks: the HTTP handler
// that is the edge for CodeMie webhooks, its metrics, and (later) its admin
// API and CLI. The decisions themselves live in internal/.
package module

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/store/filestore"
	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the Handler's optional fields.
const (
	DefaultCacheTTL    = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
	DefaultStaleTTL    = 10 * time.Minute
	DefaultCacheSize   = 100_000
	DefaultMaxBody     = 25 << 20 // GitHub caps payloads at 25 MB
)

// Handler is the edge for CodeMie webhooks. It answers
// POST <route prefix>/{webhook-id}: the webhook id is the last segment of
// the path. It loads that webhook's integration (from Redis, or from an
// integrations file) and answers as the CodeMie backend would: 400 for an
// unknown or disabled webhook (the same body for both, so ids cannot be
// probed), 405 for another method, 413 for a body over MaxBody.
//
// The handler answers every request it gets and never calls the next
// handler: put it in a route for the webhook path.
type Handler struct {
	// Redis holds the integrations, one hash per webhook. Exactly one of
	// Redis and IntegrationsFile must be set.
	Redis *RedisConfig `json:"redis,omitempty"`

	// IntegrationsFile is the path of a JSON file of integrations, re-read
	// when it changes: the embedded default store, with no Redis.
	IntegrationsFile string `json:"integrations_file,omitempty"`

	// CacheTTL is how long a loaded integration is served from memory
	// before it is loaded again. Changes announced on the Redis channel
	// take effect at once regardless. Default: 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long an unknown webhook id is answered as unknown
	// without asking the store, so floods of random ids do not reach Redis.
	// Default: 5s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// StaleTTL is how long after it was last loaded an integration is still
	// served while the store cannot be reached. Default: 10m.
	StaleTTL caddy.Duration `json:"stale_ttl,omitempty"`

	// CacheSize is the most integrations kept in memory (and, separately,
	// the most unknown ids remembered). Default: 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// MaxBody is the largest request body accepted, in bytes; larger
	// requests get 413. Default: 26214400 (25 MiB).
	MaxBody int64 `json:"max_body,omitempty"`

	logger       *zap.Logger
	redis        *redisconn.Config // as acquired, to release on Cleanup
	integrations store.Store
}

// RedisConfig is where and how integrations are kept in Redis.
type RedisConfig struct {
	redisconn.Config

	// KeyPrefix starts every key. Default: "codemie:webhooks:".
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.codemie_webhooks",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision opens the integration store and starts watching it for changes
// until the configuration is unloaded.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.setDefaults()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	src, err := h.openStore()
	if err != nil {
		return err
	}
	cache := store.NewCache(src, store.CacheConfig{
		TTL:         time.Duration(h.CacheTTL),
		NegativeTTL: time.Duration(h.NegativeTTL),
		StaleTTL:    time.Duration(h.StaleTTL),
		MaxEntries:  h.CacheSize,
		Stale:       h.servedStale,
	})
	if w, ok := src.(store.Watcher); ok {
		go w.Watch(ctx, cache.Invalidate, cache.InvalidateAll)
	}
	h.integrations = cache
	return nil
}

func (h *Handler) setDefaults() {
	if h.CacheTTL == 0 {
		h.CacheTTL = caddy.Duration(DefaultCacheTTL)
	}
	if h.NegativeTTL == 0 {
		h.NegativeTTL = caddy.Duration(DefaultNegativeTTL)
	}
	if h.StaleTTL == 0 {
		h.StaleTTL = caddy.Duration(DefaultStaleTTL)
	}
	if h.CacheSize == 0 {
		h.CacheSize = DefaultCacheSize
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
}

// openStore opens the configured store. Placeholders such as
// {env.REDIS_PASSWORD} are expanded in addresses, credentials and paths.
func (h *Handler) openStore() (store.Store, error) {
	repl := caddy.NewReplacer()
	switch {
	case h.Redis != nil && h.IntegrationsFile != "":
		return nil, errors.New("redis and integrations_file are exclusive: configure one store")
	case h.IntegrationsFile != "":
		return filestore.Open(repl.ReplaceKnown(h.IntegrationsFile, ""), h.logger)
	case h.Redis != nil:
		cfg := h.Redis.Config
		cfg.Addrs = make([]string, len(h.Redis.Addrs))
		for i, a := range h.Redis.Addrs {
			cfg.Addrs[i] = repl.ReplaceKnown(a, "")
		}
		cfg.MasterName = repl.ReplaceKnown(cfg.MasterName, "")
		cfg.Username = repl.ReplaceKnown(cfg.Username, "")
		cfg.Password = repl.ReplaceKnown(cfg.Password, "")
		client, err := redisconn.Acquire(cfg)
		if err != nil {
			return nil, err
		}
		h.redis = &cfg
		prefix := repl.ReplaceKnown(h.Redis.KeyPrefix, "")
		if prefix == "" {
			prefix = redisstore.DefaultPrefix
		}
		return redisstore.New(client, prefix, h.logger), nil
	}
	return nil, errors.New("no integration store: configure redis or integrations_file")
}

// Validate checks the configuration's values.
func (h *Handler) Validate() error {
	for name, d := range map[string]caddy.Duration{
		"cache_ttl": h.CacheTTL, "negative_ttl": h.NegativeTTL, "stale_ttl": h.StaleTTL,
	} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if h.CacheSize < 0 {
		return errors.New("cache_size must not be negative")
	}
	if h.MaxBody < 0 {
		return errors.New("max_body must not be negative")
	}
	return nil
}

// Cleanup releases the shared Redis client.
func (h *Handler) Cleanup() error {
	if h.redis == nil {
		return nil
	}
	return redisconn.Release(*h.redis)
}

// servedStale logs and counts an integration served past its TTL.
func (h *Handler) servedStale(id string, err error) {
	metrics.staleServed.Inc()
	h.logger.Warn("integration store unreachable; serving the last good copy",
		zap.String("webhook_id", id), zap.Error(err))
}

// ServeHTTP answers a webhook request. It never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	o := h.serve(w, r)
	metrics.requests.WithLabelValues(string(o)).Inc()
	return nil
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) outcome {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return outcomeMethodNotAllowed
	}
	id := webhookID(r.URL.EscapedPath())
	if !integration.ValidID(id) {
		writeDetail(w, http.StatusBadRequest, "Invalid webhook ID")
		return outcomeBadID
	}
	if r.ContentLength > h.MaxBody {
		writeDetail(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return outcomeTooLarge
	}

	in, err := h.integrations.Load(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeNotFound(w, id)
		return outcomeNotFound
	case integration.IsMalformed(err):
		h.logger.Error("integration record malformed", zap.String("webhook_id", id), zap.Error(err))
		writeDetail(w, http.StatusInternalServerError, msgFailed)
		return outcomeMalformed
	case err != nil:
		h.logger.Error("integration store unreachable", zap.String("webhook_id", id), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeDetail(w, http.StatusServiceUnavailable, "Webhook store unavailable, retry later")
		return outcomeStoreUnavailable
	case !in.Enabled:
		writeNotFound(w, id)
		return outcomeDisabled
	}

	body, err := readBody(r, h.MaxBody)
	if err != nil {
		return h.bodyError(w, err)
	}
	return h.accept(w, in, body)
}

// accept is where an enabled webhook's request goes next: verification and
// dispatch, which are not built yet. Until they are, nothing is triggered and
// the sender is told so, rather than answered 200.
func (h *Handler) accept(w http.ResponseWriter, _ *integration.Integration, _ []byte) outcome {
	writeDetail(w, http.StatusNotImplemented, "Webhook verification and dispatch are not available yet")
	return outcomeNotImplemented
}

// webhookID returns the last segment of an escaped path.
func webhookID(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

func (h *Handler) bodyError(w http.ResponseWriter, err error) outcome {
	if errors.Is(err, errBodyTooLarge) {
		writeDetail(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return outcomeTooLarge
	}
	h.logger.Debug("reading request body", zap.Error(err))
	writeDetail(w, http.StatusBadRequest, "Could not read the request body")
	return outcomeBadBody
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
