package delivery

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
)

// Events are told what happened to entries, for metrics.
type Events struct {
	// Delivered: an entry was dispatched, age after it was received.
	Delivered func(age time.Duration)
	// Retried: an attempt failed and another was scheduled.
	Retried func()
	// Dead: an entry was moved to the dead stream.
	Dead func()
	// DeadDropped: n of the oldest dead letters were dropped to keep the
	// dead stream within its limits.
	DeadDropped func(n int)
}

// DispatchFunc makes one attempt at delivering a job.
type DispatchFunc func(ctx context.Context, job dispatch.Job) dispatch.Result

// readBlock is how long one read waits for new entries; it bounds how long
// stopping takes.
const readBlock = 500 * time.Millisecond

// Workers dispatch the queue's entries until stopped.
type Workers struct {
	q        *Queue
	dispatch DispatchFunc
	events   Events
	logger   *zap.Logger
	now      func() time.Time

	stopOnce     sync.Once
	stop         context.CancelFunc // stops reading, reclaiming and retrying
	loops        sync.WaitGroup
	abort        context.CancelFunc // cancels dispatches still running after the drain
	dispatchCtx  context.Context
	inflight     sync.WaitGroup
	slots        chan struct{}
	heartbeatEnd chan struct{}

	mu   sync.Mutex
	held map[string]struct{} // entries this instance is dispatching
}

// Start starts q's workers: readers of new entries, a reclaimer of entries
// whose consumer went silent, a mover of entries due for retry, a remover
// of consumers long gone, and a heartbeat that keeps this instance's
// entries from being reclaimed.
func (q *Queue) Start(dispatchFn DispatchFunc, events Events, logger *zap.Logger) *Workers {
	ctx, stop := context.WithCancel(context.Background())
	dctx, abort := context.WithCancel(context.Background())
	w := &Workers{
		q: q, dispatch: dispatchFn, events: events, logger: logger, now: time.Now,
		stop: stop, abort: abort, dispatchCtx: dctx,
		slots:        make(chan struct{}, max(q.cfg.Workers, 1)),
		heartbeatEnd: make(chan struct{}),
		held:         map[string]struct{}{},
	}
	w.loops.Add(4)
	go w.readLoop(ctx)
	go w.every(ctx, max(q.cfg.ClaimAfter/2, 10*time.Millisecond), w.reclaim)
	go w.every(ctx, min(max(q.cfg.FirstBackoff/4, 10*time.Millisecond), 250*time.Millisecond), w.moveDue)
	go w.every(ctx, max(w.forgetAfter()/4, 10*time.Millisecond), w.forgetConsumers)
	go w.heartbeat(max(q.cfg.ClaimAfter/3, 5*time.Millisecond))
	return w
}

// Stop stops taking entries and waits up to drain for the dispatches in
// flight to finish. Those still running then are cancelled and left
// pending, for a consumer to reclaim after ClaimAfter: nothing is lost, and
// nothing finished is dispatched twice.
func (w *Workers) Stop(drain time.Duration) {
	w.stopOnce.Do(func() { w.drain(drain) })
}

func (w *Workers) drain(drain time.Duration) {
	w.stop()
	w.loops.Wait()
	done := make(chan struct{})
	go func() { w.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		w.logger.Warn("deliveries still in flight after the drain; handing them back", zap.Duration("drain", drain))
		w.abort()
		<-done
	}
	w.abort()
	close(w.heartbeatEnd)
}

