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
const adoptBatch = 16

// dropEmptyLegacyScript deletes the earlier versions' stream KEYS[1] if it
// is empty (a retry waiting in their retry set keeps its entry there).
var dropEmptyLegacyScript = redis.NewScript(`
if redis.call('XLEN', KEYS[1]) == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// adopt moves up to adoptBatch of each kind of entry from the earlier
// versions' queue into this one.
func (w *Workers) adopt(ctx context.Context) {
	legacy, retry := w.q.cfg.Space.Deliveries(), w.q.cfg.Space.Retry()
	n, err := w.q.client.Exists(ctx, legacy, retry).Result()
	if err != nil || n == 0 {
		return
	}
	var msgs []redis.XMessage
	streams, err := w.q.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: keyspace.Group, Consumer: w.q.cfg.Consumer, Streams: []string{legacy, ">"}, Count: adoptBatch, Block: -1,
	}).Result()
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	if err == nil || errors.Is(err, redis.Nil) {
		claimed, _, _ := w.q.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: legacy, Group: keyspace.Group, Consumer: w.q.cfg.Consumer,
			MinIdle: w.q.lease(), Start: "0-0", Count: adoptBatch,
		}).Result()
		msgs = append(msgs, claimed...)
	}
	for _, m := range msgs {
		w.adoptOne(ctx, legacy, m, -1)
	}
	w.adoptDue(ctx, legacy, retry)
	if len(msgs) == 0 {
		// Only once the retry set is empty: its members name entries of the stream.
		if c, err := w.q.client.ZCard(ctx, retry).Result(); err == nil && c == 0 {
			_ = dropEmptyLegacyScript.Run(ctx, w.q.client, []string{legacy}).Err()
		}
	}
}

// adoptDue adopts the retries of the earlier versions' queue that are due.
func (w *Workers) adoptDue(ctx context.Context, legacy, retry string) {
	members, err := w.q.client.ZRangeByScore(ctx, retry, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(w.now().UnixMilli(), 10), Count: adoptBatch,
	}).Result()
	if err != nil {
		return
	}
	for _, member := range members {
		id, n, _ := strings.Cut(member, "|")
		attempts, err := strconv.Atoi(n)
		msgs, rerr := w.q.client.XRange(ctx, legacy, id, id).Result()
		if err != nil || rerr != nil {
			continue
		}
		if len(msgs) == 1 && !w.adoptOne(ctx, legacy, msgs[0], attempts) {
			continue
		}
		w.q.client.ZRem(ctx, retry, member)
	}
}

// adoptOne appends legacy entry m to the queue, with attempts made (-1:
// as the entry says), then removes it from the earlier versions' stream;
// it reports whether it did.
func (w *Workers) adoptOne(ctx context.Context, legacy string, m redis.XMessage, attempts int) bool {
	e, err := decodeEntry(m.ID, m.Values)
	switch {
	case err != nil:
		if !w.deadLetter(ctx, m.ID, m.Values, Entry{}, 0, dispatch.Result{Step: "decode", Reason: err.Error()}) {
			return false
		}
	case attempts >= 0:
		e.Attempts = attempts
		fallthrough
	default:
		if err := w.q.Enqueue(ctx, e); err != nil {
			w.logger.Warn("adopting an entry of the earlier queue; trying again later", zap.String("entry", m.ID), zap.Error(err))
			return false
		}
	}
	w.q.client.XAck(ctx, legacy, keyspace.Group, m.ID)
	w.q.client.XDel(ctx, legacy, m.ID)
	w.logger.Info("adopted an entry of the earlier queue", zap.String("entry", m.ID), zap.String("webhook_id", e.Job.WebhookID))
	return true
}
