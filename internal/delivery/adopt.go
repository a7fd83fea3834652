package delivery

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

// The queue of earlier versions was one stream, Deliveries, read by the
// consumer group keyspace.Group, with a retry set, Retry. While an instance
// of such a version runs during a rolling upgrade, it keeps using them; an
// instance of this version adopts what they hold that no consumer is
// dispatching: entries nobody has read, entries whose consumer has been
// silent for ClaimAfter, and retries that are due. Each is appended to the
// queue, attempts and all, before it leaves the old one, so a crash can
// only adopt it twice. Once both are empty, they are deleted.

// adoptBatch is how many entries of each kind one adoption round moves.
const adoptBatch = 64

// dropEmptyLegacyScript deletes the earlier versions' stream KEYS[1] if it
// is empty (a retry waiting in their retry set keeps its entry there) and
// no consumer of group ARGV[1] but ARGV[3] (this instance's) has shown
// life for ARGV[2] ms: an instance of an earlier version reads every
// 500 ms, and deleting the stream under it would only make it create the
// stream again.
var dropEmptyLegacyScript = redis.NewScript(`
if redis.call('XLEN', KEYS[1]) ~= 0 then
  return 0
end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if ok then
  for _, c in ipairs(consumers) do
    local f = {}
    for i = 1, #c, 2 do
      f[c[i]] = c[i + 1]
    end
    if f['name'] ~= ARGV[3] and f['idle'] < tonumber(ARGV[2]) then
      return 0
    end
  end
end
return redis.call('DEL', KEYS[1])
`)

// claimLegacyDueScript takes up to ARGV[3] members of the earlier
// versions' retry set KEYS[1] due at ARGV[1] (ms) and pushes each ARGV[2]
// ms into the future, as their own mover does, so that an instance of
// either version moves each once.
var claimLegacyDueScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), m)
end
return due
`)

// adopt moves what the earlier versions' queue holds into this one, a
// batch of each kind at a time, until a round finds less than a batch.
func (w *Workers) adopt(ctx context.Context) {
	legacy, retry := w.q.cfg.Space.Deliveries(), w.q.cfg.Space.Retry()
	for ctx.Err() == nil {
		n, err := w.q.client.Exists(ctx, legacy, retry).Result()
		if err != nil || n == 0 {
			return
		}
		msgs := w.legacyEntries(ctx, legacy)
		for _, m := range msgs {
			w.adoptOne(ctx, legacy, m, -1)
		}
		due := w.adoptDue(ctx, legacy, retry)
		if len(msgs) == 0 && due == 0 {
			if c, err := w.q.client.ZCard(ctx, retry).Result(); err == nil && c == 0 {
				_ = dropEmptyLegacyScript.Run(ctx, w.q.client, []string{legacy}, keyspace.Group, 2*w.q.lease().Milliseconds(), w.q.cfg.Consumer).Err()
			}
		}
		if len(msgs) < adoptBatch && due < adoptBatch {
			return
		}
	}
}

// legacyEntries reads a batch of the earlier versions' entries that no
// consumer is dispatching: unread ones, and those of consumers silent for
// a lease. A stream recreated without its group (by an earlier version's
// enqueue after it was deleted) gets the group back, from its start.
func (w *Workers) legacyEntries(ctx context.Context, legacy string) []redis.XMessage {
	read := func() ([]redis.XStream, error) {
		return w.q.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: keyspace.Group, Consumer: w.q.cfg.Consumer, Streams: []string{legacy, ">"}, Count: adoptBatch, Block: -1,
		}).Result()
	}
	streams, err := read()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		if err := w.q.client.XGroupCreate(ctx, legacy, keyspace.Group, "0").Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return nil
		}
		streams, err = read()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil
	}
	var msgs []redis.XMessage
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	claimed, _, _ := w.q.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: legacy, Group: keyspace.Group, Consumer: w.q.cfg.Consumer,
		MinIdle: w.q.lease(), Start: "0-0", Count: adoptBatch,
	}).Result()
	return append(msgs, claimed...)
}

// adoptDue adopts the retries of the earlier versions' queue that are due,
// and returns how many it claimed.
func (w *Workers) adoptDue(ctx context.Context, legacy, retry string) int {
	members, err := claimLegacyDueScript.Run(ctx, w.q.client, []string{retry},
		w.now().UnixMilli(), w.q.lease().Milliseconds(), adoptBatch).StringSlice()
	if err != nil {
		return 0
	}
	for _, member := range members {
		id, n, _ := strings.Cut(member, "|")
		attempts, err := strconv.Atoi(n)
		msgs, rerr := w.q.client.XRange(ctx, legacy, id, id).Result()
		if err != nil || rerr != nil {
			continue // its claim ends, and it is tried again
		}
		if len(msgs) == 1 && !w.adoptOne(ctx, legacy, msgs[0], attempts) {
			continue
		}
		w.q.client.ZRem(context.WithoutCancel(ctx), retry, member)
	}
	return len(members)
}

// adoptOne appends legacy entry m to the queue, with attempts made (-1:
// as the entry says), or to the dead stream if it cannot be read, then
// removes it from the earlier versions' stream; it reports whether it did.
func (w *Workers) adoptOne(ctx context.Context, legacy string, m redis.XMessage, attempts int) bool {
	ctx = context.WithoutCancel(ctx) // once appended, it must leave the old stream
	e, err := readEntry(m.ID, m.Values)
	switch {
	case err != nil:
		if !w.deadLetter(ctx, m.ID, m.Values, Entry{}, 0, dispatch.Result{Step: "decode", Reason: err.Error()}) {
			return false
		}
	case attempts >= 0:
		e.Attempts = attempts
		fallthrough
	default:
		if err := w.q.Enqueue(ctx, redisconn.Bound{}, e); err != nil {
			w.logger.Warn("adopting an entry of the earlier queue; trying again later", zap.String("entry", m.ID), zap.Error(err))
			return false
		}
	}
	w.q.client.XAck(ctx, legacy, keyspace.Group, m.ID)
	w.q.client.XDel(ctx, legacy, m.ID)
	w.logger.Info("adopted an entry of the earlier queue", zap.String("entry", m.ID), zap.String("webhook_id", e.Job.WebhookID))
	return true
}
