// Package testenv starts what tests talk to over real connections: a
// redis-server of their own on a free loopback port, killed when the test
// ends, so tests never share state and can stop it for fault tests.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server started for one test.
type Redis struct {
	// Addr is host:port of the server.
	Addr string
	// Client is connected to the server.
	Client *redis.Client

	t          testing.TB
	persistent bool
	extra      []string // more redis-server arguments
	conf       string   // a config file to start with, for a Sentinel
	port       int
	dir        string
	cmd        *exec.Cmd
	exited     chan struct{} // closed when cmd has exited
	log        *bytes.Buffer
}

// StartRedis starts a redis-server on a free loopback port and returns once
// it answers PING. The server and client are closed when the test ends.
// The test fails (it never skips) when redis-server cannot be started.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, &Redis{t: t, dir: t.TempDir()})
}

// StartPersistentRedis is StartRedis with an append-only file synced on
// every write: a Restart, even after a SIGKILL, keeps every acknowledged
// write.
func StartPersistentRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, &Redis{t: t, dir: t.TempDir(), persistent: true})
}

// LaunchRedis starts a redis-server keeping its files in dir, on a free
// loopback port, for a program that is not a test (the benchmarks): Close
// it when done.
func LaunchRedis(dir string) (*Redis, error) {
	r := &Redis{dir: dir}
	if err := r.launch(); err != nil {
		return nil, err
	}
	return r, nil
}

func startRedis(t testing.TB, r *Redis) *Redis {
	t.Helper()
	if err := r.launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// launch starts the server on a free port and connects Client.
func (r *Redis) launch() error {
	var err error
	for range 5 { // a free port may be taken between probing and binding
		if r.port, err = FreePort(); err != nil {
			return err
		}
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("starting redis-server: %v", err)
	}
	r.Addr = hostPort(r.port)
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr})
	return nil
}

// Close closes the client and stops the server.
func (r *Redis) Close() {
	_ = r.Client.Close()
	r.Stop()
}

// start runs the server on r.port and waits until it answers.
func (r *Redis) start() error {
	r.log = new(bytes.Buffer)
	aof := []string{"--appendonly", "no"}
	if r.persistent {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", r.dir, "--protected-mode", "no", "--loglevel", "warning",
		"--enable-debug-command", "local"}, aof...) // DEBUG SLEEP stalls it in fault tests
	args = append(args, r.extra...)
	if r.conf != "" {
		args = append([]string{r.conf}, args...)
	}
	r.cmd = exec.Command("redis-server", args...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		return err
	}
	cmd, exited := r.cmd, make(chan struct{})
	r.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitPing(hostPort(r.port), exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%v; server output: %s", err, r.log)
	}
	return nil
}

// waitPing waits until the server at addr answers PING, or the process exits,
// or 10 seconds pass.
func waitPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 100*time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited")
		case <-time.After(backoff):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING: %v", err)
		}
	}
}

// Stop kills the server (SIGKILL: nothing is flushed, like a crash) and
// waits until it has exited, so its port no longer accepts connections.
func (r *Redis) Stop() {
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// Restart starts the server again on the same port: empty, or for a
// persistent server with everything it had acknowledged.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.t.Fatalf("restarting redis-server: %v", err)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
