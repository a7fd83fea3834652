package testenv

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters on loopback ports.
type Cluster struct {
	// Addrs are the masters' host:port addresses.
	Addrs []string
	// Client is a cluster client connected to them.
	Client *redis.ClusterClient
}

// StartRedisCluster starts three cluster-enabled redis-servers, joins them
// with redis-cli --cluster create, and returns once every node reports the
// cluster ok. Everything is stopped when the test ends.
func StartRedisCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	for range 3 {
		r := startRedis(t, &Redis{t: t, dir: t.TempDir(), extra: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
		}})
		c.Addrs = append(c.Addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range c.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := node.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok: %v %s", addr, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = node.Close()
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = c.Client.Close() })
	return c
}

// Slot is the cluster slot of key, as Redis computes it.
func (c *Cluster) Slot(t testing.TB, key string) int64 {
	t.Helper()
	n, err := c.Client.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// hostPort joins a loopback host and port.
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
