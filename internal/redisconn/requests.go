package redisconn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrDeadline says Redis did not answer within a request's deadline.
var ErrDeadline = errors.New("redis did not answer within the deadline")

// Bound is how long a request waits for Redis, and what it gives up when
// it stops waiting first.
type Bound struct {
	// Deadline is when the request stops waiting; the zero time waits as
	// long as Redis takes (the caller bounds the wait itself).
	Deadline time.Time
	// HandOff, if not nil, is called when the request stops waiting before
	// Redis has answered: what it returns is called once Redis has, so that
	// a buffer the command refers to is reused only then.
	HandOff func() (release func())
}

// Wait runs call, which returns once Redis has answered whatever its
// context says (go-redis's batching does not give up on a context), and
// waits for it until b.Deadline at most; then it fails with ErrDeadline.
// call goes on, and b.HandOff's release runs once it ends.
func Wait[T any](b Bound, call func() (T, error)) (T, error) {
	if b.Deadline.IsZero() {
		return call()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	wait := newDeadline(b.Deadline)
	select {
	case res := <-done:
		wait.release()
		return res.v, res.err
	case <-wait.Done(): // its signal taken: not reused
		if b.HandOff != nil {
			release := b.HandOff()
			go func() { <-done; release() }()
		}
		var zero T
		return zero, ErrDeadline
	}
}

// Requests runs the scripts of concurrent requests. On a single node or a
// Sentinel's master it sends them through the client's autopipeliner,
// which batches the commands of concurrent callers into shared round
// trips, each caller waiting for its own reply on its own goroutine; on a
// cluster, through the client, each in a goroutine of its own that the
// caller waits for.
type Requests struct {
	// Scripter is what Requests sends through, for callers that wait for
	// Redis however long it takes.
	redis.Scripter
	// batch is the client's autopipeliner, its deferred face; nil on a
	// cluster.
	batch *redis.AutoPipeliner
	// client loads a script Redis has lost.
	client redis.UniversalClient
}

// NewRequests returns the Requests of client.
func NewRequests(client redis.UniversalClient) Requests {
	r := Requests{Scripter: client, client: client}
	if c, ok := client.(*redis.Client); ok {
		if ap, err := c.AsyncAutoPipeline(); err == nil {
			r.Scripter, r.batch = ap, ap
		}
	}
	return r
}

// Script is a Lua script that requests run by its SHA1.
type Script struct {
	*redis.Script
	// sha is the script's SHA1, boxed once for every call's command line.
	sha any
}

// NewScript returns the Script of src.
func NewScript(src string) Script {
	s := redis.NewScript(src)
	return Script{Script: s, sha: s.Hash()}
}

// Call is one run of a script: its EVALSHA command line, built in one
// slice, keys first.
type Call struct {
	script Script
	keys   int
	line   []any
}

// Call starts a run of s with room for n keys and arguments.
func (s Script) Call(n int) *Call {
	line := make([]any, 3, 3+n)
	line[0], line[1] = "evalsha", s.sha
	return &Call{script: s, line: line}
}

// Keys adds keys; every key comes before the first argument.
func (c *Call) Keys(keys ...string) {
	for _, k := range keys {
		c.line = append(c.line, k)
	}
	c.keys += len(keys)
}

// Args adds arguments.
func (c *Call) Args(args ...any) { c.line = append(c.line, args...) }

// Run runs call c, and waits for its reply within b. Past b.Deadline it
// returns ErrDeadline: the script runs at most once (Redis runs a script
// it has read; one it has lost is loaded again only while the caller
// waits), and b.HandOff's release runs once Redis has answered.
func (r Requests) Run(ctx context.Context, b Bound, c *Call) (any, error) {
	c.line[2] = c.keys
	v, err := r.send(ctx, b, c)
	if !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return v, err
	}
	// Redis lost its scripts (a restart, SCRIPT FLUSH): load it again,
	// whatever ctx says, as the script's own run does.
	load := context.WithoutCancel(ctx)
	if !b.Deadline.IsZero() {
		var cancel context.CancelFunc
		load, cancel = context.WithDeadline(load, b.Deadline)
		defer cancel()
	}
	if err := c.script.Load(load, r.client).Err(); err != nil {
		return nil, err
	}
	return r.send(ctx, b, c)
}

// send sends c's EVALSHA and waits for the reply within b: through the
// autopipeliner on the caller's goroutine, or on a cluster through the
// client, in a goroutine that Wait waits for.
func (r Requests) send(ctx context.Context, b Bound, c *Call) (any, error) {
	if r.batch != nil {
		return r.submit(ctx, b, c)
	}
	return Wait(b, func() (any, error) {
		cmd := c.cmd(ctx)
		_ = r.client.Process(ctx, cmd)
		return cmd.Result()
	})
}

// cmd is c's EVALSHA command, routed on a cluster by its first key.
func (c *Call) cmd(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx, c.line...)
	if c.keys > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return cmd
}

// submit sends c's EVALSHA through the autopipeliner and waits for the
// reply within b, on the caller's goroutine.
func (r Requests) submit(ctx context.Context, b Bound, c *Call) (any, error) {
	cmd := c.cmd(ctx)
	f := r.batch.Submit(ctx, cmd)
	if b.Deadline.IsZero() {
		_ = f.Wait()
		return cmd.Result()
	}
	wait := newDeadline(b.Deadline)
	if err := f.WaitContext(wait); err != errDeadlinePassed {
		wait.release()
		return cmd.Result()
	}
	if b.HandOff != nil {
		release := b.HandOff()
		go func() { _ = f.Wait(); release() }()
	}
	return nil, ErrDeadline
}

// errDeadlinePassed is a deadline's Err once it has passed.
var errDeadlinePassed = errors.New("deadline passed")

// deadline is a context that is done at a time, for one waiter (Wait's
// select, or go-redis's WaitContext), reused: the wait for each request's
// reply would otherwise cost the allocations and the timer of a
// context.WithDeadline. Its timer signals Done with one
// value (a reused channel cannot be closed), and release must not run
// once the waiter has taken it.
//
// It serves go-redis's AutoFuture.WaitContext, which selects on Done once;
// a version that watched the context otherwise (context.AfterFunc) would
// take the one value, and TestRequestsDeadline would no longer return at
// the deadline.
type deadline struct {
	when   time.Time
	timer  *time.Timer
	done   chan struct{}
	passed atomic.Bool
}

var deadlines = sync.Pool{New: func() any {
	d := &deadline{done: make(chan struct{}, 1)}
	d.timer = time.AfterFunc(time.Hour, func() {
		d.passed.Store(true)
		d.done <- struct{}{}
	})
	d.timer.Stop()
	return d
}}

// newDeadline returns a deadline at when, running.
func newDeadline(when time.Time) *deadline {
	d := deadlines.Get().(*deadline)
	d.when = when
	d.timer.Reset(time.Until(when))
	return d
}

// release stops d and gives it back, when its waiter did not take its
// signal: one its timer sends is taken here first.
func (d *deadline) release() {
	if !d.timer.Stop() {
		<-d.done
	}
	d.passed.Store(false)
	deadlines.Put(d)
}

func (d *deadline) Deadline() (time.Time, bool) { return d.when, true }
func (d *deadline) Done() <-chan struct{}       { return d.done }
func (d *deadline) Value(any) any               { return nil }

func (d *deadline) Err() error {
	if d.passed.Load() {
		return errDeadlinePassed
	}
	return nil
}
