package guard

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
)

//go:embed admit.lua
var admitLua string

var admitScript = redisconn.NewScript(admitLua)

// ErrStreamFull says an admitted request's entry was not appended because
// the stream holds its most entries; nothing of the request was recorded.
var ErrStreamFull = errors.New("stream is full")

// Append is what the admit script appends to a stream once a request is
// admitted, in the same atomic step: the entry, and its ticket (the entry's
// id followed by TicketTail) at the end of a lane, which joins a ring when
// it was empty.
type Append struct {
	// Stream is the key of the stream.
	Stream string
	// Lane is the key of the list the ticket joins; a request collapses
	// into a queued entry only while its ticket is in the lane.
	Lane string
	// Ring is the key of the list of lanes holding tickets, Waiting the key
	// of the sorted set of their lengths (recorded as they double); Member
	// stands for Lane in both.
	Ring, Waiting, Member string
	// TicketTail follows the entry's id in its ticket.
	TicketTail string
	// MaxLength is the most entries the stream may hold; 0: no limit.
	MaxLength int64
	// Fields are the entry's field names and values, alternating.
	Fields []any
}

// admission is the keys the admit script touches for one request. A
// marker it neither checks nor records, and the reindex marker of a
// request that does not collapse, is the rate counter's name: a
// placeholder on the same slot, which the script tells by its name.
type admission struct {
	rate, marker, also, reindex string
}

// admission returns what the script checks and records for delivery d of
// webhook id: the delivery's marker checked and set, the other one set,
// and a reindex collapsed into a queued one.
func (c Config) admission(space keyspace.Space, id string, d Delivery) admission {
	a := admission{rate: space.Rate(id)}
	a.marker = c.marker(space, id, a.rate, d.Key())
	a.also = c.marker(space, id, a.rate, d.also())
	a.reindex = a.rate
	if d.Collapse {
		a.reindex = space.Reindex(id)
	}
	return a
}

func (c Config) marker(space keyspace.Space, id, placeholder, replayKey string) string {
	if replayKey == "" || c.ReplayWindow <= 0 {
		return placeholder
	}
	return space.Seen(id, replayKey)
}

// admitCall is the admit script's run, its KEYS and ARGV (admit.lua):
// their one definition.
func admitCall(c Config, a admission, app *Append) *redisconn.Call {
	if app == nil {
		call := admitScript.Call(4 + 4)
		call.Keys(a.rate, a.marker, a.also, a.reindex)
		c.limits(call)
		return call
	}
	call := admitScript.Call(8 + 7 + len(app.Fields))
	call.Keys(a.rate, a.marker, a.also, a.reindex, app.Stream, app.Lane, app.Ring, app.Waiting)
	c.limits(call)
	call.Args(app.TicketTail, app.MaxLength, app.Member)
	call.Args(app.Fields...)
	return call
}

// limits adds c's limits to call, as the admit script reads them: ARGV[1]
// to ARGV[4].
func (c Config) limits(call *redisconn.Call) {
	call.Args(max(c.Limit, 0), max(c.Window.Milliseconds(), 1), max(c.ReplayWindow.Milliseconds(), 1), max(c.CollapseTTL.Milliseconds(), 1))
}

// runAdmit runs the admit script through r, waiting within b, and reads
// its decision.
func runAdmit(ctx context.Context, r redisconn.Requests, b redisconn.Bound, c Config, a admission, app *Append) (Decision, error) {
	v, err := r.Run(ctx, b, admitCall(c, a, app))
	switch {
	case redis.HasErrorPrefix(err, "STREAMFULL"):
		return Decision{}, ErrStreamFull
	case err != nil:
		return Decision{}, err
	}
	reply, ok := v.([]any)
	if !ok {
		return Decision{}, fmt.Errorf("unexpected guard reply %v", v)
	}
	return parseDecision(reply)
}

// AdmitAndAppend runs the rate limit and the replay guard c for delivery d of
// webhook id and, if the request is admitted, appends app, all in one
// atomic script through r, waiting within b: a delivery is marked as seen
// exactly when it is appended. Every key must be on one slot: not for a
// Redis Cluster, where the stream and the webhook's keys are on different
// slots.
func AdmitAndAppend(ctx context.Context, r redisconn.Requests, b redisconn.Bound, space keyspace.Space, c Config, id string, d Delivery, app Append) (Decision, error) {
	return runAdmit(ctx, r, b, c, c.admission(space, id, d), &app)
}

// AppendUnguarded appends app with no guard, in the same script, waiting
// within b (for a Redis Cluster, after Redis.Check has admitted the
// request).
func AppendUnguarded(ctx context.Context, r redisconn.Requests, b redisconn.Bound, app Append) error {
	a := admission{rate: app.Stream, marker: app.Stream, also: app.Stream, reindex: app.Stream}
	_, err := runAdmit(ctx, r, b, Config{}, a, &app)
	return err
}

// parseDecision reads the admit script's {verdict, ms} reply.
func parseDecision(reply []any) (Decision, error) {
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
	requests redisconn.Requests // batched with other requests' commands
	space    keyspace.Space
	cfg      Config
}

// NewRedis returns a guard keeping its state in space.
func NewRedis(client redis.UniversalClient, space keyspace.Space, cfg Config) *Redis {
	return &Redis{client: client, requests: redisconn.NewRequests(client), space: space, cfg: cfg}
}

// Check implements Guard with one EVALSHA.
func (g *Redis) Check(ctx context.Context, id string, d Delivery) (Decision, error) {
	if g.cfg.Off() {
		return Decision{Verdict: Admit}, nil
	}
	// The caller bounds the wait (the zero Bound waits as long as Redis takes).
	decision, err := runAdmit(ctx, g.requests, redisconn.Bound{}, g.cfg, g.cfg.admission(g.space, id, d), nil)
	if err != nil {
		return Decision{Verdict: Admit}, fmt.Errorf("guarding webhook %q: %w", id, err)
	}
	return decision, nil
}

// Forget implements Guard.
func (g *Redis) Forget(ctx context.Context, id string, d Delivery) error {
	if g.cfg.ReplayWindow <= 0 {
		return nil
	}
	var keys []string
	for _, k := range []string{d.Key(), d.also()} {
		if k != "" {
			keys = append(keys, g.space.Seen(id, k))
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
