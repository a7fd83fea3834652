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
	// Server names the server: its address; behind Sentinels, the
	// Sentinels' addresses and the master's name.
	Server string
	// Policy is its maxmemory-policy.
	Policy string
	// MaxMemory is its maxmemory, in bytes; 0: no limit, so nothing is
	// evicted whatever the policy.
	MaxMemory int64
	// Err says why the server could not be read (Policy is then empty):
	// down, or a user not allowed INFO.
	Err error
}

// EvictsAny reports whether the policy may evict any key (allkeys-*): a
// queue's stream, an integration, a dead letter.
func (e Eviction) EvictsAny() bool { return strings.HasPrefix(e.Policy, "allkeys-") }

// EvictsExpiring reports whether the policy may evict the keys that have a
// time to live (volatile-*): replay markers, rate-limit counters.
func (e Eviction) EvictsExpiring() bool { return strings.HasPrefix(e.Policy, "volatile-") }

// Same reports whether e and o say the same of the same server (any two
// errors are the same).
func (e Eviction) Same(o Eviction) bool {
	return e.Server == o.Server && e.Policy == o.Policy && e.MaxMemory == o.MaxMemory && (e.Err == nil) == (o.Err == nil)
}

// Evictions reads how every server taking client's writes evicts: the one
// node, the master behind the Sentinels, or each master of a cluster,
// ordered by Server; a server that cannot be read has its Err. client is
// the one Acquire or NewClient gave for c.
func (c Config) Evictions(ctx context.Context, client redis.UniversalClient) []Eviction {
	cluster, ok := client.(*redis.ClusterClient)
	if !ok {
		e := readEviction(ctx, client)
		e.Server = c.server()
		return []Eviction{e}
	}
	var (
		mu  sync.Mutex
		all []Eviction
	)
	err := cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		e := readEviction(ctx, node)
		e.Server = node.Options().Addr
		mu.Lock()
		all = append(all, e)
		mu.Unlock()
		return nil // the other masters are read all the same
	})
	if err != nil { // no master is known
		return []Eviction{{Server: c.server(), Err: err}}
	}
	slices.SortFunc(all, func(a, b Eviction) int { return strings.Compare(a.Server, b.Server) })
	return all
}

// server names what c reaches: the node, the Sentinels' master, or the
// cluster's entry points.
func (c Config) server() string {
	addrs := strings.Join(c.options().Addrs, ",")
	if c.MasterName != "" {
		return "sentinel " + addrs + " master " + c.MasterName
	}
	return addrs
}

// readEviction reads the policy and limit from one server's INFO memory.
func readEviction(ctx context.Context, node redis.Cmdable) Eviction {
	info, err := node.Info(ctx, "memory").Result()
	if err != nil {
		return Eviction{Err: fmt.Errorf("reading INFO memory: %w", err)}
	}
	var e Eviction
	for line := range strings.Lines(info) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch name {
		case "maxmemory_policy":
			e.Policy = value
		case "maxmemory":
			if e.MaxMemory, err = strconv.ParseInt(value, 10, 64); err != nil {
				return Eviction{Err: fmt.Errorf("INFO memory: maxmemory %q: %v", value, err)}
			}
		}
	}
	if e.Policy == "" {
		return Eviction{Err: fmt.Errorf("INFO memory has no maxmemory_policy")}
	}
	return e
}
