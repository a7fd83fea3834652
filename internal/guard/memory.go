package guard

import (
	"context"
	"sync"
	"time"
)

// maxSeen bounds the delivery ids one Memory guard remembers. When full,
// expired ids are swept and, if that is not enough, arbitrary ones are
// dropped (a replay of those would then be admitted).
const maxSeen = 100_000

// Memory is a Guard that keeps its state in this process: for a single
// instance serving an integrations file, without Redis.
type Memory struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	windows map[string]window    // webhook id -> its current window; only known webhooks reach the guard
	seen    map[string]time.Time // webhook id + "\x00" + delivery id -> forgotten at
}

type window struct {
	count int
	ends  time.Time
}

// NewMemory returns an in-process guard.
func NewMemory(cfg Config) *Memory {
	return &Memory{cfg: cfg, now: time.Now, windows: map[string]window{}, seen: map[string]time.Time{}}
}

// Check implements Guard, with the same semantics as the Redis guard.
func (g *Memory) Check(_ context.Context, id string, d Delivery) (Decision, error) {
	now := g.now()
	key := id + "\x00" + d.Key()
	remember := d.Key() != "" && g.cfg.ReplayWindow > 0

	g.mu.Lock()
	defer g.mu.Unlock()
	if until, ok := g.seen[key]; remember && ok && now.Before(until) {
		return Decision{Verdict: Duplicate}, nil
	}
	if g.cfg.Limit > 0 {
		w := g.windows[id]
		if !now.Before(w.ends) {
			w = window{ends: now.Add(g.cfg.Window)}
		}
		w.count++
		g.windows[id] = w
		if w.count > g.cfg.Limit {
			return Decision{Verdict: Limited, RetryAfter: w.ends.Sub(now)}, nil
		}
	}
	if remember {
		g.makeRoom(now)
		g.seen[key] = now.Add(g.cfg.ReplayWindow)
		if also := d.also(); also != "" {
			g.seen[id+"\x00"+also] = now.Add(g.cfg.ReplayWindow)
		}
	}
	return Decision{Verdict: Admit}, nil
}

// makeRoom keeps the seen set under maxSeen. g.mu must be held.
func (g *Memory) makeRoom(now time.Time) {
	if len(g.seen) < maxSeen {
		return
	}
	for k, until := range g.seen {
		if !now.Before(until) {
			delete(g.seen, k)
		}
	}
	for k := range g.seen {
		if len(g.seen) < maxSeen {
			break
		}
		delete(g.seen, k)
	}
}

// Forget implements Guard.
func (g *Memory) Forget(_ context.Context, id string, d Delivery) error {
	g.mu.Lock()
	delete(g.seen, id+"\x00"+d.Key())
	delete(g.seen, id+"\x00"+d.also())
	g.mu.Unlock()
	return nil
}
