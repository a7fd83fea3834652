// Package module holds the Caddy modules of caddy-webhooks: the HTTP handler
// that is the edge for CodeMie webhooks, its metrics, and (later) its admin
// API and CLI. The decisions themselves live in internal/.
package module

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
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
	DefaultRateLimit   = 10       // requests per DefaultRateWindow, as the CodeMie backend
	DefaultRateWindow  = 60 * time.Second
	DefaultReplay      = 24 * time.Hour
	DefaultTimeout     = 600 * time.Second // per CodeMie API call, as the backend
)

// Delivery modes.
const (
	// DeliverySync dispatches during the request: CodeMie's answer decides ours.
	DeliverySync = "sync"
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

	// Upstream is the CodeMie API that accepted webhooks trigger. Required.
	Upstream *Upstream `json:"upstream,omitempty"`

	// Delivery is how accepted webhooks reach the upstream: "sync"
	// dispatches during the request. Default: sync.
	Delivery string `json:"delivery,omitempty"`

	logger       *zap.Logger
	redis        *redisconn.Config // as acquired, to release on Cleanup
	integrations store.Store
	guard        guard.Guard
	verifyOpts   verify.Options
	limitedMsg   string
	dispatcher   *dispatch.Client
}

// Upstream is the CodeMie API and how to authorize calls to it.
type Upstream struct {
	// URL is the API's base URL, such as http://codemie-api:8080.
	URL string `json:"url"`

	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string `json:"bearer_token,omitempty"`

	// OAuth2 gets tokens with the client-credentials grant instead.
	OAuth2 *OAuth2 `json:"oauth2,omitempty"`

	// Timeout bounds each call to the API. Default: 600s, as the backend.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Headers are added to every call.
	Headers map[string]string `json:"headers,omitempty"`
}

