package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Sentinel is a master, a replica and one Sentinel that watches them
// (quorum 1, the master judged down after 500ms), all on loopback ports.
type Sentinel struct {
	Master, Replica *Redis
	// Addr is the Sentinel's host:port.
	Addr string
	// MasterName is the name the Sentinel monitors the master under.
	MasterName string
}

// StartRedisSentinel starts a replicated pair and a Sentinel, and returns
// once the replica is in sync and the Sentinel knows both.
func StartRedisSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: "testmaster"}
	s.Master = StartRedis(t)
	s.Replica = startRedis(t, &Redis{t: t, dir: t.TempDir(), extra: []string{
		"--replicaof", "127.0.0.1", strings.TrimPrefix(s.Master.Addr, "127.0.0.1:"),
	}})
	waitInfo(t, s.Replica, "replication", "master_link_status:up")

	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`sentinel monitor %s 127.0.0.1 %s 1
sentinel down-after-milliseconds %s 500
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, s.MasterName, strings.TrimPrefix(s.Master.Addr, "127.0.0.1:"), s.MasterName, s.MasterName, s.MasterName)), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := startRedis(t, &Redis{t: t, dir: dir, conf: conf, extra: []string{"--sentinel"}})
	s.Addr = sentinel.Addr
	waitInfo(t, sentinel, "sentinel", "slaves=1")
	return s
}

// waitInfo waits until INFO section of r holds want.
func waitInfo(t testing.TB, r *Redis, section, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := r.Client.Info(context.Background(), section).Result()
		if err == nil && strings.Contains(info, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: INFO %s never showed %q: %v\n%s", r.Addr, section, want, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitPromoted waits until the replica has become the master.
func (s *Sentinel) WaitPromoted(t testing.TB) {
	t.Helper()
	waitInfo(t, s.Replica, "replication", "role:master")
}
