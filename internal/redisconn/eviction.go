package redisconn

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Eviction is how one Redis server that takes writes frees memory when it
// is full, as its INFO memory says.
type Eviction struct {
	// Server names the server: its address, or, behind Sentinels, the
	// master's name.
	Server string
	// Policy is its maxmemory-policy.
	Policy string
	// MaxMemory is its maxmemory, in bytes; 0: no limit, so nothing is
	// evicted whatever the policy.
	MaxMemory int64
}

// EvictsAny reports whether the policy may evict any key (allkeys-*): a
// queue's stream, an integration, a dead letter.
func (e Eviction) EvictsAny() bool { return strings.HasPrefix(e.Policy, "allkeys-") }

// EvictsExpiring reports whether the policy may evict the keys that have a
// time to live (volatile-*): replay markers, rate-limit counters.
func (e Eviction) EvictsExpiring() bool { return strings.HasPrefix(e.Policy, "volatile-") }

// Evictions reads how every server taking client's writes evicts: the one
// node, the master behind the Sentinels, or each master of a cluster,
// ordered by Server. client is the one Acquire or NewClient gave for c.
func (c Config) Evictions(ctx context.Context, client redis.UniversalClient) ([]Eviction, error) {
	cluster, ok := client.(*redis.ClusterClient)
	if !ok {
		e, err := readEviction(ctx, client)
		if err != nil {
			return nil, err
		}
		e.Server = c.server()
		return []Eviction{e}, nil
	}
	var (
		mu  sync.Mutex
		all []Eviction
	)
	err := cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		e, err := readEviction(ctx, node)
		if err != nil {
			return fmt.Errorf("%s: %w", node.Options().Addr, err)
		}
		e.Server = node.Options().Addr
		mu.Lock()
		all = append(all, e)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b Eviction) int { return strings.Compare(a.Server, b.Server) })
	return all, nil
}

// server names the one server c reaches when it is not a cluster.
func (c Config) server() string {
	switch {
	case c.MasterName != "":
		return "sentinel master " + c.MasterName
	case len(c.Addrs) > 0:
		return c.Addrs[0]
	}
	return c.options().Addrs[0]
}

// readEviction reads the policy and limit from one server's INFO memory.
func readEviction(ctx context.Context, node redis.Cmdable) (Eviction, error) {
	info, err := node.Info(ctx, "memory").Result()
	if err != nil {
		return Eviction{}, fmt.Errorf("reading INFO memory: %w", err)
	}
	var e Eviction
	for line := range strings.Lines(info) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch name {
		case "maxmemory_policy":
			e.Policy = value
		case "maxmemory":
			if e.MaxMemory, err = strconv.ParseInt(value, 10, 64); err != nil {
				return Eviction{}, fmt.Errorf("INFO memory: maxmemory %q: %v", value, err)
			}
		}
	}
	if e.Policy == "" {
		return Eviction{}, fmt.Errorf("INFO memory has no maxmemory_policy")
	}
	return e, nil
}
