// Package module holds the Caddy modules of caddy-webhooks: the HTTP handler
// that is the edge for CodeMie webhooks, its metrics, and (later) its admin
// API and CLI. The decisions themselves live in internal/.
package module

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	answers "github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/body"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/mirror"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/store/filestore"
	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
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
	DefaultBodyBudget  = 256 << 20
	DefaultBodyTimeout = 10 * time.Second // GitHub gives up after 10s
	DefaultRateLimit   = 10               // requests per DefaultRateWindow, as the CodeMie backend
	DefaultRateWindow  = 60 * time.Second
	DefaultReplay      = 24 * time.Hour
	DefaultTimeout     = 600 * time.Second // per CodeMie API call, as the backend
)

// maxDuration bounds every duration option: a year is more than any of
// them needs, and the times they are added to or taken from (the cache's
// expiry, a retry's wait, a trim's cutoff, the sync's lock) overflow past
// a few hundred years.
const maxDuration = 365 * 24 * time.Hour

// maxCount bounds every count option: no option counts that far, and a
// Caddyfile's larger numbers lose digits in the JSON Caddy adapts it to.
const maxCount = math.MaxInt32

// Delivery modes.
const (
	// DeliverySync dispatches during the request: CodeMie's answer decides ours.
	DeliverySync = "sync"
	// DeliveryAsync answers once the webhook is in a durable Redis queue,
	// which workers in every instance dispatch, retry and dead-letter.
	DeliveryAsync = "async"
)

// Defaults of durable delivery.
const (
	DefaultAttempts     = 12
	DefaultFirstBackoff = time.Second
	DefaultMaxBackoff   = time.Hour
	DefaultClaimAfter   = time.Minute
	DefaultWorkers      = 512
	DefaultMaxInFlight  = 64
	DefaultMaxQueue     = 1_000_000
	DefaultMaxAge       = 72 * time.Hour
	// Bounds of the delivery log.
	DefaultLogMaxEntries   = 50_000
	DefaultLogMaxAge       = 24 * time.Hour
	DefaultLogPreviewBytes = 512
	// Bounds of the dead stream.
	DefaultDeadMaxEntries = 10_000
	DefaultDeadMaxAge     = 7 * 24 * time.Hour
	DefaultDeadMaxBytes   = 256 << 20
	// drainTimeout bounds how long a config unload waits for dispatches in
	// flight before handing them back to the queue.
	drainTimeout = 30 * time.Second
	// collapseWindow bounds how long a queued datasource reindex covers
	// later triggers of its webhook: a reindex that waits longer in the
	// queue gets a second one queued behind it.
	collapseWindow = 10 * time.Minute
)

