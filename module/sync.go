package module

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/mirror"
)

// DefaultSyncInterval is how often integrations are synced from CodeMie.
const DefaultSyncInterval = 5 * time.Minute

// minSyncInterval is the shortest interval a sync takes: each sync lists
// every webhook setting from CodeMie's settings API.
const minSyncInterval = time.Second

// SyncFromCodeMie keeps the integrations in Redis in step with CodeMie's
// webhook settings from inside Caddy: every Interval, one of the instances
// sharing the Redis and key prefix does what `caddy codemie-webhooks sync`
// does (a lock in Redis picks it), logs each change (never a value) and
// counts it in the metrics.
type SyncFromCodeMie struct {
	// Interval is the time between syncs, at least 1s. Default: 5m.
	Interval caddy.Duration `json:"interval,omitempty"`
	// URL is the CodeMie API's base URL. Default: the upstream's URL.
	URL string `json:"url,omitempty"`
	// BearerToken is an admin's token for the settings API.
	BearerToken string `json:"bearer_token,omitempty"`
	// OAuth2 gets an admin client's tokens instead.
	OAuth2 *OAuth2 `json:"oauth2,omitempty"`
}

// validate checks the sync's settings.
func (s *SyncFromCodeMie) validate() error {
	switch {
	case s.Interval < 0 || (s.Interval > 0 && time.Duration(s.Interval) < minSyncInterval):
		return fmt.Errorf("the interval must be at least %v", minSyncInterval)
	case (s.BearerToken == "") == (s.OAuth2 == nil):
		return errors.New("configure one of bearer_token and oauth2 (an admin of CodeMie's settings)")
	case s.OAuth2 != nil && !s.OAuth2.complete():
		return errIncompleteOAuth2
	}
	return nil
}

// source is the settings API to read; placeholders are expanded.
func (s *SyncFromCodeMie) source(upstreamURL string) (*mirror.Source, error) {
	repl := caddy.NewReplacer()
	raw := repl.ReplaceKnown(s.URL, "")
	if raw == "" {
		raw = repl.ReplaceKnown(upstreamURL, "")
	}
	u, ok := httpURL(raw)
	if !ok {
		return nil, fmt.Errorf("sync_from_codemie: %q is not an http or https URL", raw)
	}
	src := &mirror.Source{BaseURL: u, Client: dispatch.HTTPClient}
	if s.BearerToken != "" {
		token, err := bearerToken(repl, s.BearerToken, "sync_from_codemie")
		if err != nil {
			return nil, err
		}
		src.Tokens = dispatch.StaticToken(token)
		return src, nil
	}
	o, err := s.OAuth2.expand(repl, "sync_from_codemie")
	if err != nil {
		return nil, err
	}
	src.Tokens = dispatch.NewClientCredentials(o.tokenURL, o.id, o.secret, dispatch.HTTPClient)
	return src, nil
}

// startSync runs the sync until the configuration is unloaded.
func (h *Handler) startSync(ctx caddy.Context, st mirror.Store) error {
	s := h.SyncFromCodeMie
	src, err := s.source(h.Upstream.URL)
	if err != nil {
		return err
	}
	interval := time.Duration(s.Interval)
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	r := &mirror.Runner{Source: src, Store: st, Keys: h.keys, Redis: h.redisClient, LockKey: h.space.SyncLock(),
		Holder: consumer, Interval: interval, Logger: h.logger.Named("sync"),
		Synced: func(settings, changes int) {
			metrics.syncLast.SetToCurrentTime()
			metrics.syncSettings.Set(float64(settings))
			metrics.syncChanges.Add(float64(changes))
		},
		Failed: func() { metrics.syncErrors.Inc() },
	}
	go r.Run(ctx)
	return nil
}
