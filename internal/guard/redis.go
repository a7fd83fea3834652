package guard

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
)

// checkScript is the rate limit and the replay guard in one round trip.
// Every key is under the webhook's hash tag, so it runs on a Redis Cluster.
//
// KEYS[1] the rate-limit counter; KEYS[2], if given, the delivery's marker.
// ARGV[1] limit (0: none), ARGV[2] window ms, ARGV[3] replay window ms.
// Returns {0, 0} admitted, {1, 0} duplicate, {2, ms} limited for ms more.
//
// A duplicate is not counted against the limit, and a limited delivery is
// not marked as seen, so its retry after the window is still admitted.
var checkScript = redis.NewScript(`
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0}
end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  if n > limit then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
      ttl = tonumber(ARGV[2])
    end
    return {2, ttl}
  end
end
if KEYS[2] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
end
return {0, 0}
`)

// Redis is a Guard whose state lives in Redis, shared by every instance.
type Redis struct {
	client redis.UniversalClient
	prefix string
	cfg    Config
	args   []any // the script's ARGV, the same for every call
}

// NewRedis returns a guard keeping its state under prefix.
func NewRedis(client redis.UniversalClient, prefix string, cfg Config) *Redis {
	return &Redis{client: client, prefix: prefix, cfg: cfg, args: []any{
		max(cfg.Limit, 0),
		max(cfg.Window.Milliseconds(), 1),
		max(cfg.ReplayWindow.Milliseconds(), 1),
	}}
}

// RateKey returns the key of webhook id's rate-limit counter.
func RateKey(prefix, id string) string { return redisstore.Key(prefix, id) + ":rl" }

// SeenKey returns the key marking delivery of webhook id as seen.
func SeenKey(prefix, id, delivery string) string {
	return redisstore.Key(prefix, id) + ":seen:" + delivery
}

// Check implements Guard with one EVALSHA.
func (g *Redis) Check(ctx context.Context, id, deliveryID string) (Decision, error) {
	if g.cfg.Off() {
		return Decision{Verdict: Admit}, nil
	}
	keys := []string{RateKey(g.prefix, id)}
	if deliveryID != "" && g.cfg.ReplayWindow > 0 {
		keys = append(keys, SeenKey(g.prefix, id, deliveryID))
	}
	res, err := checkScript.Run(ctx, g.client, keys, g.args...).Int64Slice()
	if err != nil {
		return Decision{Verdict: Admit}, fmt.Errorf("guarding webhook %q: %w", id, err)
	}
	if len(res) != 2 {
		return Decision{Verdict: Admit}, fmt.Errorf("guarding webhook %q: unexpected reply %v", id, res)
	}
	return Decision{Verdict: Verdict(res[0]), RetryAfter: time.Duration(res[1]) * time.Millisecond}, nil
}

// Forget implements Guard.
func (g *Redis) Forget(ctx context.Context, id, deliveryID string) error {
	if deliveryID == "" || g.cfg.ReplayWindow <= 0 {
		return nil
	}
	if err := g.client.Del(ctx, SeenKey(g.prefix, id, deliveryID)).Err(); err != nil {
		return fmt.Errorf("forgetting delivery of webhook %q: %w", id, err)
	}
	return nil
}
