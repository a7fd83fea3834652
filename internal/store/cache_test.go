package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// fakeStore is an in-memory Store that counts loads and can fail or block.
type fakeStore struct {
	mu    sync.Mutex
	recs  map[string]*integration.Integration
	errs  map[string]error
	down  error
	loads int
	gate  chan struct{} // if set, each Load signals entered and waits for release
	enter chan struct{}
}

func newFakeStore() *fakeStore {
	return &fakeStore{recs: map[string]*integration.Integration{}, errs: map[string]error{}}
}

func (f *fakeStore) Load(_ context.Context, id string) (*integration.Integration, error) {
	f.mu.Lock()
	f.loads++
	gate, enter := f.gate, f.enter
	f.mu.Unlock()
	if gate != nil {
		enter <- struct{}{}
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.down != nil:
		return nil, f.down
	case f.errs[id] != nil:
		return nil, f.errs[id]
	case f.recs[id] != nil:
		return f.recs[id], nil
	}
	return nil, ErrNotFound
}

func (f *fakeStore) set(fn func(f *fakeStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time              { return c.t }
func (c *clock) advance(d time.Duration)     { c.t = c.t.Add(d) }
func newClock() *clock                       { return &clock{t: time.Unix(1_700_000_000, 0)} }
func rec(id string) *integration.Integration { return &integration.Integration{ID: id, Enabled: true} }

func newTestCache(src Store, clk *clock, stale func(string, error)) *Cache {
	c := NewCache(src, CacheConfig{
		TTL: 30 * time.Second, NegativeTTL: 5 * time.Second, StaleTTL: 10 * time.Minute,
		MaxEntries: 100, Stale: stale,
	})
	c.now = clk.now
	return c
}

var errDown = errors.New("dial tcp: connection refused")

func TestCache(t *testing.T) {
	type step struct {
		do        func(f *fakeStore, c *Cache, clk *clock)
		id        string
		wantID    string // "" means no record
		wantErr   error  // matched with errors.Is; nil means none
		malformed bool
		wantLoads int
		wantStale int
	}
	advance := func(d time.Duration) func(*fakeStore, *Cache, *clock) {
		return func(_ *fakeStore, _ *Cache, clk *clock) { clk.advance(d) }
	}
	goDown := func(f *fakeStore, _ *Cache, _ *clock) { f.set(func(f *fakeStore) { f.down = errDown }) }
	add := func(id string) func(*fakeStore, *Cache, *clock) {
		return func(f *fakeStore, _ *Cache, _ *clock) { f.set(func(f *fakeStore) { f.recs[id] = rec(id) }) }
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"hit within TTL, reload after", []step{
			{id: "a", wantID: "a", wantLoads: 1},
			{do: advance(29 * time.Second), id: "a", wantID: "a", wantLoads: 1},
			{do: advance(2 * time.Second), id: "a", wantID: "a", wantLoads: 2},
		}},
		{"unknown id cached negatively", []step{
			{id: "x", wantErr: ErrNotFound, wantLoads: 1},
			{do: advance(4 * time.Second), id: "x", wantErr: ErrNotFound, wantLoads: 1},
			{do: advance(2 * time.Second), id: "x", wantErr: ErrNotFound, wantLoads: 2},
		}},
		{"invalidate drops a negative entry at once", []step{
			{id: "x", wantErr: ErrNotFound, wantLoads: 1},
			{do: func(f *fakeStore, c *Cache, clk *clock) { add("x")(f, c, clk); c.Invalidate("x") }, id: "x", wantID: "x", wantLoads: 2},
		}},
		{"invalidate reloads a record", []step{
			{id: "a", wantID: "a", wantLoads: 1},
			{do: func(_ *fakeStore, c *Cache, _ *clock) { c.Invalidate("a") }, id: "a", wantID: "a", wantLoads: 2},
			{id: "a", wantID: "a", wantLoads: 2},
		}},
		{"invalidate all", []step{
			{id: "a", wantID: "a", wantLoads: 1},
			{id: "x", wantErr: ErrNotFound, wantLoads: 2},
			{do: func(_ *fakeStore, c *Cache, _ *clock) { c.InvalidateAll() }, id: "a", wantID: "a", wantLoads: 3},
			{id: "x", wantErr: ErrNotFound, wantLoads: 4},
		}},
		{"store down: last good copy served, counted, bounded", []step{
			{id: "a", wantID: "a", wantLoads: 1},
			{do: func(f *fakeStore, c *Cache, clk *clock) { goDown(f, c, clk); clk.advance(time.Minute) }, id: "a", wantID: "a", wantLoads: 2, wantStale: 1},
			{do: advance(8 * time.Minute), id: "a", wantID: "a", wantLoads: 3, wantStale: 2},
			{do: advance(2 * time.Minute), id: "a", wantErr: errDown, wantLoads: 4, wantStale: 2},
		}},
		{"store down after invalidation: last good copy still served", []step{
			{id: "a", wantID: "a", wantLoads: 1},
			{do: func(f *fakeStore, c *Cache, clk *clock) { goDown(f, c, clk); c.Invalidate("a") }, id: "a", wantID: "a", wantLoads: 2, wantStale: 1},
		}},
		{"store down, nothing cached", []step{
			{do: goDown, id: "a", wantErr: errDown, wantLoads: 1},
			{id: "a", wantErr: errDown, wantLoads: 2},
		}},
		{"malformed record cached as such", []step{
			{do: func(f *fakeStore, _ *Cache, _ *clock) {
				f.set(func(f *fakeStore) { f.errs["m"] = &integration.FieldError{ID: "m", Field: "is_enabled", Reason: "bad"} })
			}, id: "m", malformed: true, wantLoads: 1},
			{id: "m", malformed: true, wantLoads: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, clk, stale := newFakeStore(), newClock(), 0
			f.recs["a"] = rec("a")
			c := newTestCache(f, clk, func(string, error) { stale++ })
			for i, s := range tc.steps {
				if s.do != nil {
					s.do(f, c, clk)
				}
				got, err := c.Load(context.Background(), s.id)
				switch {
				case s.malformed:
					if !integration.IsMalformed(err) {
						t.Fatalf("step %d: err = %v, want malformed", i, err)
					}
				case s.wantErr != nil:
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
					}
				case err != nil:
					t.Fatalf("step %d: %v", i, err)
				case got == nil || got.ID != s.wantID:
					t.Fatalf("step %d: got %v, want record %q", i, got, s.wantID)
				}
				if n := f.count(); n != s.wantLoads {
					t.Fatalf("step %d: store loads = %d, want %d", i, n, s.wantLoads)
				}
				if stale != s.wantStale {
					t.Fatalf("step %d: stale served = %d, want %d", i, stale, s.wantStale)
				}
			}
		})
	}
}

func TestCacheInvalidatedWhileLoading(t *testing.T) {
	f, clk := newFakeStore(), newClock()
	f.recs["a"] = rec("a")
	f.gate, f.enter = make(chan struct{}), make(chan struct{})
	c := newTestCache(f, clk, nil)

	done := make(chan error)
	go func() { _, err := c.Load(context.Background(), "a"); done <- err }()
	<-f.enter // the load has read the old record's generation
	c.Invalidate("a")
	close(f.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeStore) { f.gate = nil })
	if _, err := c.Load(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if n := f.count(); n != 2 {
		t.Errorf("store loads = %d, want 2: a load that raced an invalidation must not be served as fresh", n)
	}
}

func TestCacheBounds(t *testing.T) {
	f, clk := newFakeStore(), newClock()
	c := newTestCache(f, clk, nil)
	c.cfg.MaxEntries = 10
	for i := range 20 {
		id := fmt.Sprint("r", i)
		f.recs[id] = rec(id)
		if _, err := c.Load(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.entries) != 10 {
		t.Errorf("entries = %d, want the bound 10", len(c.entries))
	}
	for i := range 1000 {
		if _, err := c.Load(context.Background(), fmt.Sprint("unknown", i)); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if len(c.negative) != 10 || len(c.entries) != 10 {
		t.Errorf("after a flood of unknown ids: negative = %d, entries = %d; want 10 and 10", len(c.negative), len(c.entries))
	}
}

func TestCacheConcurrent(t *testing.T) {
	f, clk := newFakeStore(), newClock()
	f.recs["a"] = rec("a")
	c := newTestCache(f, clk, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				if _, err := c.Load(context.Background(), "a"); err != nil {
					t.Error(err)
				}
				if j%50 == i {
					c.Invalidate("a")
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkCacheHit(b *testing.B) {
	f := newFakeStore()
	f.recs["gh-pr-review-42"] = rec("gh-pr-review-42")
	c := NewCache(f, CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour, StaleTTL: time.Hour, MaxEntries: 10})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Load(ctx, "gh-pr-review-42"); err != nil {
			b.Fatal(err)
		}
	}
}