// every runs fn at each interval until ctx is done.
func (w *Workers) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	defer w.loops.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// readLoop reads new entries as dispatch slots free up.
func (w *Workers) readLoop(ctx context.Context) {
	defer w.loops.Done()
	backoff := 50 * time.Millisecond
	groupReady := false
	for ctx.Err() == nil {
		if !groupReady {
			if err := w.q.ensureGroup(ctx); err != nil {
				w.pause(ctx, &backoff, "creating the consumer group", err)
				continue
			}
			groupReady = true
		}
		n := w.acquire(ctx)
		if n == 0 {
			return
		}
		streams, err := w.q.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: keyspace.Group, Consumer: w.q.cfg.Consumer, Streams: []string{w.q.stream, ">"},
			Count: int64(n), Block: readBlock,
		}).Result()
		got := 0
		if err == nil {
			for _, s := range streams {
				for _, m := range s.Messages {
					w.start(m)
					got++
				}
			}
		}
		w.release(n - got)
		switch {
		case err == nil || errors.Is(err, redis.Nil) || ctx.Err() != nil:
			backoff = 50 * time.Millisecond
		case redis.HasErrorPrefix(err, "NOGROUP"):
			groupReady = false
		default:
			w.pause(ctx, &backoff, "reading deliveries", err)
		}
	}
}

// pause logs a Redis error and waits, doubling the wait up to 5s.
func (w *Workers) pause(ctx context.Context, backoff *time.Duration, doing string, err error) {
	w.logger.Warn("delivery queue unavailable; retrying", zap.String("while", doing), zap.Error(err), zap.Duration("retry_in", *backoff))
	select {
	case <-ctx.Done():
	case <-time.After(*backoff):
	}
	*backoff = min(2**backoff, 5*time.Second)
}

