package guard

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
)

// Lua is the rate limit and the replay guard as a Lua fragment, for
// scripts that do more in the same round trip once a request is admitted
// (the delivery queue appends the webhook after it). Every key it touches
// is under the webhook's hash tag, so it runs on a Redis Cluster.
//
// KEYS[1] the rate-limit counter; KEYS[2] the delivery's marker; KEYS[3]
// a marker recorded unchecked (the body's digest of a delivery with an id).
// ARGV[1] limit (0: none), ARGV[2] window ms, ARGV[3] replay window ms,
// ARGV[4] "1" to check and set KEYS[2], "0" when there is none; ARGV[5]
// "1" to set KEYS[3], "0" when there is none. (Unused keys are the rate
// counter's name, a placeholder on the same slot.)
// It returns {1, 0} for a duplicate and {2, ms} when limited for ms more,
// and falls through, the delivery marked, when the request is admitted. The
// marker is set (NX) before the limit is counted and removed again when the
// request is limited: one command for the common case.
//
// A duplicate is not counted against the limit, and a limited delivery is
// not marked as seen, so its retry after the window is still admitted.
const Lua = `
local replay = ARGV[4] == '1'
if replay and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return {1, 0}
end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  if n > limit then
    if replay then
      redis.call('DEL', KEYS[2])
    end
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
      ttl = tonumber(ARGV[2])
    end
    return {2, ttl}
  end
end
if ARGV[5] == '1' then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
end
`

var checkScript = redis.NewScript(Lua + "return {0, 0}\n")

// ScriptArgs returns Lua's KEYS and ARGV for delivery d of webhook id,
// each with room for the keys and arguments a script adds after them.
func (c Config) ScriptArgs(prefix, id string, d Delivery) ([]string, []any) {
	rate := RateKey(prefix, id)
	marker, check := c.marker(prefix, id, rate, d.Key())
	also, record := c.marker(prefix, id, rate, d.also())
	keys := append(make([]string, 0, 5), rate, marker, also)
	args := append(make([]any, 0, 14),
		max(c.Limit, 0),
		max(c.Window.Milliseconds(), 1),
		max(c.ReplayWindow.Milliseconds(), 1),
		check, record,
	)
	return keys, args
}

// marker returns the key recording replayKey and "1", or, when there is
// nothing to record, the placeholder (a key on the same slot) and "0".
func (c Config) marker(prefix, id, placeholder, replayKey string) (string, string) {
	if replayKey == "" || c.ReplayWindow <= 0 {
		return placeholder, "0"
	}
	return SeenKey(prefix, id, replayKey), "1"
}

// ParseDecision reads the {verdict, ms} reply of a script that ran Lua.
func ParseDecision(reply []any) (Decision, error) {
	if len(reply) != 2 {
		return Decision{}, fmt.Errorf("unexpected guard reply %v", reply)
	}
	v, ok1 := reply[0].(int64)
	ms, ok2 := reply[1].(int64)
	if !ok1 || !ok2 {
		return Decision{}, fmt.Errorf("unexpected guard reply %v", reply)
	}
	return Decision{Verdict: Verdict(v), RetryAfter: time.Duration(ms) * time.Millisecond}, nil
}

// Redis is a Guard whose state lives in Redis, shared by every instance.
type Redis struct {
	client   redis.UniversalClient
	requests redis.Scripter // batched with other requests' commands
	prefix   string
	cfg      Config
}

// NewRedis returns a guard keeping its state under prefix.
func NewRedis(client redis.UniversalClient, prefix string, cfg Config) *Redis {
	return &Redis{client: client, requests: redisconn.Batching(client), prefix: prefix, cfg: cfg}
}

// RateKey returns the key of webhook id's rate-limit counter.
func RateKey(prefix, id string) string { return redisstore.Key(prefix, id) + ":rl" }

// SeenKey returns the key marking delivery of webhook id as seen.
func SeenKey(prefix, id, replayKey string) string {
	return redisstore.Key(prefix, id) + ":seen:" + replayKey
}

// Check implements Guard with one EVALSHA.
func (g *Redis) Check(ctx context.Context, id string, d Delivery) (Decision, error) {
	if g.cfg.Off() {
		return Decision{Verdict: Admit}, nil
	}
	keys, args := g.cfg.ScriptArgs(g.prefix, id, d)
	reply, err := checkScript.Run(ctx, g.requests, keys, args...).Slice()
	if err == nil {
		var d Decision
		if d, err = ParseDecision(reply); err == nil {
			return d, nil
		}
	}
	return Decision{Verdict: Admit}, fmt.Errorf("guarding webhook %q: %w", id, err)
}

// Forget implements Guard.
func (g *Redis) Forget(ctx context.Context, id string, d Delivery) error {
	if g.cfg.ReplayWindow <= 0 {
		return nil
	}
	var keys []string
	for _, k := range []string{d.Key(), d.also()} {
		if k != "" {
			keys = append(keys, SeenKey(g.prefix, id, k))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := g.client.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("forgetting delivery of webhook %q: %w", id, err)
	}
	return nil
}
