package guard

import (
	"context"
	"sync"
	"time"
)

// maxSeen bounds the markers (delivery ids and body digests) one Memory
// guard remembers. When it is reached the oldest are forgotten first: a
// replay of those would then be admitted.
const maxSeen = 100_000

// Memory is a Guard that keeps its state in this process: for a single
// instance serving an integrations file, without Redis.
type Memory struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	windows map[string]window    // webhook id -> its current window; only known webhooks reach the guard
	seen    map[string]time.Time // webhook id + "\x00" + delivery id -> forgotten at
	// order is every marker set, oldest first: all live as long
	// (cfg.ReplayWindow), so the first is the first to expire. A marker set
	// again or forgotten leaves an entry that no longer matches seen.
	order []marker
}

// marker is one marker set: its key in seen, and when it is forgotten.
type marker struct {
	key   string
	until time.Time
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
		g.remember(key, now)
		if also := d.also(); also != "" {
			g.remember(id+"\x00"+also, now)
		}
	}
	return Decision{Verdict: Admit}, nil
}

// remember sets the marker key for the replay window, after forgetting
// the markers that expired and, when maxSeen are kept, the oldest: a
// step for each marker ever set, never a scan. g.mu must be held.
func (g *Memory) remember(key string, now time.Time) {
	for len(g.order) > 0 && (len(g.order) >= maxSeen || !now.Before(g.order[0].until)) {
		oldest := g.order[0]
		g.order[0] = marker{} // its key is garbage once forgotten
		g.order = g.order[1:]
		if until, ok := g.seen[oldest.key]; ok && until.Equal(oldest.until) {
			delete(g.seen, oldest.key)
		}
	}
	until := now.Add(g.cfg.ReplayWindow)
	g.seen[key] = until
	g.order = append(g.order, marker{key: key, until: until})
}

// Forget implements Guard.
func (g *Memory) Forget(_ context.Context, id string, d Delivery) error {
	g.mu.Lock()
	delete(g.seen, id+"\x00"+d.Key())
	delete(g.seen, id+"\x00"+d.also())
	g.mu.Unlock()
	return nil
}
