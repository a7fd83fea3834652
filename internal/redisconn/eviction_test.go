package redisconn

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// setPolicy sets a server's maxmemory and maxmemory-policy.
func setPolicy(t *testing.T, node *redis.Client, maxmemory, policy string) {
	t.Helper()
	ctx := context.Background()
	if err := node.ConfigSet(ctx, "maxmemory", maxmemory).Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestEvictionsOfOneServer(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := Config{Addrs: []string{r.Addr}}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, tc := range []struct {
		maxmemory, policy string
		want              Eviction
		any, expiring     bool
	}{
		{"0", "noeviction", Eviction{Server: r.Addr, Policy: "noeviction"}, false, false},
		{"64mb", "allkeys-lru", Eviction{Server: r.Addr, Policy: "allkeys-lru", MaxMemory: 64 << 20}, true, false},
		{"0", "allkeys-random", Eviction{Server: r.Addr, Policy: "allkeys-random"}, true, false},
		{"1gb", "volatile-ttl", Eviction{Server: r.Addr, Policy: "volatile-ttl", MaxMemory: 1 << 30}, false, true},
		{"1gb", "noeviction", Eviction{Server: r.Addr, Policy: "noeviction", MaxMemory: 1 << 30}, false, false},
	} {
		setPolicy(t, r.Client, tc.maxmemory, tc.policy)
		got, err := cfg.Evictions(context.Background(), client)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s %s: got %+v, want %+v", tc.maxmemory, tc.policy, got, tc.want)
			continue
		}
		if got[0].EvictsAny() != tc.any || got[0].EvictsExpiring() != tc.expiring {
			t.Errorf("%s: EvictsAny %v, EvictsExpiring %v", tc.policy, got[0].EvictsAny(), got[0].EvictsExpiring())
		}
	}
}

// TestEvictionsOfEachMaster: in a cluster every master has its own
// policy, and one that evicts is named.
func TestEvictionsOfEachMaster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	cfg := Config{Addrs: c.Addrs}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	node := redis.NewClient(&redis.Options{Addr: c.Addrs[1]})
	defer node.Close()
	setPolicy(t, node, "128mb", "allkeys-lfu")

	got, err := cfg.Evictions(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	want := []Eviction{{Server: c.Addrs[0], Policy: "noeviction"}, {Server: c.Addrs[1], Policy: "allkeys-lfu", MaxMemory: 128 << 20},
		{Server: c.Addrs[2], Policy: "noeviction"}}
	slices.SortFunc(want, func(a, b Eviction) int { return strings.Compare(a.Server, b.Server) })
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestEvictionsBehindSentinels reads the master's policy, named by the
// master's name.
func TestEvictionsBehindSentinels(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	cfg := Config{Addrs: []string{s.Addr}, MasterName: s.MasterName}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	setPolicy(t, s.Master.Client, "0", "volatile-lru")

	got, err := cfg.Evictions(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	want := Eviction{Server: "sentinel master " + s.MasterName, Policy: "volatile-lru"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestEvictionsUnreachable reports the error and no server.
func TestEvictionsUnreachable(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := Config{Addrs: []string{r.Addr}}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r.Stop()
	if got, err := cfg.Evictions(context.Background(), client); err == nil || got != nil {
		t.Errorf("a stopped server: %+v, %v", got, err)
	}
}