// Handler is the edge for CodeMie webhooks. It answers
// POST <route prefix>/{webhook-id}: the webhook id is the last segment of
// the path. It loads that webhook's integration (from Redis, or from an
// integrations file) and answers as the CodeMie backend would: 400 for an
// unknown or disabled webhook (the same body for both, so ids cannot be
// probed), 405 for another method, 413 for a body over MaxBody. Then every
// mechanism the integration configures must pass (GitHub signature, GitLab
// token, secure header), event filters apply, and the rate limit and replay
// guard are checked in one Redis round trip.
//
// The handler answers every request it gets and never calls the next
// handler: put it in a route for the webhook path. It sets these
// placeholders, for access logs:
//
//	{http.codemie_webhooks.id}           the webhook id, once it is valid
//	{http.codemie_webhooks.delivery_id}  the sender's delivery id, if any
//	{http.codemie_webhooks.outcome}      how the request ended, as in the metrics
type Handler struct {
	// Redis holds the integrations, one hash per webhook. Exactly one of
	// Redis and IntegrationsFile must be set.
	Redis *RedisConfig `json:"redis,omitempty"`

	// IntegrationsFile is the path of a JSON file of integrations, re-read
	// when it changes: the embedded default store, with no Redis.
	IntegrationsFile string `json:"integrations_file,omitempty"`

	// CacheTTL is how long a loaded integration is served from memory
	// before it is loaded again. Changes announced on the Redis channel
	// take effect at once regardless. Default: 30s; at most 8760h.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long an unknown webhook id is answered as unknown
	// without asking the store: a repeated unknown id reaches Redis once
	// per NegativeTTL (each distinct id still costs one read). Default: 5s;
	// at most 8760h.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// StaleTTL is how long after it was last loaded an integration is still
	// served while the store cannot be reached. Default: 10m; at most 8760h.
	StaleTTL caddy.Duration `json:"stale_ttl,omitempty"`

	// CacheSize is the most integrations kept in memory (and, separately,
	// the most unknown ids remembered). Default: 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// MaxBody is the largest request body accepted, in bytes; larger
	// requests get 413. Default: 26214400 (25 MiB).
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxBodiesInFlight bounds the memory that the bodies of all the
	// requests being read or handled at once may take, in bytes. A body
	// takes memory only as its bytes arrive; a request whose body would
	// go past the bound, or past half of it for the bodies of one webhook
	// (or one body of max_body, if that is more), gets 503 with
	// Retry-After. Default: 268435456 (256 MiB).
	MaxBodiesInFlight int64 `json:"max_bodies_in_flight,omitempty"`

	// BodyTimeout bounds the time to receive one request's body once its
	// headers are in; a slower sender gets 408. Default: 10s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// FilteredStatus answers a GitHub event that the integration's filter
	// drops: 200 {"message":"Webhook received, event filtered out"}, or 400
	// with the CodeMie backend's body. GitLab events are always answered 200
	// (GitLab disables hooks that keep failing). Default: 200.
	FilteredStatus int `json:"filtered_status,omitempty"`

	// RequireAuth rejects, with 401, webhooks whose integration configures no
	// mechanism. Without it they are served, logged and counted.
	RequireAuth bool `json:"require_auth,omitempty"`

	// RateLimit is how often one webhook may trigger, across every instance
	// sharing the Redis. Default: 10 requests per 60s, as the CodeMie backend.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// ReplayWindow is how long a delivery id is remembered: a delivery seen
	// within it is answered 200 and not triggered again. 0 turns the replay
	// guard off. Default: 24h.
	ReplayWindow *caddy.Duration `json:"replay_window,omitempty"`

	// SecretsKey opens secret fields stored encrypted ("enc:v1:..."):
	// 32 bytes in base64, normally {env.CODEMIE_WEBHOOKS_KEY}. Plain values
	// keep working without it.
	SecretsKey string `json:"secrets_key,omitempty"`

	// SecretsKeyPrevious also opens values, while they are re-encrypted
	// with a new SecretsKey.
	SecretsKeyPrevious string `json:"secrets_key_previous,omitempty"`

	// Upstream is the CodeMie API that accepted webhooks trigger. Required.
	Upstream *Upstream `json:"upstream,omitempty"`

	// Delivery is how accepted webhooks reach the upstream: "async" answers
	// once the webhook is in a durable Redis queue; "sync" dispatches during
	// the request. Default: async with Redis, sync with an integrations file
	// (the only mode it allows).
	Delivery string `json:"delivery,omitempty"`

	// Workers is how many queued webhooks this instance dispatches at once:
	// with calls that take T seconds, it delivers about Workers/T a second.
	// A dispatch in flight is a goroutine waiting on HTTP (tens of KB).
	// Default: 512.
	Workers int `json:"workers,omitempty"`

	// MaxInFlight is how many queued webhooks for one resource (an
	// assistant, a workflow, a datasource) are dispatched at once, across
	// every instance of the same Redis and key prefix; more wait, without
	// holding up other resources. Default: 64.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// NoWorkers makes this instance only take webhooks in: other instances
	// of the same Redis and key prefix dispatch them. For scaling intake
	// and dispatch apart; with no instance dispatching, webhooks wait.
	NoWorkers bool `json:"no_workers,omitempty"`

	// Retry is the policy for queued webhooks whose dispatch failed in a
	// way that may pass: network errors, timeouts, 408, 429, 5xx.
	// Default: 12 attempts, backoff from 1s up to 1h, with full jitter.
	Retry *Retry `json:"retry,omitempty"`

	// ClaimAfter is how long a queued webhook may be in flight at an
	// instance that shows no sign of life before another instance takes it
	// over. Default: 1m.
	ClaimAfter caddy.Duration `json:"claim_after,omitempty"`

	// MaxQueue is the most webhooks the queue holds; when it is full,
	// webhooks are answered 503 rather than anything being dropped.
	// Default: 1000000.
	MaxQueue int64 `json:"max_queue,omitempty"`

	// MaxAge is how old a queued webhook may get before it is moved to the
	// dead stream instead of dispatched. Default: 72h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// DeadLetters bounds the dead stream: each time a webhook is moved to
	// it, its oldest dead letters are dropped (logged and counted) while it
	// is over a bound. Default: 10000 entries, 168h, 256 MiB.
	DeadLetters *DeadLetters `json:"dead_letters,omitempty"`

	// DeliveryLog bounds the delivery log in Redis that the console and
	// the tail read. Default: on with Redis, 50000 records, 24h, previews
	// of 512 bytes.
	DeliveryLog *DeliveryLog `json:"delivery_log,omitempty"`

	// SyncFromCodeMie keeps the integrations in Redis in step with
	// CodeMie's webhook settings, from inside Caddy. Off by default.
	SyncFromCodeMie *SyncFromCodeMie `json:"sync_from_codemie,omitempty"`

	logger       *zap.Logger
	redis        *redisconn.Config // as acquired, to release on Cleanup
	integrations store.Store
	guard        guard.Guard
	verifyOpts   verify.Options
	limitedMsg   string
	keys         *seal.Keys // open sealed secrets; nil without secrets_key
	bodies       *body.Reader
	dispatcher   *dispatch.Client
	redisClient  redis.UniversalClient
	space        keyspace.Space
	queue        *delivery.Queue   // with delivery async
	intake       intake            // the queue, as the request path uses it
	workers      *delivery.Workers // with delivery async
	history      *history.Log      // with redis, unless the log is off
	records      *history.Writer   // writes to history
	tracers      tracers           // the tracer provider of traced requests
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
	// Every check runs before anything is started: Caddy calls Validate
	// only after Provision, and a config that starts workers and is then
	// refused must not leave them running (or crash) on a reload.
	if err := h.Validate(); err != nil {
		return err
	}
	if h.Upstream.ActAs != ActAsOwner && !h.Upstream.Forward {
		h.logger.Warn("calls to CodeMie carry the service account's identity: conversations, executions and reindexes " +
			"will belong to it, not to each webhook's owner; act_as owner (with oauth2) acts as the owner, and so does forward")
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	repl := caddy.NewReplacer()
	keys, err := seal.ParseKeys(repl.ReplaceKnown(h.SecretsKey, ""), repl.ReplaceKnown(h.SecretsKeyPrevious, ""))
	if err != nil {
		return err
	}
	h.keys = keys
	if h.dispatcher, err = h.Upstream.client(keys); err != nil {
		return err
	}
	src, err := h.openStore()
	if err != nil {
		return err
	}
	h.bodies = body.NewReader(h.MaxBody, h.MaxBodiesInFlight, time.Duration(h.BodyTimeout))
	h.verifyOpts = verify.Options{RequireAuth: h.RequireAuth, FilteredStatus: h.FilteredStatus}
	h.limitedMsg = answers.RateLimited(h.RateLimit.Requests, time.Duration(h.RateLimit.Window))
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
	if h.redisClient != nil {
		go h.watchEviction(ctx)
	}
	if h.redisClient != nil && !h.DeliveryLog.Off {
		h.startLog()
	}
	if h.Delivery == DeliveryAsync {
		h.startQueue(ctx)
	}
	if h.SyncFromCodeMie != nil {
		st, ok := src.(mirror.Store)
		if !ok {
			return errors.New("sync_from_codemie writes the integrations to Redis: configure redis")
		}
		if err := h.startSync(ctx, st); err != nil {
			return err
		}
	}
	h.integrations = cache
	return nil
}

func (h *Handler) setDefaults() {
	defaultTo(&h.CacheTTL, caddy.Duration(DefaultCacheTTL))
	defaultTo(&h.NegativeTTL, caddy.Duration(DefaultNegativeTTL))
	defaultTo(&h.StaleTTL, caddy.Duration(DefaultStaleTTL))
	defaultTo(&h.CacheSize, DefaultCacheSize)
	defaultTo(&h.MaxBody, DefaultMaxBody)
	defaultTo(&h.MaxBodiesInFlight, DefaultBodyBudget)
	defaultTo(&h.BodyTimeout, caddy.Duration(DefaultBodyTimeout))
	defaultTo(&h.FilteredStatus, http.StatusOK)
	if h.RateLimit == nil {
		h.RateLimit = &RateLimit{Requests: DefaultRateLimit}
	}
	defaultTo(&h.RateLimit.Window, caddy.Duration(DefaultRateWindow))
	if h.ReplayWindow == nil {
		d := caddy.Duration(DefaultReplay)
		h.ReplayWindow = &d
	}
	if h.Upstream != nil && h.Upstream.Timeout == 0 {
		h.Upstream.Timeout = caddy.Duration(DefaultTimeout)
	}
	if h.Delivery == "" {
		h.Delivery = DeliverySync
		if h.Redis != nil {
			h.Delivery = DeliveryAsync
		}
	}
	defaultTo(&h.Workers, DefaultWorkers)
	defaultTo(&h.MaxInFlight, DefaultMaxInFlight)
	if h.Retry == nil {
		h.Retry = &Retry{}
	}
	defaultTo(&h.Retry.Attempts, DefaultAttempts)
	defaultTo(&h.Retry.First, caddy.Duration(DefaultFirstBackoff))
	defaultTo(&h.Retry.Max, caddy.Duration(DefaultMaxBackoff))
	defaultTo(&h.ClaimAfter, caddy.Duration(DefaultClaimAfter))
	defaultTo(&h.MaxQueue, DefaultMaxQueue)
	defaultTo(&h.MaxAge, caddy.Duration(DefaultMaxAge))
	if h.DeadLetters == nil {
		h.DeadLetters = &DeadLetters{}
	}
	defaultTo(&h.DeadLetters.MaxEntries, DefaultDeadMaxEntries)
	defaultTo(&h.DeadLetters.MaxAge, caddy.Duration(DefaultDeadMaxAge))
	defaultTo(&h.DeadLetters.MaxBytes, DefaultDeadMaxBytes)
	if h.DeliveryLog == nil {
		h.DeliveryLog = &DeliveryLog{}
	}
	defaultTo(&h.DeliveryLog.MaxEntries, DefaultLogMaxEntries)
	defaultTo(&h.DeliveryLog.MaxAge, caddy.Duration(DefaultLogMaxAge))
	defaultTo(&h.DeliveryLog.PreviewBytes, DefaultLogPreviewBytes)
}

// client builds the CodeMie API client. Placeholders such as
// {env.CODEMIE_TOKEN} are expanded in the URL, credentials and headers.
func (u *Upstream) client(keys *seal.Keys) (*dispatch.Client, error) {
	if u == nil || u.URL == "" {
		return nil, errors.New("upstream: the CodeMie API's URL is required")
	}
	repl := caddy.NewReplacer()
	base, ok := httpURL(repl.ReplaceKnown(u.URL, ""))
	if !ok {
		return nil, fmt.Errorf("upstream: %q is not an http or https URL", u.URL)
	}
	if base.User != nil {
		return nil, errors.New("upstream: credentials in the URL are not allowed; use bearer_token or oauth2")
	}
	// Calls are made on the base's path; an empty segment would make it a
	// network-path reference ("//v1/..." names host v1) and send the
	// token elsewhere.
	if strings.Contains(base.Path, "//") {
		return nil, fmt.Errorf("upstream: %q: the path has an empty segment", u.URL)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.ForceQuery {
		return nil, fmt.Errorf("upstream: %q: a base URL takes no query or fragment", u.URL)
	}
	if port := base.Port(); port != "" && !validPort(port) {
		return nil, fmt.Errorf("upstream: %q: the port is not between 1 and 65535", u.URL)
	}
	cfg := dispatch.Config{BaseURL: base, Timeout: time.Duration(u.Timeout), Header: http.Header{}, Client: dispatch.HTTPClient,
		Forward: u.Forward, Keys: keys}
	for name, value := range u.Headers {
		value = repl.ReplaceKnown(value, "")
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			return nil, fmt.Errorf("upstream: header %q: not a header name", name)
		case !httpguts.ValidHeaderFieldValue(value):
			// The value may be a secret: it is not named.
			return nil, fmt.Errorf("upstream: header %s: its value is not a header value", name)
		case cfg.Header.Values(name) != nil:
			return nil, fmt.Errorf("upstream: header %s: given more than once", http.CanonicalHeaderKey(name))
		}
		cfg.Header.Set(name, value)
	}
	switch {
	case u.BearerToken != "" && u.OAuth2 != nil:
		return nil, errors.New("upstream: bearer_token and oauth2 are exclusive")
	case u.BearerToken != "":
		token, err := bearerToken(repl, u.BearerToken, "upstream")
		if err != nil {
			return nil, err
		}
		cfg.Tokens = dispatch.StaticToken(token)
	case u.OAuth2 != nil:
		o, err := u.OAuth2.expand(repl, "upstream")
		if err != nil {
			return nil, err
		}
		cc := dispatch.NewClientCredentials(o.tokenURL, o.id, o.secret, dispatch.HTTPClient)
		cfg.Tokens = cc
		if u.ActAs == ActAsOwner {
			cfg.Tokens = dispatch.NewOwnerTokens(cc, o.tokenURL, o.id, o.secret, dispatch.HTTPClient)
		}
	}
	return dispatch.New(cfg), nil
}

// validPort reports whether port is a TCP port number, 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func (h *Handler) guardConfig() guard.Config {
	return guard.Config{
		Limit:        h.RateLimit.Requests,
		Window:       time.Duration(h.RateLimit.Window),
		ReplayWindow: time.Duration(*h.ReplayWindow),
		CollapseTTL:  min(time.Duration(h.MaxAge), collapseWindow),
	}
}

