package module

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. It parses the
// directive:
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
//		delivery_log off | <max_entries> <max_age> [<preview_bytes>]
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
func (wh *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, 0, "", nil, func(opt string) (err error) {
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
				n, err := strconv.Atoi(s)
				if err != nil || strconv.Itoa(n) != s {
					return notA("status: 200 or 400", s)
				}
				wh.FilteredStatus = n
				return validFilteredStatus(n)
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
			err = oneArg(d, func(s string) error { wh.Delivery = s; return validDelivery(s) })
		case "workers":
			err = oneArg(d, func(s string) error {
				if s == "off" {
					wh.NoWorkers = true
					return nil
				}
				return positiveIntInto(&wh.Workers)(s)
			})
		case "max_in_flight":
			err = oneArg(d, positiveIntInto(&wh.MaxInFlight))
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
		case "delivery_log":
			wh.DeliveryLog, err = parseDeliveryLog(d)
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
			return errUnknownOption
		}
		return err
	})
}

// parseUpstream parses the upstream block.
func parseUpstream(d *caddyfile.Dispenser) (*Upstream, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return nil, d.Errf("codemie_webhooks: upstream takes the CodeMie API's base URL")
	}
	up := &Upstream{URL: args[0]}
	err := eachOption(d, d.Nesting(), "upstream: ", []string{"header"}, func(opt string) (err error) {
		switch opt {
		case "bearer_token":
			err = oneArg(d, func(s string) error { up.BearerToken = s; return nil })
		case "timeout":
			err = oneArg(d, durationInto(&up.Timeout))
		case "forward":
			err = noArgs(d, func() { up.Forward = true })
		case "act_as":
			err = oneArg(d, func(s string) error {
				if s == "" {
					return notA("known identity: owner or service_account", s)
				}
				up.ActAs = s
				return nil
			})
		case "oauth2":
			up.OAuth2 = &OAuth2{}
			err = up.OAuth2.parse(d, "upstream: ")
		case "header":
			a := d.RemainingArgs()
			if len(a) != 2 {
				return d.Errf("codemie_webhooks: upstream: header takes <name> <value>")
			}
			if up.Headers == nil {
				up.Headers = map[string]string{}
			}
			if _, dup := up.Headers[a[0]]; dup {
				return d.Errf("codemie_webhooks: upstream: header %s given more than once", a[0])
			}
			up.Headers[a[0]] = a[1]
		default:
			return errUnknownOption
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := up.validate(); err != nil {
		return nil, d.Errf("codemie_webhooks: upstream: %v", err)
	}
	return up, nil
}

// parseRedis parses the redis block; addresses may also follow the word.
func parseRedis(d *caddyfile.Dispenser) (*RedisConfig, error) {
	rc := &RedisConfig{}
	rc.Addrs = d.RemainingArgs()
	err := eachOption(d, d.Nesting(), "redis: ", nil, func(opt string) (err error) {
		switch opt {
		case "addrs":
			if len(rc.Addrs) > 0 {
				return d.Errf("codemie_webhooks: redis: addresses given both after redis and in addrs")
			}
			if rc.Addrs = d.RemainingArgs(); len(rc.Addrs) == 0 {
				return d.ArgErr()
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
			return errUnknownOption
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// parseRateLimit parses "rate_limit <requests> <window>" or "rate_limit off".
func parseRateLimit(d *caddyfile.Dispenser) (*RateLimit, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &RateLimit{}, nil
	case len(args) != 2:
		return nil, d.Errf("codemie_webhooks: rate_limit takes <requests> <window>, or off")
	}
	rl := &RateLimit{}
	if err := positiveIntInto(&rl.Requests)(args[0]); err != nil {
		return nil, d.Errf("codemie_webhooks: rate_limit: %v", err)
	}
	if err := durationInto(&rl.Window)(args[1]); err != nil {
		return nil, d.Errf("codemie_webhooks: rate_limit: %v", err)
	}
	return rl, nil
}

// parseRetry parses "retry <attempts> <first> <max>".
func parseRetry(d *caddyfile.Dispenser) (*Retry, error) {
	rt := &Retry{}
	err := fixedArgs(d, "", "<attempts> <first> <max>", positiveIntInto(&rt.Attempts), durationInto(&rt.First), durationInto(&rt.Max))
	if err != nil {
		return nil, err
	}
	if err := rt.validate(); err != nil {
		return nil, d.Errf("codemie_webhooks: retry: %v", err)
	}
	return rt, nil
}

// parseDeadLetters parses "dead_letters <max_entries> <max_age> <max_bytes>".
func parseDeadLetters(d *caddyfile.Dispenser) (*DeadLetters, error) {
	dl := &DeadLetters{}
	var entries int
	err := fixedArgs(d, "", "<max_entries> <max_age> <max_bytes>", positiveIntInto(&entries), durationInto(&dl.MaxAge), sizeInto(&dl.MaxBytes))
	dl.MaxEntries = int64(entries)
	return dl, err
}

func parseDeliveryLog(d *caddyfile.Dispenser) (*DeliveryLog, error) {
	l := &DeliveryLog{}
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		l.Off = true
		return l, nil
	}
	if len(args) != 2 && len(args) != 3 {
		return nil, d.Errf("codemie_webhooks: delivery_log takes off, or <max_entries> <max_age> [<preview_bytes>]")
	}
	var entries int
	sets := []func(string) error{positiveIntInto(&entries), durationInto(&l.MaxAge), positiveIntInto(&l.PreviewBytes)}
	for i, arg := range args {
		if err := sets[i](arg); err != nil {
			return nil, d.Errf("codemie_webhooks: delivery_log: %v", err)
		}
	}
	l.MaxEntries = int64(entries)
	return l, nil
}

// fixedArgs reads the option's arguments, exactly one for each of sets,
// and hands each to its set; usage names them, where the block.
func fixedArgs(d *caddyfile.Dispenser, where, usage string, sets ...func(string) error) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) != len(sets) {
		return d.Errf("codemie_webhooks: %s%s takes %s", where, opt, usage)
	}
	for i, set := range sets {
		if err := set(args[i]); err != nil {
			return d.Errf("codemie_webhooks: %s%s: %v", where, opt, err)
		}
	}
	return nil
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

// into returns a setter of dst from a value that parse reads; a value it
// cannot read is not a what.
func into[T any](dst *T, what string, parse func(string) (T, bool)) func(string) error {
	return func(s string) error {
		v, ok := parse(s)
		if !ok {
			return notA(what, s)
		}
		*dst = v
		return nil
	}
}

// durationInto reads a positive duration such as 30s into dst.
func durationInto(dst *caddy.Duration) func(string) error {
	return into(dst, "positive duration such as 30s", func(s string) (caddy.Duration, bool) {
		v, err := caddy.ParseDuration(s)
		return caddy.Duration(v), err == nil && v > 0
	})
}

// positiveIntInto reads a positive whole number, up to maxCount, into dst.
func positiveIntInto(dst *int) func(string) error {
	return into(dst, fmt.Sprintf("positive whole number up to %d", maxCount), func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && n > 0 && n <= maxCount
	})
}

// sizeInto reads a size such as 25MiB, up to 1 TiB, into dst.
func sizeInto(dst *int64) func(string) error {
	return into(dst, "size such as 25MB", func(s string) (int64, bool) {
		n, err := humanize.ParseBytes(s)
		return int64(n), err == nil && n > 0 && n <= 1<<40
	})
}

// parseSync parses sync_from_codemie [<interval>] { url, bearer_token | oauth2 }.
func parseSync(d *caddyfile.Dispenser) (*SyncFromCodeMie, error) {
	s := &SyncFromCodeMie{}
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
	err := eachOption(d, d.Nesting(), "sync_from_codemie: ", nil, func(opt string) (err error) {
		switch opt {
		case "url":
			err = oneArg(d, func(v string) error { s.URL = v; return nil })
		case "bearer_token":
			err = oneArg(d, func(v string) error { s.BearerToken = v; return nil })
		case "oauth2":
			s.OAuth2 = &OAuth2{}
			err = s.OAuth2.parse(d, "sync_from_codemie: ")
		default:
			return errUnknownOption
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, d.Errf("codemie_webhooks: sync_from_codemie: %v", err)
	}
	return s, nil
}

// parse reads "oauth2 <token_url> <client_id> <client_secret>".
func (o *OAuth2) parse(d *caddyfile.Dispenser, where string) error {
	set := func(dst *string) func(string) error { return func(v string) error { *dst = v; return nil } }
	return fixedArgs(d, where, "<token_url> <client_id> <client_secret>", set(&o.TokenURL), set(&o.ClientID), set(&o.ClientSecret))
}

// errUnknownOption is what an option's parser returns for an option it
// does not know.
var errUnknownOption = errors.New("unknown option")

// eachOption runs parse for each option of the block at nesting, where
// names the block in errors ("" for the directive's own). An option may
// appear once, but those named repeatable; an option parse does not know
// is an error.
func eachOption(d *caddyfile.Dispenser, nesting int, where string, repeatable []string, parse func(opt string) error) error {
	seen := map[string]bool{}
	for d.NextBlock(nesting) {
		opt := d.Val()
		if seen[opt] && !slices.Contains(repeatable, opt) {
			return d.Errf("codemie_webhooks: %s%s given more than once", where, opt)
		}
		seen[opt] = true
		if err := parse(opt); errors.Is(err, errUnknownOption) {
			return d.Errf("codemie_webhooks: %sunknown option %q", where, opt)
		} else if err != nil {
			return err
		}
	}
	return nil
}