// OAuth2 is a client of the client-credentials grant, such as a Keycloak
// service account (token URL {issuer}/protocol/openid-connect/token).
type OAuth2 struct {
	TokenURL     string `json:"token_url"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// RateLimit is a fixed window per webhook.
type RateLimit struct {
	// Requests admitted per window; 0 turns the rate limit off.
	Requests int `json:"requests"`
	// Window is the window's length. Default: 60s.
	Window caddy.Duration `json:"window,omitempty"`
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
	if h.dispatcher, err = h.Upstream.client(); err != nil {
		return err
	}
	h.verifyOpts = verify.Options{RequireAuth: h.RequireAuth, FilteredStatus: h.FilteredStatus}
	h.limitedMsg = fmt.Sprintf("Webhook rate limit exceeded: maximum %d requests per %s seconds allowed.",
		h.RateLimit.Requests, strconv.FormatFloat(time.Duration(h.RateLimit.Window).Seconds(), 'f', -1, 64))
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
	if h.FilteredStatus == 0 {
		h.FilteredStatus = http.StatusOK
	}
	if h.RateLimit == nil {
		h.RateLimit = &RateLimit{Requests: DefaultRateLimit}
	}
	if h.RateLimit.Window == 0 {
		h.RateLimit.Window = caddy.Duration(DefaultRateWindow)
	}
	if h.ReplayWindow == nil {
		d := caddy.Duration(DefaultReplay)
		h.ReplayWindow = &d
	}
	if h.Upstream != nil && h.Upstream.Timeout == 0 {
		h.Upstream.Timeout = caddy.Duration(DefaultTimeout)
	}
	if h.Delivery == "" {
		h.Delivery = DeliverySync
	}
}

// client builds the CodeMie API client. Placeholders such as
// {env.CODEMIE_TOKEN} are expanded in the URL, credentials and headers.
func (u *Upstream) client() (*dispatch.Client, error) {
	if u == nil || u.URL == "" {
		return nil, errors.New("upstream: the CodeMie API's URL is required")
	}
	repl := caddy.NewReplacer()
	base, err := url.Parse(repl.ReplaceKnown(u.URL, ""))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("upstream: %q is not an http or https URL", u.URL)
	}
	if base.User != nil {
		return nil, errors.New("upstream: credentials in the URL are not allowed; use bearer_token or oauth2")
	}
	cfg := dispatch.Config{BaseURL: base, Timeout: time.Duration(u.Timeout), Header: http.Header{}, Client: dispatch.HTTPClient}
	for name, value := range u.Headers {
		cfg.Header.Set(name, repl.ReplaceKnown(value, ""))
	}
	switch {
	case u.BearerToken != "" && u.OAuth2 != nil:
		return nil, errors.New("upstream: bearer_token and oauth2 are exclusive")
	case u.BearerToken != "":
		cfg.Tokens = dispatch.StaticToken(repl.ReplaceKnown(u.BearerToken, ""))
	case u.OAuth2 != nil:
		o := u.OAuth2
		cfg.Tokens = dispatch.NewClientCredentials(repl.ReplaceKnown(o.TokenURL, ""),
			repl.ReplaceKnown(o.ClientID, ""), repl.ReplaceKnown(o.ClientSecret, ""), dispatch.HTTPClient)
	}
	return dispatch.New(cfg), nil
}

func (h *Handler) guardConfig() guard.Config {
	return guard.Config{
		Limit:        h.RateLimit.Requests,
		Window:       time.Duration(h.RateLimit.Window),
		ReplayWindow: time.Duration(*h.ReplayWindow),
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
		h.guard = guard.NewMemory(h.guardConfig())
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
		h.guard = guard.NewRedis(client, prefix, h.guardConfig())
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
	if h.FilteredStatus != http.StatusOK && h.FilteredStatus != http.StatusBadRequest {
		return fmt.Errorf("filtered_status %d: must be 200 or 400", h.FilteredStatus)
	}
	if h.RateLimit.Requests < 0 || h.RateLimit.Window < 0 {
		return errors.New("rate_limit must not be negative")
	}
	if *h.ReplayWindow < 0 {
		return errors.New("replay_window must not be negative")
	}
	if h.Upstream.Timeout < 0 {
		return errors.New("upstream: timeout must not be negative")
	}
	if h.Delivery != DeliverySync {
		return fmt.Errorf("delivery %q: must be sync", h.Delivery)
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
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	a := h.serve(w, r, repl)
	if repl != nil {
		repl.Set("http.codemie_webhooks.outcome", string(a.outcome))
	}
	metrics.requests.WithLabelValues(string(a.outcome)).Inc()
	h.log(r, a)
	return nil
}

// answer is how one request ended, for the metrics and the log.
type answer struct {
	outcome    outcome
	status     int
	id         string
	deliveryID string
	err        error // what went wrong on our side, if anything
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer) answer {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeDetail(w, answer{outcome: outcomeMethodNotAllowed, status: http.StatusMethodNotAllowed}, "Method Not Allowed")
	}
	id := webhookID(r.URL.EscapedPath())
	if !integration.ValidID(id) {
		return writeDetail(w, answer{outcome: outcomeBadID, status: http.StatusBadRequest}, "Invalid webhook ID")
	}
	a := answer{id: id, deliveryID: guard.DeliveryID(r.Header)}
	if repl != nil {
		repl.Set("http.codemie_webhooks.id", id)
		repl.Set("http.codemie_webhooks.delivery_id", a.deliveryID)
	}
	if r.ContentLength > h.MaxBody {
		return writeDetail(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), msgTooLarge)
	}

	in, err := h.integrations.Load(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return writeNotFound(w, a.with(outcomeNotFound, http.StatusBadRequest))
	case integration.IsMalformed(err):
		a.err = err
		return writeDetail(w, a.with(outcomeMalformed, http.StatusInternalServerError), msgFailed)
	case err != nil:
		a.err = err
		w.Header().Set("Retry-After", "5")
		return writeDetail(w, a.with(outcomeStoreUnavailable, http.StatusServiceUnavailable), "Webhook store unavailable, retry later")
	case !in.Enabled:
		return writeNotFound(w, a.with(outcomeDisabled, http.StatusBadRequest))
	}

	body, err := readBody(r, h.MaxBody)
	if errors.Is(err, errBodyTooLarge) {
		return writeDetail(w, a.with(outcomeTooLarge, http.StatusRequestEntityTooLarge), msgTooLarge)
	}
	if err != nil {
		a.err = err
		return writeDetail(w, a.with(outcomeBadBody, http.StatusBadRequest), "Could not read the request body")
	}

	v := verify.Check(in, r.Header, body, h.verifyOpts)
	if v.Unauthenticated {
		metrics.unauthenticated.Inc()
		h.logger.Warn("webhook has no authentication configured; served without any",
			zap.String("webhook_id", id), zap.String("delivery_id", a.deliveryID))
	}
	if v.Outcome != verify.Pass {
		return writeResult(w, a.with(outcome(v.Outcome), v.Status), v.Message)
	}
	if !dispatch.Supported(in.ResourceType) {
		ans := dispatch.UnsupportedAnswer(in.ResourceType)
		return writeDetail(w, a.with(outcomeUnsupported, ans.Status), ans.Detail)
	}
	return h.admit(w, r, a, in, body)
}

// admit runs the guard over a verified request and hands it on.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, a answer, in *integration.Integration, body []byte) answer {
	d, err := h.guard.Check(r.Context(), a.id, a.deliveryID)
	if err != nil {
		// Fail open: an unreachable Redis must not stop verified webhooks.
		metrics.guardErrors.Inc()
		h.logger.Warn("rate limit and replay guard unavailable; admitting", zap.String("webhook_id", a.id), zap.Error(err))
	}
	switch d.Verdict {
	case guard.Duplicate:
		return writeResult(w, a.with(outcomeDuplicate, http.StatusOK), "Duplicate delivery ignored")
	case guard.Limited:
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
		return writeDetail(w, a.with(outcomeRateLimited, http.StatusTooManyRequests), h.limitedMsg)
	}
	res := h.accept(w, r, a, in, body)
	if res.status >= 300 {
		// Not accepted after all: the sender's retry must not be a duplicate.
		if err := h.guard.Forget(r.Context(), a.id, a.deliveryID); err != nil {
			h.logger.Warn("forgetting a delivery that was not accepted", zap.String("webhook_id", a.id), zap.Error(err))
		}
	}
	return res
}

// accept triggers the integration's resource. The sender's delivery id
// (or, without one, a new id) is the Idempotency-Key of every call.
func (h *Handler) accept(w http.ResponseWriter, r *http.Request, a answer, in *integration.Integration, body []byte) answer {
	deliveryID := a.deliveryID
	if deliveryID == "" {
		deliveryID = "edge-" + uuid.NewString()
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.codemie_webhooks.delivery_id", deliveryID)
		}
	}
	job := dispatch.Job{WebhookID: in.ID, ResourceType: in.ResourceType, ResourceID: in.ResourceID,
		UserID: in.UserID, DeliveryID: deliveryID, Body: body}
	// A sender that gives up must not leave the calls half made.
	res := h.dispatch(context.WithoutCancel(r.Context()), job)
	return h.answerDispatch(w, a, res)
}

// dispatch makes one attempt and records it.
func (h *Handler) dispatch(ctx context.Context, job dispatch.Job) dispatch.Result {
	start := time.Now()
	res := h.dispatcher.Dispatch(ctx, job)
	metrics.dispatches.WithLabelValues(job.ResourceType, res.Class.String()).Inc()
	metrics.dispatchDuration.WithLabelValues(job.ResourceType).Observe(time.Since(start).Seconds())
	if res.Warning != "" {
		h.logger.Warn("webhook dispatched with a warning", zap.String("webhook_id", job.WebhookID),
			zap.String("delivery_id", job.DeliveryID), zap.String("warning", res.Warning))
	}
	return res
}

// answerDispatch tells the sender how a synchronous dispatch went: never
// the upstream's body, only the step that failed and CodeMie's status.
func (h *Handler) answerDispatch(w http.ResponseWriter, a answer, res dispatch.Result) answer {
	if res.Class == dispatch.Success {
		return writeResult(w, a.with(outcomeDispatched, http.StatusOK), "Webhook invoked successfully")
	}
	a.err = errors.New(res.Reason)
	if res.Answer != nil {
		return writeDetail(w, a.with(outcomeDispatchRefused, res.Answer.Status), res.Answer.Detail)
	}
	msg := "Webhook dispatch failed at step '" + res.Step + "'"
	if res.Status != 0 {
		msg += ": CodeMie answered " + strconv.Itoa(res.Status)
	}
	if res.Class == dispatch.Final {
		return writeDetail(w, a.with(outcomeDispatchFailed, http.StatusBadGateway), msg)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(max(res.RetryAfter, 5*time.Second)/time.Second)))
	return writeDetail(w, a.with(outcomeDispatchUnavailable, http.StatusServiceUnavailable), msg+", retry later")
}

func (a answer) with(o outcome, status int) answer {
	a.outcome, a.status = o, status
	return a
}

// log writes one line per request that did not trigger anything: an error
// for a fault on our side, a warning for a refused sender, info for other
// rejections, debug for answers that are not failures (pong, filtered,
// duplicate). It never logs a secret or the body.
func (h *Handler) log(r *http.Request, a answer) {
	lvl := zapcore.DebugLevel
	switch {
	case a.status >= 500:
		lvl = zapcore.ErrorLevel
	case a.status == http.StatusUnauthorized || a.status == http.StatusTooManyRequests:
		lvl = zapcore.WarnLevel
	case a.status >= 400:
		lvl = zapcore.InfoLevel
	}
	c := h.logger.Check(lvl, "webhook not triggered")
	if c == nil {
		return
	}
	remote := r.RemoteAddr
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		remote = ip
	}
	fields := []zap.Field{
		zap.String("webhook_id", a.id),
		zap.String("reason", string(a.outcome)),
		zap.Int("status", a.status),
		zap.String("remote_ip", remote),
		zap.String("delivery_id", a.deliveryID),
	}
	if a.err != nil {
		fields = append(fields, zap.Error(a.err))
	}
	c.Write(fields...)
}

// webhookID returns the last segment of an escaped path.
func webhookID(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