// openStore opens the configured store. Placeholders such as
// {env.REDIS_PASSWORD} are expanded in addresses, credentials and paths.
func (h *Handler) openStore() (store.Store, error) {
	repl := caddy.NewReplacer()
	keys := h.keys
	switch {
	case h.IntegrationsFile != "":
		h.guard = guard.NewMemory(h.guardConfig())
		return filestore.Open(repl.ReplaceKnown(h.IntegrationsFile, ""), keys, h.logger)
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
		space := keyspace.Space{Prefix: repl.ReplaceKnown(h.Redis.KeyPrefix, "")}
		if space.Prefix == "" {
			space.Prefix = keyspace.DefaultPrefix
		}
		h.guard = guard.NewRedis(client, space, h.guardConfig())
		h.redisClient, h.space = client, space
		return redisstore.New(client, space, keys, h.logger), nil
	}
	return nil, errors.New("no integration store: configure redis or integrations_file")
}

// Validate checks the configuration's values and how they combine. It
// starts nothing, and Provision runs it before it starts anything.
func (h *Handler) Validate() error {
	switch {
	case h.Redis != nil && h.IntegrationsFile != "":
		return errors.New("redis and integrations_file are exclusive: configure one store")
	case h.Redis == nil && h.IntegrationsFile == "":
		return errors.New("no integration store: configure redis or integrations_file")
	case h.Upstream == nil:
		return errors.New("upstream: the CodeMie API's URL is required")
	}
	if err := h.validBounds(); err != nil {
		return err
	}
	if h.MaxBody < 0 || h.MaxBodiesInFlight < 0 {
		return errors.New("max_body and max_bodies_in_flight must not be negative")
	}
	if h.MaxBodiesInFlight <= h.MaxBody {
		// Reading a body of max_body takes max_body+1 bytes: one more
		// shows the body is not longer.
		return fmt.Errorf("max_bodies_in_flight (%d bytes) must be larger than max_body (%d bytes)", h.MaxBodiesInFlight, h.MaxBody)
	}
	if err := validFilteredStatus(h.FilteredStatus); err != nil {
		return fmt.Errorf("filtered_status: %v", err)
	}
	if err := h.Upstream.validate(); err != nil {
		return fmt.Errorf("upstream: %v", err)
	}
	if s := h.SyncFromCodeMie; s != nil {
		if h.Redis == nil {
			return errors.New("sync_from_codemie writes the integrations to Redis: configure redis")
		}
		if err := s.validate(); err != nil {
			return fmt.Errorf("sync_from_codemie: %v", err)
		}
		if _, err := s.source(h.Upstream.URL); err != nil {
			return err
		}
	}
	if err := h.Retry.validate(); err != nil {
		return fmt.Errorf("retry: %v", err)
	}
	if err := h.DeadLetters.validate(); err != nil {
		return fmt.Errorf("dead_letters: %v", err)
	}
	switch {
	case h.Delivery == DeliveryAsync && h.Redis == nil:
		return errors.New("delivery async needs redis: an integrations file allows only delivery sync")
	case validDelivery(h.Delivery) != nil:
		return fmt.Errorf("delivery: %v", validDelivery(h.Delivery))
	}
	return nil
}