// acquire takes one dispatch slot (waiting for it) and as many more as are
// free, up to 16, and returns how many it took; 0 when ctx is done.
func (w *Workers) acquire(ctx context.Context) int {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < 16 {
		select {
		case w.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (w *Workers) release(n int) {
	for range n {
		<-w.slots
	}
}

// start dispatches m in a slot already taken.
func (w *Workers) start(m redis.XMessage) {
	w.mu.Lock()
	w.held[m.ID] = struct{}{}
	w.mu.Unlock()
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Done()
		defer w.release(1)
		w.process(m)
		w.mu.Lock()
		delete(w.held, m.ID)
		w.mu.Unlock()
	}()
}

// process makes one attempt at m and records the outcome.
func (w *Workers) process(m redis.XMessage) {
	// Finishing an entry must not be cut short by a stop.
	ctx := context.WithoutCancel(w.dispatchCtx)
	e, err := decodeEntry(m.ID, m.Values)
	if err != nil {
		w.bury(ctx, m.ID, m.Values, Entry{}, 0, dispatch.Result{Step: "decode", Reason: err.Error()})
		return
	}
	attempt := e.Attempts + 1
	if age := w.now().Sub(e.ReceivedAt); w.q.cfg.MaxAge > 0 && age > w.q.cfg.MaxAge {
		w.bury(ctx, m.ID, m.Values, e, e.Attempts, dispatch.Result{Step: "queue", Reason: "expired after " + age.Round(time.Second).String()})
		return
	}
	res := w.dispatch(w.dispatchCtx, e.Job)
	if w.dispatchCtx.Err() != nil && res.Class != dispatch.Success {
		return // cancelled by Stop: left pending, to be reclaimed
	}
	switch {
	case res.Class == dispatch.Success:
		w.finish(ctx, m.ID)
		if w.events.Delivered != nil {
			w.events.Delivered(w.now().Sub(e.ReceivedAt))
		}
	case res.Class == dispatch.Retryable && attempt < w.q.cfg.Attempts:
		w.retryLater(ctx, m.ID, e, attempt, res)
	default:
		w.bury(ctx, m.ID, m.Values, e, attempt, res)
	}
}

// finishScript acknowledges an entry and deletes it, atomically.
// KEYS[1] the stream; ARGV[1] the group; ARGV[2] the entry id.
var finishScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
`)

// finish removes a delivered entry. Concurrent dispatches' finishes share
// round trips, as requests' scripts do.
func (w *Workers) finish(ctx context.Context, id string) {
	if err := finishScript.Run(ctx, w.q.requests, []string{w.q.stream}, keyspace.Group, id).Err(); err != nil {
		w.logger.Error("finishing a delivered entry; it will be reclaimed and dispatched again",
			zap.String("entry", id), zap.Error(err))
	}
}

// retryLater schedules the entry's next attempt, then acknowledges it; it
// stays in the stream until the attempt is due.
func (w *Workers) retryLater(ctx context.Context, id string, e Entry, attempt int, res dispatch.Result) {
	wait := w.backoff(attempt, res.RetryAfter)
	due := w.now().Add(wait).UnixMilli()
	if err := w.q.client.ZAdd(ctx, w.q.retry, redis.Z{Score: float64(due), Member: id + "|" + strconv.Itoa(attempt)}).Err(); err != nil {
		w.logger.Error("scheduling a retry; the entry will be reclaimed instead", zap.String("entry", id), zap.Error(err))
		return
	}
	if err := w.q.client.XAck(ctx, w.q.stream, keyspace.Group, id).Err(); err != nil {
		w.logger.Warn("acknowledging an entry scheduled for retry", zap.String("entry", id), zap.Error(err))
	}
	if w.events.Retried != nil {
		w.events.Retried()
	}
	w.logger.Warn("delivery failed; retrying later",
		zap.String("webhook_id", e.Job.WebhookID), zap.String("delivery_id", e.Job.DeliveryID),
		zap.Int("attempt", attempt), zap.Int("status", res.Status), zap.String("reason", res.Reason),
		zap.Duration("retry_in", wait))
}

// backoff is the wait before the attempt after attempt: uniform below
// FirstBackoff*2^(attempt-1), capped at MaxBackoff, and never shorter than
// what the API asked for with Retry-After (itself capped at MaxBackoff).
func (w *Workers) backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceiling := w.q.cfg.MaxBackoff
	if attempt-1 < 62 && w.q.cfg.FirstBackoff < ceiling>>(attempt-1) {
		ceiling = w.q.cfg.FirstBackoff << (attempt - 1)
	}
	wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
	return max(wait, min(retryAfter, w.q.cfg.MaxBackoff))
}

// buryScript appends an entry to the dead stream, then drops the oldest
// dead letters while the stream is over a limit: more entries than
// ARGV[1], more bytes than ARGV[3], or entries older than ARGV[2] ms
// before the new one (each 0: no limit). The new entry itself may go, if
// it alone is over the bytes. KEYS[1] the dead stream, KEYS[2] its byte
// counter; ARGV[4..] the entry's fields. Returns how many it dropped.
var buryScript = redis.NewScript(deadBytesLua + `
local bytes = deadBytes()
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
bytes = bytes + entrySize(ARGV, 4)
local maxEntries, maxAge, maxBytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cutoff = 0
if maxAge > 0 then
  cutoff = idMillis(id) - maxAge
end
local len = redis.call('XLEN', KEYS[1])
local dropped = 0
while len > 0 do
  local e
  if (maxEntries > 0 and len > maxEntries) or (maxBytes > 0 and bytes > maxBytes) then
    e = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  elseif cutoff > 0 then
    e = redis.call('XRANGE', KEYS[1], '-', string.format('(%.0f-0', cutoff), 'COUNT', 1)[1]
  end
  if not e then
    break
  end
  redis.call('XDEL', KEYS[1], e[1])
  bytes = bytes - entrySize(e[2], 1)
  len = len - 1
  dropped = dropped + 1
end
if len == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], bytes)
end
return dropped
`)

// bury moves an entry to the dead stream with why it failed, releases its
// delivery from the replay guard, then removes it from the queue. e is the
// entry as decoded (zero if it was not).
func (w *Workers) bury(ctx context.Context, id string, values map[string]any, e Entry, attempts int, res dispatch.Result) {
	limits := w.q.cfg.Dead
	args := make([]any, 0, 2*len(values)+13)
	args = append(args, max(limits.MaxEntries, 0), max(limits.MaxAge.Milliseconds(), 0), max(limits.MaxBytes, 0))
	for k, v := range values {
		if k == fieldAttempts {
			continue
		}
		args = append(args, k, v)
	}
	args = append(args,
		fieldAttempts, strconv.Itoa(attempts),
		fieldDeadAt, strconv.FormatInt(w.now().UnixMilli(), 10),
		fieldLastStatus, strconv.Itoa(res.Status),
		fieldLastStep, res.Step,
		fieldLastReason, res.Reason)
	dropped, err := buryScript.Run(ctx, w.q.client, []string{w.q.dead, w.q.deadBytes}, args...).Int64()
	if err != nil {
		w.logger.Error("moving an entry to the dead stream; it will be reclaimed instead", zap.String("entry", id), zap.Error(err))
		return
	}
	w.releaseDelivery(ctx, id, e)
	w.finish(ctx, id)
	if w.events.Dead != nil {
		w.events.Dead()
	}
	w.logger.Error("delivery given up; moved to the dead stream",
		zap.String("entry", id), zap.String("webhook_id", e.Job.WebhookID), zap.String("delivery_id", e.Job.DeliveryID),
		zap.Int("attempts", attempts), zap.Int("status", res.Status), zap.String("reason", res.Reason))
	if dropped > 0 {
		if w.events.DeadDropped != nil {
			w.events.DeadDropped(int(dropped))
		}
		w.logger.Warn("dead stream over its limits; dropped its oldest dead letters",
			zap.Int64("dropped", dropped), zap.Int64("max_entries", limits.MaxEntries),
			zap.Duration("max_age", limits.MaxAge), zap.Int64("max_bytes", limits.MaxBytes))
	}
}

// releaseDelivery removes the replay guard's marker of a dead entry's
// delivery, so that the sender's redelivery (GitHub's "Redeliver" sends
// the same delivery id) is accepted rather than answered as a duplicate.
// The marker is on the webhook's cluster slot, not the dead stream's.
func (w *Workers) releaseDelivery(ctx context.Context, id string, e Entry) {
	key := e.replayKey()
	if e.Job.WebhookID == "" || key == "" {
		return
	}
	if err := w.q.client.Del(ctx, w.q.cfg.Space.Seen(e.Job.WebhookID, key)).Err(); err != nil {
		w.logger.Warn("releasing a dead delivery from the replay guard; its redelivery is a duplicate until the marker expires",
			zap.String("entry", id), zap.String("webhook_id", e.Job.WebhookID), zap.Error(err))
	}
}

// reclaim takes over entries that have been in flight for ClaimAfter
// without their consumer's heartbeat: that consumer stopped or died.
func (w *Workers) reclaim(ctx context.Context) {
	start := "0-0"
	for ctx.Err() == nil {
		n := w.acquire(ctx)
		if n == 0 {
			return
		}
		msgs, next, err := w.q.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: w.q.stream, Group: keyspace.Group, Consumer: w.q.cfg.Consumer,
			MinIdle: w.q.cfg.ClaimAfter, Start: start, Count: int64(n),
		}).Result()
		if err != nil {
			w.release(n)
			if !redis.HasErrorPrefix(err, "NOGROUP") && ctx.Err() == nil {
				w.logger.Warn("reclaiming deliveries", zap.Error(err))
			}
			return
		}
		for _, m := range msgs {
			w.logger.Info("reclaimed a delivery from a silent consumer", zap.String("entry", m.ID))
			w.start(m)
		}
		w.release(n - len(msgs))
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}

// forgetConsumersScript removes from group ARGV[1] of stream KEYS[1] the
// consumers that hold no entries and have been idle for more than ARGV[2]
// ms, except ARGV[3] (this instance's). One script, so that no consumer
// reads an entry between the check and its removal: the entry would leave
// the group's pending list with it, and nothing would ever reclaim it.
// Returns the names removed.
var forgetConsumersScript = redis.NewScript(`
local gone = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do
    f[c[i]] = c[i + 1]
  end
  if f['name'] ~= ARGV[3] and f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone[#gone + 1] = f['name']
  end
end
return gone
`)

// forgetAfter is how long a consumer holding nothing may stay idle before
// forgetConsumers removes it.
func (w *Workers) forgetAfter() time.Duration {
	if d := w.q.cfg.ForgetConsumersAfter; d > 0 {
		return d
	}
	return max(10*w.q.cfg.ClaimAfter, time.Hour)
}

// forgetConsumers removes from the group the consumers of processes that
// are gone: those holding no entries and idle for forgetAfter. A consumer
// that holds entries stays until they are reclaimed.
func (w *Workers) forgetConsumers(ctx context.Context) {
	gone, err := forgetConsumersScript.Run(ctx, w.q.client, []string{w.q.stream},
		keyspace.Group, w.forgetAfter().Milliseconds(), w.q.cfg.Consumer).StringSlice()
	if err != nil {
		if ctx.Err() == nil && !redis.HasErrorPrefix(err, "NOGROUP") && !redis.HasErrorPrefix(err, "ERR no such key") {
			w.logger.Warn("removing silent consumers from the group", zap.Error(err))
		}
		return
	}
	if len(gone) > 0 {
		w.logger.Info("removed silent consumers holding nothing from the group", zap.Strings("consumers", gone))
	}
}

// claimDueScript takes up to ARGV[3] retries due at ARGV[1] (ms) and pushes
// each ARGV[2] ms into the future: a lease, so that another instance takes
// them over if this one dies before moving them.
var claimDueScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), m)
end
return due
`)

