package delivery

import (
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
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
	// Attempted: an attempt at an entry ended and its outcome is recorded
	// in the queue, for the delivery log.
	Attempted func(Attempt)
}

// What an Attempt led to.
const (
	// AttemptDelivered: the entry was dispatched and is done.
	AttemptDelivered = "delivered"
	// AttemptRetried: another attempt is scheduled.
	AttemptRetried = "retried"
	// AttemptDead: the entry was moved to the dead stream.
	AttemptDead = "dead"
)

// Attempt is how one attempt at an entry ended.
type Attempt struct {
	// EntryID is the entry's stream id.
	EntryID string
	// Job is the entry's job (its body is not to be kept).
	Job dispatch.Job
	// Attempts counts the attempts made, this one included (0 for an entry
	// that died before any: unreadable or expired).
	Attempts int
	// Outcome is AttemptDelivered, AttemptRetried or AttemptDead.
	Outcome string
	// Result is the attempt's result.
	Result dispatch.Result
	// Duration is how long the attempt took, Age how long ago the entry
	// was received.
	Duration, Age time.Duration
}

// DispatchFunc makes one attempt at delivering a job.
type DispatchFunc func(ctx context.Context, job dispatch.Job) dispatch.Result

// readBlock is how long an idle instance waits for a lane to fill before
// it looks again; it bounds how long stopping takes.
const readBlock = 500 * time.Millisecond

// Workers dispatch the queue's entries until stopped.
type Workers struct {
	q        *Queue
	dispatch DispatchFunc
	events   Events
	logger   *zap.Logger
	now      func() time.Time

	stopOnce     sync.Once
	stop         context.CancelFunc // stops taking, reclaiming and retrying
	loops        sync.WaitGroup
	abort        context.CancelFunc // cancels dispatches still running after the drain
	dispatchCtx  context.Context
	inflight     sync.WaitGroup
	slots        chan struct{}
	heartbeatEnd chan struct{}

	// holder names these workers in the leases they hold: unique to each
	// Start, so that workers of a reload, or a stalled instance whose
	// leases were taken over, never end another's lease.
	holder string

	mu   sync.Mutex
	held map[ticket]struct{} // tickets this instance is dispatching
}

// Start starts q's workers: a taker of entries from the lanes, a reclaimer
// of entries whose lease ended (and adopter of the earlier versions'
// queue), a mover of entries due for retry, and a heartbeat that renews
// this instance's leases.
func (q *Queue) Start(dispatchFn DispatchFunc, events Events, logger *zap.Logger) *Workers {
	ctx, stop := context.WithCancel(context.Background())
	dctx, abort := context.WithCancel(context.Background())
	w := &Workers{
		q: q, dispatch: dispatchFn, events: events, logger: logger, now: time.Now,
		stop: stop, abort: abort, dispatchCtx: dctx,
		slots:        make(chan struct{}, max(q.cfg.Workers, 1)),
		heartbeatEnd: make(chan struct{}),
		held:         map[ticket]struct{}{},
		holder:       q.cfg.Consumer + "/" + crand.Text(),
	}
	w.loops.Add(3)
	go w.takeLoop(ctx)
	go w.every(ctx, max(q.cfg.ClaimAfter/2, 10*time.Millisecond), w.reclaim)
	go w.every(ctx, min(max(q.cfg.FirstBackoff/4, 10*time.Millisecond), 250*time.Millisecond), w.moveDue)
	go w.heartbeat(max(q.cfg.ClaimAfter/3, 5*time.Millisecond))
	return w
}

// Stop stops taking entries and waits up to drain for the dispatches in
// flight to finish. Those still running then are cancelled and handed back
// to the front of their lanes (or, if Redis cannot be told, left to their
// lease's end): nothing is lost, and nothing finished is dispatched twice.
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

// every runs fn at once, then at each interval, until ctx is done.
func (w *Workers) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	defer w.loops.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// takeLoop takes entries from the lanes as dispatch slots free up.
func (w *Workers) takeLoop(ctx context.Context) {
	defer w.loops.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		n := w.acquire(ctx)
		if n == 0 {
			return
		}
		// Not cut short by a stop: what Redis leased is dispatched.
		got, lanes, err := w.q.take(context.WithoutCancel(ctx), n, w.holder)
		for _, t := range got {
			w.start(t)
		}
		w.release(n - len(got))
		switch {
		case err != nil:
			if ctx.Err() == nil {
				w.pause(ctx, &backoff, "taking deliveries", err)
			}
			continue
		case lanes == 0:
			w.waitForLane(ctx)
		}
		backoff = 50 * time.Millisecond
	}
}