// bounded is an option's name and value, and the least value it takes,
// for validBounds.
type bounded[T any] struct {
	name         string
	value, least T
}

// validBounds checks every duration against maxDuration and every count
// against maxCount. The trims' ages are at least a millisecond, their
// unit in Redis: less would be read as no limit.
func (h *Handler) validBounds() error {
	ms := caddy.Duration(time.Millisecond)
	durations := []bounded[caddy.Duration]{
		{"cache_ttl", h.CacheTTL, 0}, {"negative_ttl", h.NegativeTTL, 0}, {"stale_ttl", h.StaleTTL, 0},
		{"body_timeout", h.BodyTimeout, 0}, {"replay_window", *h.ReplayWindow, 0}, {"upstream timeout", h.Upstream.Timeout, 0},
		{"rate_limit window", h.RateLimit.Window, 0}, {"retry first", h.Retry.First, 0}, {"retry max", h.Retry.Max, 0},
		{"claim_after", h.ClaimAfter, 0}, {"max_age", h.MaxAge, 0},
		{"dead_letters max_age", h.DeadLetters.MaxAge, ms}, {"delivery_log max_age", h.DeliveryLog.MaxAge, ms},
	}
	if h.SyncFromCodeMie != nil {
		durations = append(durations, bounded[caddy.Duration]{"sync_from_codemie interval", h.SyncFromCodeMie.Interval, 0})
	}
	for _, d := range durations {
		if d.value < d.least || time.Duration(d.value) > maxDuration {
			least := "0"
			if d.least > 0 {
				least = time.Duration(d.least).String()
			}
			return fmt.Errorf("%s must be between %s and %v", d.name, least, maxDuration)
		}
	}
	for _, c := range []bounded[int64]{
		{"cache_size", int64(h.CacheSize), 0}, {"workers", int64(h.Workers), 0}, {"max_in_flight", int64(h.MaxInFlight), 0},
		{"max_queue", h.MaxQueue, 0}, {"rate_limit requests", int64(h.RateLimit.Requests), 0}, {"retry attempts", int64(h.Retry.Attempts), 0},
		{"dead_letters max_entries", h.DeadLetters.MaxEntries, 0}, {"delivery_log max_entries", h.DeliveryLog.MaxEntries, 0},
		{"delivery_log preview_bytes", int64(h.DeliveryLog.PreviewBytes), 0},
	} {
		if c.value < c.least || c.value > maxCount {
			return fmt.Errorf("%s must be between %d and %d", c.name, c.least, maxCount)
		}
	}
	return nil
}

// Cleanup stops the workers, handing back what they could not finish, and
// releases the shared Redis client.
func (h *Handler) Cleanup() error {
	if h.workers != nil {
		h.workers.Stop(drainTimeout)
	}
	if h.queue != nil {
		queues.remove(h.queue.Name(), h.queue)
	}
	if h.records != nil {
		h.records.Stop() // after the workers: their last outcomes are written
		logs.remove(h.space.Prefix, h.history)
	}
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// defaultTo sets *field to def when it is the zero value: an option left
// out takes its default.
func defaultTo[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
