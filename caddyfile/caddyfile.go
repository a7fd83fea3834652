// Package caddyfile registers the codemie_webhooks Caddyfile directive and
// parses it into a module.Handler.
package caddyfile

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/codemie-edge/caddy-webhooks/module"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("codemie_webhooks", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("codemie_webhooks", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var wh module.Handler
	err := unmarshal(h.Dispenser, &wh)
	return &wh, err
}

// unmarshal parses the directive:
//
//	codemie_webhooks {
//		redis [<addrs...>] {
//			addrs <host:port...>
//			cluster
//			master_name <name>
//			username <username>
//			password <password>
//			db <n>
//			tls
//			key_prefix <prefix>
//		}
//		integrations_file <path>
//		cache_ttl <duration>
//		negative_ttl <duration>
//		stale_ttl <duration>
//		cache_size <n>
//		max_body <size>
//		max_bodies_in_flight <size>
//		body_timeout <duration>
//		filtered_status 200|400
//		require_auth
//		rate_limit <requests> <window> | off
//		replay_window <duration> | off
//		upstream <base-url> {
//			bearer_token <token>
//			oauth2 <token_url> <client_id> <client_secret>
//			act_as owner|service_account
//			forward
//			timeout <duration>
//			header <name> <value>
//		}
//		delivery async|sync
//		workers <n> | off
//		retry <attempts> <first> <max>
//		claim_after <duration>
//		max_queue <n>
//		max_age <duration>
//		dead_letters <max_entries> <max_age> <max_bytes>
//		secrets_key <base64 key> [<previous base64 key>]
//		sync_from_codemie [<interval>] {
//			url <CodeMie API base URL>
//			bearer_token <token>
//			oauth2 <token_url> <client_id> <client_secret>
//		}
//	}
//
// Every option may appear once. Values that hold an address or a secret may
// be placeholders such as {env.REDIS_PASSWORD}, expanded when the
// configuration loads.
func unmarshal(d *caddyfile.Dispenser, wh *module.Handler) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("codemie_webhooks: %s given more than once", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "redis":
			wh.Redis, err = parseRedis(d)
		case "integrations_file":
			err = oneArg(d, func(s string) error { wh.IntegrationsFile = s; return nil })
		case "cache_ttl":
			err = oneArg(d, durationInto(&wh.CacheTTL))
		case "negative_ttl":
			err = oneArg(d, durationInto(&wh.NegativeTTL))
		case "stale_ttl":
			err = oneArg(d, durationInto(&wh.StaleTTL))
		case "cache_size":
			err = oneArg(d, positiveIntInto(&wh.CacheSize))
		case "max_body":
			err = oneArg(d, sizeInto(&wh.MaxBody))
		case "max_bodies_in_flight":
			err = oneArg(d, sizeInto(&wh.MaxBodiesInFlight))
		case "body_timeout":
			err = oneArg(d, durationInto(&wh.BodyTimeout))
		case "filtered_status":
			err = oneArg(d, func(s string) error {
				if s != "200" && s != "400" {
					return notA("status: 200 or 400", s)
				}
				wh.FilteredStatus, _ = strconv.Atoi(s)
				return nil
			})
		case "require_auth":
			err = noArgs(d, func() { wh.RequireAuth = true })
		case "rate_limit":
			wh.RateLimit, err = parseRateLimit(d)
		case "replay_window":
			err = oneArg(d, func(s string) error {
				var w caddy.Duration
				if s != "off" {
					if err := durationInto(&w)(s); err != nil {
						return err
					}
				}
				wh.ReplayWindow = &w
				return nil
			})
		case "upstream":
			wh.Upstream, err = parseUpstream(d)
		case "delivery":
			err = oneArg(d, func(s string) error {
				if s != module.DeliverySync && s != module.DeliveryAsync {
					return notA("delivery mode: async or sync", s)
				}
				wh.Delivery = s
				return nil
			})
		case "workers":
			err = oneArg(d, func(s string) error {
				if s == "off" {
					wh.NoWorkers = true
					return nil
				}
				return positiveIntInto(&wh.Workers)(s)
			})
		case "retry":
			wh.Retry, err = parseRetry(d)
		case "claim_after":
			err = oneArg(d, durationInto(&wh.ClaimAfter))
		case "max_queue":
			err = oneArg(d, func(s string) error {
				var n int
				if err := positiveIntInto(&n)(s); err != nil {
					return err
				}
				wh.MaxQueue = int64(n)
				return nil
			})
		case "max_age":
			err = oneArg(d, durationInto(&wh.MaxAge))
		case "dead_letters":
			wh.DeadLetters, err = parseDeadLetters(d)
		case "sync_from_codemie":
			wh.SyncFromCodeMie, err = parseSync(d)
		case "secrets_key":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("codemie_webhooks: secrets_key takes <key> and optionally the previous <key>")
			}
			wh.SecretsKey = args[0]
			if len(args) == 2 {
				wh.SecretsKeyPrevious = args[1]
			}
		default:
			return d.Errf("codemie_webhooks: unknown option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseUpstream parses the upstream block.
func parseUpstream(d *caddyfile.Dispenser) (*module.Upstream, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return nil, d.Errf("codemie_webhooks: upstream takes the CodeMie API's base URL")
	}
	up := &module.Upstream{URL: args[0]}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "header" {
			return nil, d.Errf("codemie_webhooks: upstream: %s given more than once", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "bearer_token":
			err = oneArg(d, func(s string) error { up.BearerToken = s; return nil })
		case "timeout":
			err = oneArg(d, durationInto(&up.Timeout))
		case "forward":
			err = noArgs(d, func() { up.Forward = true })
		case "act_as":
			err = oneArg(d, func(s string) error {
				if s != module.ActAsOwner && s != module.ActAsServiceAccount {
					return fmt.Errorf("%q: must be owner or service_account", s)
				}
				up.ActAs = s
				return nil
			})
		case "oauth2":
			a := d.RemainingArgs()
			if len(a) != 3 {
				return nil, d.Errf("codemie_webhooks: upstream: oauth2 takes <token_url> <client_id> <client_secret>")
			}
			up.OAuth2 = &module.OAuth2{TokenURL: a[0], ClientID: a[1], ClientSecret: a[2]}
		case "header":
			a := d.RemainingArgs()
			if len(a) != 2 {
				return nil, d.Errf("codemie_webhooks: upstream: header takes <name> <value>")
			}
			if up.Headers == nil {
				up.Headers = map[string]string{}
			}
			if _, dup := up.Headers[a[0]]; dup {
				return nil, d.Errf("codemie_webhooks: upstream: header %s given more than once", a[0])
			}
			up.Headers[a[0]] = a[1]
		default:
			return nil, d.Errf("codemie_webhooks: upstream: unknown option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if up.BearerToken != "" && up.OAuth2 != nil {
		return nil, d.Errf("codemie_webhooks: upstream: bearer_token and oauth2 are exclusive")
	}
	if up.ActAs == module.ActAsOwner && up.OAuth2 == nil {
		return nil, d.Errf("codemie_webhooks: upstream: act_as owner exchanges the oauth2 client's tokens: configure oauth2")
	}
	return up, nil
}

// parseRedis parses the redis block; addresses may also follow the word.
func parseRedis(d *caddyfile.Dispenser) (*module.RedisConfig, error) {
	rc := &module.RedisConfig{}
	rc.Addrs = d.RemainingArgs()
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("codemie_webhooks: redis: %s given more than once", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "addrs":
			if len(rc.Addrs) > 0 {
				return nil, d.Errf("codemie_webhooks: redis: addresses given both after redis and in addrs")
			}
			if rc.Addrs = d.RemainingArgs(); len(rc.Addrs) == 0 {
				return nil, d.ArgErr()
			}
		case "cluster":
			err = noArgs(d, func() { rc.Cluster = true })
		case "tls":
			err = noArgs(d, func() { rc.TLS = true })
		case "master_name":
			err = oneArg(d, func(s string) error { rc.MasterName = s; return nil })
		case "username":
			err = oneArg(d, func(s string) error { rc.Username = s; return nil })
		case "password":
			err = oneArg(d, func(s string) error { rc.Password = s; return nil })
		case "key_prefix":
			err = oneArg(d, func(s string) error { rc.KeyPrefix = s; return nil })
		case "db":
			err = oneArg(d, func(s string) error {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					return notA("database number", s)
				}
				rc.DB = n
				return nil
			})
		default:
			return nil, d.Errf("codemie_webhooks: redis: unknown option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return rc, nil
}

// parseRateLimit parses "rate_limit <requests> <window>" or "rate_limit off".
func parseRateLimit(d *caddyfile.Dispenser) (*module.RateLimit, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &module.RateLimit{}, nil
	case len(args) != 2:
		return nil, d.Errf("codemie_webhooks: rate_limit takes <requests> <window>, or off")
	}
	rl := &module.RateLimit{}
	if err := positiveIntInto(&rl.Requests)(args[0]); err != nil {
		return nil, d.Errf("codemie_webhooks: rate_limit: %v", err)
	}
	if err := durationInto(&rl.Window)(args[1]); err != nil {
		return nil, d.Errf("codemie_webhooks: rate_limit: %v", err)
	}
	return rl, nil
}

// parseRetry parses "retry <attempts> <first> <max>".
func parseRetry(d *caddyfile.Dispenser) (*module.Retry, error) {
	args := d.RemainingArgs()
	if len(args) != 3 {
		return nil, d.Errf("codemie_webhooks: retry takes <attempts> <first> <max>")
	}
	rt := &module.Retry{}
	for _, set := range []struct {
		f   func(string) error
		arg string
	}{{positiveIntInto(&rt.Attempts), args[0]}, {durationInto(&rt.First), args[1]}, {durationInto(&rt.Max), args[2]}} {
		if err := set.f(set.arg); err != nil {
			return nil, d.Errf("codemie_webhooks: retry: %v", err)
		}
	}
	if rt.Max < rt.First {
		return nil, d.Errf("codemie_webhooks: retry: max %s is less than first %s", args[2], args[1])
	}
	return rt, nil
}

// parseDeadLetters parses "dead_letters <max_entries> <max_age> <max_bytes>".
func parseDeadLetters(d *caddyfile.Dispenser) (*module.DeadLetters, error) {
	args := d.RemainingArgs()
	if len(args) != 3 {
		return nil, d.Errf("codemie_webhooks: dead_letters takes <max_entries> <max_age> <max_bytes>")
	}
	dl := &module.DeadLetters{}
	var entries int
	for _, set := range []struct {
		f   func(string) error
		arg string
	}{{positiveIntInto(&entries), args[0]}, {durationInto(&dl.MaxAge), args[1]}, {sizeInto(&dl.MaxBytes), args[2]}} {
		if err := set.f(set.arg); err != nil {
			return nil, d.Errf("codemie_webhooks: dead_letters: %v", err)
		}
	}
	dl.MaxEntries = int64(entries)
	return dl, nil
}

// oneArg reads exactly one argument on the option's line and hands it to set.
func oneArg(d *caddyfile.Dispenser, set func(string) error) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("codemie_webhooks: %s takes exactly one argument, got %d", opt, len(args))
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("codemie_webhooks: %s takes no block", opt)
	}
	if err := set(args[0]); err != nil {
		return d.Errf("codemie_webhooks: %s: %v", opt, err)
	}
	return nil
}