// waitForLane waits up to readBlock for a lane to join the ring: a new
// entry's, a retry's, or one parked on a resource that has room again.
// Moving the ring's head to its tail changes nothing but the turn, which
// is anyone's.
func (w *Workers) waitForLane(ctx context.Context) {
	err := w.q.client.BLMove(ctx, w.q.ring, w.q.ring, "LEFT", "RIGHT", readBlock).Err()
	if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
		select { // Redis is down: the next take says so
		case <-ctx.Done():
		case <-time.After(readBlock):
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

// start dispatches t in a slot already taken.
func (w *Workers) start(t taken) {
	w.mu.Lock()
	w.held[t.ticket] = struct{}{}
	w.mu.Unlock()
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Done()
		w.process(t)
		w.mu.Lock()
		delete(w.held, t.ticket)
		w.mu.Unlock()
		w.release(1)
	}()
}

// process makes one attempt at t and records the outcome.
func (w *Workers) process(t taken) {
	// Finishing an entry must not be cut short by a stop.
	ctx := context.WithoutCancel(w.dispatchCtx)
	e, err := readEntry(t.ticket.entryID(), t.fields)
	a := Attempt{EntryID: t.ticket.entryID(), Job: e.Job, Outcome: AttemptDead}
	if err != nil {
		a.Result = dispatch.Result{Step: "decode", Reason: err.Error()}
		w.attempted(a, w.bury(ctx, t.ticket, t.fields, Entry{}, 0, a.Result))
		return
	}
	a.Attempts, a.Age = e.Attempts+1, w.now().Sub(e.ReceivedAt)
	if w.q.cfg.MaxAge > 0 && a.Age > w.q.cfg.MaxAge {
		a.Attempts, a.Result = e.Attempts, dispatch.Result{Step: "queue", Reason: "expired after " + a.Age.Round(time.Second).String()}
		w.attempted(a, w.bury(ctx, t.ticket, t.fields, e, e.Attempts, a.Result))
		return
	}
	start := w.now()
	a.Result = w.dispatch(w.dispatchCtx, e.Job)
	a.Duration = w.now().Sub(start)
	res := a.Result
	if w.dispatchCtx.Err() != nil && res.Class == dispatch.Retryable {
		w.handBack(ctx, t.ticket) // cancelled by Stop: the attempt does not count
		return
	}
	switch {
	case res.Class == dispatch.Success:
		w.finish(ctx, t.ticket)
		if w.events.Delivered != nil {
			w.events.Delivered(w.now().Sub(e.ReceivedAt))
		}
		a.Outcome = AttemptDelivered
		w.attempted(a, true)
	case res.Class == dispatch.Retryable && a.Attempts < w.q.cfg.Attempts:
		a.Outcome = AttemptRetried
		w.attempted(a, w.retryLater(ctx, t.ticket, e, a.Attempts, res))
	default:
		w.attempted(a, w.bury(ctx, t.ticket, t.fields, e, a.Attempts, res))
	}
}

// attempted tells Events.Attempted of a when its outcome was recorded.
func (w *Workers) attempted(a Attempt, recorded bool) {
	if recorded && w.events.Attempted != nil {
		a.Job.Body = nil
		w.events.Attempted(a)
	}
}

// finish removes a finished entry.
func (w *Workers) finish(ctx context.Context, t ticket) {
	if err := w.q.finish(ctx, t, w.holder); err != nil {
		w.logger.Error("finishing an entry; it will be dispatched again when its lease ends",
			zap.String("entry", t.entryID()), zap.Error(err))
	}
}

// handBack puts t back at the front of its lane, for any instance to take.
func (w *Workers) handBack(ctx context.Context, t ticket) {
	if _, err := w.q.handBack(ctx, w.holder, string(t)); err != nil {
		w.logger.Warn("handing back an entry; it will be taken again when its lease ends",
			zap.String("entry", t.entryID()), zap.Error(err))
	}
}

// retryLater schedules the entry's next attempt and ends its lease; it
// stays in the stream until the attempt is due. It reports whether it
// scheduled it.
func (w *Workers) retryLater(ctx context.Context, t ticket, e Entry, attempt int, res dispatch.Result) bool {
	wait := w.backoff(attempt, res.RetryAfter)
	switch err := w.q.schedule(ctx, t, attempt, w.now().Add(wait).UnixMilli(), w.holder); {
	case errors.Is(err, errLeaseLost):
		w.logger.Warn("delivery failed; not scheduling a retry", zap.String("entry", t.entryID()), zap.Error(err))
		return false
	case err != nil:
		w.logger.Error("scheduling a retry; the entry will be taken again when its lease ends", zap.String("entry", t.entryID()), zap.Error(err))
		return false
	}
	if w.events.Retried != nil {
		w.events.Retried()
	}
	w.logger.Warn("delivery failed; retrying later",
		zap.String("webhook_id", e.Job.WebhookID), zap.String("delivery_id", e.Job.DeliveryID),
		zap.Int("attempt", attempt), zap.Int("status", res.Status), zap.String("reason", res.Reason),
		zap.Duration("retry_in", wait))
	return true
}

// backoff is the wait before the attempt after attempt: uniform below
// FirstBackoff*2^(attempt-1), capped at MaxBackoff, and never shorter than
// what the API asked for with Retry-After (itself capped at MaxBackoff).
func (w *Workers) backoff(attempt int, retryAfter time.Duration) time.Duration {
	attempt = max(attempt, 1)
	ceiling := w.q.cfg.MaxBackoff
	if attempt-1 < 62 && w.q.cfg.FirstBackoff < ceiling>>(attempt-1) {
		ceiling = w.q.cfg.FirstBackoff << (attempt - 1)
	}
	wait := time.Duration(rand.Uint64N(uint64(ceiling) + 1)) // 0 to ceiling, even the largest
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
// entry as decoded (zero if it was not). It reports whether the entry is
// a dead letter now.
func (w *Workers) bury(ctx context.Context, t ticket, values streamFields, e Entry, attempts int, res dispatch.Result) bool {
	if !w.deadLetter(ctx, t.entryID(), values, e, attempts, res) {
		return false
	}
	w.releaseDelivery(ctx, t.entryID(), e)
	w.finish(ctx, t)
	return true
}

// deadLetter appends entry id to the dead stream, with why it failed, and
// reports whether it did.
func (w *Workers) deadLetter(ctx context.Context, id string, values streamFields, e Entry, attempts int, res dispatch.Result) bool {
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
		w.logger.Error("moving an entry to the dead stream; it will be dispatched again instead", zap.String("entry", id), zap.Error(err))
		return false
	}
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
	return true
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

// reclaim hands back the entries whose lease ended without being renewed
// (their instance stopped or died), and adopts what the earlier versions'
// queue holds.
func (w *Workers) reclaim(ctx context.Context) {
	for ctx.Err() == nil {
		moved, err := w.q.handBack(ctx, "")
		if err != nil {
			if ctx.Err() == nil {
				w.logger.Warn("reclaiming deliveries", zap.Error(err))
			}
			return
		}
		for _, t := range moved {
			w.logger.Info("reclaimed a delivery whose lease ended", zap.String("entry", ticket(t).entryID()))
		}
		if len(moved) < 100 {
			break
		}
	}
	w.adopt(ctx)
}

// moveDue puts entries whose retry is due back at the end of their lanes.
func (w *Workers) moveDue(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := w.q.moveDue(ctx, w.now().UnixMilli(), 16)
		if err != nil {
			if ctx.Err() == nil {
				w.logger.Warn("moving due retries", zap.Error(err))
			}
			return
		}
		if n < 16 {
			return
		}
	}
}

// heartbeat renews the leases of the entries this instance holds, so they
// are not handed back while their dispatch runs (which may take minutes).
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
		tickets := make([]string, 0, len(w.held))
		for t := range w.held {
			tickets = append(tickets, string(t))
		}
		w.mu.Unlock()
		if len(tickets) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, 2*time.Second))
		err := w.q.renew(ctx, tickets, w.holder)
		cancel()
		if err != nil {
			w.logger.Warn("renewing the leases of in-flight deliveries", zap.Error(err))
		}
	}
}
