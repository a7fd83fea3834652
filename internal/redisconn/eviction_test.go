package redisconn

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// setPolicy sets a server's maxmemory and maxmemory-policy, in one step.
func setPolicy(t *testing.T, node *redis.Client, maxmemory, policy string) {
	t.Helper()
	if err := node.Do(context.Background(), "CONFIG", "SET", "maxmemory", maxmemory, "maxmemory-policy", policy).Err(); err != nil {
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
		got := cfg.Evictions(context.Background(), client)
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
// policy, and one that evicts is named; a master that is down is named
// with its error, and the others are read all the same.
func TestEvictionsOfEachMaster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	cfg := Config{Addrs: c.Addrs}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	nodes := make([]*redis.Client, len(c.Addrs))
	for i, addr := range c.Addrs {
		nodes[i] = redis.NewClient(&redis.Options{Addr: addr})
		defer nodes[i].Close()
	}
	setPolicy(t, nodes[1], "128mb", "allkeys-lfu")

	byServer := func() map[string]Eviction {
		all := map[string]Eviction{}
		for _, e := range cfg.Evictions(ctx, client) {
			all[e.Server] = e
		}
		return all
	}
	got := byServer()
	want := map[string]Eviction{c.Addrs[0]: {Server: c.Addrs[0], Policy: "noeviction"},
		c.Addrs[1]: {Server: c.Addrs[1], Policy: "allkeys-lfu", MaxMemory: 128 << 20}, c.Addrs[2]: {Server: c.Addrs[2], Policy: "noeviction"}}
	if !maps.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	_ = nodes[2].ShutdownNoSave(ctx).Err() // its connection ends with it
	got = byServer()
	if down := got[c.Addrs[2]]; down.Err == nil || down.Policy != "" {
		t.Errorf("the master that is down: %+v", down)
	}
	if got[c.Addrs[1]] != want[c.Addrs[1]] || len(got) != 3 {
		t.Errorf("beside a master that is down: %+v", got)
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

	got := cfg.Evictions(context.Background(), client)
	want := Eviction{Server: "sentinel " + s.Addr + " master " + s.MasterName, Policy: "volatile-lru"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestEvictionsUnreadable: a server that is down, or that refuses INFO to
// the user, is named with its error.
func TestEvictionsUnreadable(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "edge", "on", ">edge-password", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		stop bool
		want string
	}{
		{"no INFO for the user", Config{Addrs: []string{r.Addr}, Username: "edge", Password: "edge-password"}, false, "NOPERM"},
		{"down", Config{Addrs: []string{r.Addr}}, true, "refused"},
	} {
		client, err := NewClient(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if tc.stop {
			r.Stop()
		}
		got := tc.cfg.Evictions(ctx, client)
		_ = client.Close()
		if len(got) != 1 || got[0].Server != r.Addr || got[0].Err == nil || !strings.Contains(got[0].Err.Error(), tc.want) {
			t.Errorf("%s: %+v", tc.name, got)
		} else if strings.Contains(got[0].Err.Error(), "edge-password") {
			t.Errorf("%s: the password in %v", tc.name, got[0].Err)
		}
	}
}