// moveDue puts entries whose retry is due back at the end of the stream,
// as new entries with their attempts counted. The copy is appended before
// the original and the schedule are removed, so a crash can only move an
// entry twice.
func (w *Workers) moveDue(ctx context.Context) {
	lease := max(w.q.cfg.ClaimAfter, time.Second).Milliseconds()
	members, err := claimDueScript.Run(ctx, w.q.client, []string{w.q.retry}, w.now().UnixMilli(), lease, 100).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("moving due retries", zap.Error(err))
		}
		return
	}
	for _, member := range members {
		if err := w.moveOne(ctx, member); err != nil {
			w.logger.Warn("moving a due retry; another attempt follows", zap.String("retry", member), zap.Error(err))
		}
	}
}

func (w *Workers) moveOne(ctx context.Context, member string) error {
	id, n, _ := strings.Cut(member, "|")
	msgs, err := w.q.client.XRange(ctx, w.q.stream, id, id).Result()
	if err != nil {
		return err
	}
	if len(msgs) == 1 {
		values := msgs[0].Values
		values[fieldAttempts] = n
		if err := w.q.client.XAdd(ctx, &redis.XAddArgs{Stream: w.q.stream, Values: values}).Err(); err != nil {
			return err
		}
		if err := w.q.client.XDel(ctx, w.q.stream, id).Err(); err != nil {
			return err
		}
	}
	return w.q.client.ZRem(ctx, w.q.retry, member).Err()
}

// heartbeat resets the idle time of the entries this instance holds, so
// they are not reclaimed while their dispatch runs (which may take minutes).
func (w *Workers) heartbeat(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.heartbeatEnd:
			return
		case <-t.C:
		}
		w.mu.Lock()
		ids := make([]string, 0, len(w.held))
		for id := range w.held {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, 2*time.Second))
		err := w.q.client.XClaimJustID(ctx, &redis.XClaimArgs{
			Stream: w.q.stream, Group: keyspace.Group, Consumer: w.q.cfg.Consumer, Messages: ids,
		}).Err()
		cancel()
		if err != nil {
			w.logger.Warn("keeping in-flight deliveries claimed", zap.Error(err))
		}
	}
}
