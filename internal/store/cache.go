package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// CacheConfig sets how long and how many records a Cache keeps.
type CacheConfig struct {
	// TTL is how long a loaded record is served before it is loaded again.
	TTL time.Duration
	// NegativeTTL is how long an unknown id is answered as unknown without
	// asking the store.
	NegativeTTL time.Duration
	// StaleTTL is how long after its last successful load a record is still
	// served while the store cannot be reached.
	StaleTTL time.Duration
	// MaxEntries bounds the records kept, and separately the unknown ids kept.
	MaxEntries int
	// Stale is called, if set, each time a record is served past its TTL
	// because the store failed with err.
	Stale func(id string, err error)
}

// Cache is a Store that keeps what another Store loads. Concurrent loads of
// one id share a single call to the underlying store.
type Cache struct {
	src    Store
	cfg    CacheConfig
	now    func() time.Time
	flight singleflight.Group

	mu       sync.RWMutex
	entries  map[string]entry
	negative map[string]int64 // unknown id -> answered as unknown until (Unix ns)
	gen      uint64           // bumped by every invalidation
}

// entry is one cached answer, stored by value.
type entry struct {
	rec   *integration.Integration
	err   error // a malformed record's decoding error
	fresh int64 // served without asking the store until (Unix ns)
	stale int64 // served when the store fails until (Unix ns)
}

// expired returns e no longer fresh but still stale.
func (e entry) expired() entry {
	e.fresh = 0
	return e
}

// NewCache returns a cache in front of src.
func NewCache(src Store, cfg CacheConfig) *Cache {
	return &Cache{
		src:      src,
		cfg:      cfg,
		now:      time.Now,
		entries:  make(map[string]entry),
		negative: make(map[string]int64),
	}
}

// Load implements Store. A fresh record, or an id known to be unknown, is
// answered from memory; otherwise the store is asked, and if it cannot be
// reached the last good record is served until its StaleTTL runs out.
func (c *Cache) Load(ctx context.Context, id string) (*integration.Integration, error) {
	now := c.now().UnixNano()
	c.mu.RLock()
	e, ok := c.entries[id]
	unknownUntil, unknown := c.negative[id]
	c.mu.RUnlock()
	if ok && now < e.fresh {
		return e.rec, e.err
	}
	if unknown && now < unknownUntil {
		return nil, ErrNotFound
	}
	res, err, _ := c.flight.Do(id, func() (any, error) {
		// The first caller's cancellation must not fail the others waiting.
		// The id is copied: it is often part of a longer string (the
		// request's path), which the cache must not keep alive.
		return c.fill(context.WithoutCancel(ctx), strings.Clone(id))
	})
	if err != nil {
		return nil, err
	}
	e = res.(entry)
	return e.rec, e.err
}

// fill loads id from the store and records the answer. It returns the entry
// to serve, or the store's error (ErrNotFound, or unreachable with nothing
// good to serve instead).
func (c *Cache) fill(ctx context.Context, id string) (entry, error) {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()

	rec, err := c.src.Load(ctx, id)
	now := c.now().UnixNano()
	switch {
	case err == nil || integration.IsMalformed(err):
		e := entry{rec: rec, err: err, fresh: now + int64(c.cfg.TTL), stale: now + int64(c.cfg.StaleTTL)}
		c.mu.Lock()
		if c.gen != gen {
			// Invalidated while loading: what was loaded may already be old,
			// so it serves only as a last good copy.
			e.fresh = 0
		}
		delete(c.negative, id)
		c.put(id, e)
		c.mu.Unlock()
		return e, nil

	case errors.Is(err, ErrNotFound):
		c.mu.Lock()
		delete(c.entries, id)
		if c.gen == gen {
			c.putNegative(id, now+int64(c.cfg.NegativeTTL))
		}
		c.mu.Unlock()
		return entry{}, ErrNotFound
	}

	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if !ok || now >= e.stale {
		return entry{}, err
	}
	if c.cfg.Stale != nil {
		c.cfg.Stale(id, err)
	}
	return e, nil
}

// put stores e. c.mu must be held.
func (c *Cache) put(id string, e entry) { putBounded(c.entries, id, e, c.cfg.MaxEntries) }

// putNegative remembers id as unknown, in a map of its own, so that floods
// of random ids never push out real records. c.mu must be held.
func (c *Cache) putNegative(id string, until int64) {
	putBounded(c.negative, id, until, c.cfg.MaxEntries)
}

// putBounded sets m[k], first evicting an arbitrary entry when m holds
// limit entries and k is new.
func putBounded[V any](m map[string]V, k string, v V, limit int) {
	if _, ok := m[k]; !ok && len(m) >= limit {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[k] = v
}

// Invalidate makes the next Load of id ask the store. The record stays as a
// last good copy in case the store cannot be reached.
func (c *Cache) Invalidate(id string) {
	c.mu.Lock()
	c.gen++
	if e, ok := c.entries[id]; ok {
		c.entries[id] = e.expired()
	}
	delete(c.negative, id)
	c.mu.Unlock()
	c.flight.Forget(id)
}

// InvalidateAll makes the next Load of every id ask the store.
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	c.gen++
	for id, e := range c.entries {
		c.entries[id] = e.expired()
	}
	clear(c.negative)
	c.mu.Unlock()
}