// notA says that a value is not what an option takes. Values are quoted:
// the only options that take secrets take any string.
func notA(what, value string) error {
	return fmt.Errorf("%q is not a %s", value, what)
}

// noArgs checks that a flag option stands alone on its line.
func noArgs(d *caddyfile.Dispenser, set func()) error {
	if opt := d.Val(); d.NextArg() {
		return d.Errf("codemie_webhooks: %s takes no arguments", opt)
	}
	set()
	return nil
}

func durationInto(dst *caddy.Duration) func(string) error {
	return func(s string) error {
		v, err := caddy.ParseDuration(s)
		if err != nil || v <= 0 {
			return notA("positive duration such as 30s", s)
		}
		*dst = caddy.Duration(v)
		return nil
	}
}

func positiveIntInto(dst *int) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return notA("positive whole number", s)
		}
		*dst = n
		return nil
	}
}

// sizeInto parses a size such as 25MiB into dst.
func sizeInto(dst *int64) func(string) error {
	return func(s string) error {
		n, err := humanize.ParseBytes(s)
		if err != nil || n == 0 || n > 1<<40 {
			return notA("size such as 25MB", s)
		}
		*dst = int64(n)
		return nil
	}
}

// parseSync parses sync_from_codemie [<interval>] { url, bearer_token | oauth2 }.
func parseSync(d *caddyfile.Dispenser) (*module.SyncFromCodeMie, error) {
	s := &module.SyncFromCodeMie{}
	args := d.RemainingArgs()
	switch len(args) {
	case 0:
	case 1:
		if err := durationInto(&s.Interval)(args[0]); err != nil {
			return nil, d.Errf("codemie_webhooks: sync_from_codemie: %v", err)
		}
	default:
		return nil, d.Errf("codemie_webhooks: sync_from_codemie takes at most an <interval>")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("codemie_webhooks: sync_from_codemie: %s given more than once", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "url":
			err = oneArg(d, func(v string) error { s.URL = v; return nil })
		case "bearer_token":
			err = oneArg(d, func(v string) error { s.BearerToken = v; return nil })
		case "oauth2":
			a := d.RemainingArgs()
			if len(a) != 3 {
				return nil, d.Errf("codemie_webhooks: sync_from_codemie: oauth2 takes <token_url> <client_id> <client_secret>")
			}
			s.OAuth2 = &module.OAuth2{TokenURL: a[0], ClientID: a[1], ClientSecret: a[2]}
		default:
			return nil, d.Errf("codemie_webhooks: sync_from_codemie: unknown option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if (s.BearerToken == "") == (s.OAuth2 == nil) {
		return nil, d.Errf("codemie_webhooks: sync_from_codemie: configure one of bearer_token and oauth2")
	}
	return s, nil
}
