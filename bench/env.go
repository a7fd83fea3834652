package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// benchSecret signs the load's payloads.
const benchSecret = "a-webhook-secret-of-usual-length"

// env is what the load runs against: Redis, the stub upstream, and the
// Caddy processes.
type env struct {
	dir     string
	redis   *testenv.Redis
	rdb     *redis.Client
	redisAt string
	stub    *http.Server
	stubAt  string
	// slowAt is the slow stub of the dispatch section, and workers the
	// workers option of its instance (0: the default).
	slowAt  string
	workers int
	caddies []*exec.Cmd
	body    []byte
	sig     string
	// admins are the admin endpoints of the configurations, when profiling.
	admins  map[string]string
	profile bool
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	port, err := testenv.FreePort()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), err
}

// waitListening waits until addr accepts connections.
func waitListening(addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			return c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func startEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "codemie-webhooks-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	if e.redis, err = testenv.LaunchRedis(dir); err != nil {
		return nil, err
	}
	e.rdb, e.redisAt = e.redis.Client, e.redis.Addr

	if e.stubAt, err = freeAddr(); err != nil {
		return nil, err
	}
	e.stub = &http.Server{Addr: e.stubAt, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"execution_id":"bench"}`))
	})}
	go func() { _ = e.stub.ListenAndServe() }()
	if err := waitListening(e.stubAt); err != nil {
		return nil, err
	}

	e.body = append([]byte(`{"action":"opened","pad":"`), make([]byte, 1024-29)...)
	for i := 26; i < len(e.body); i++ {
		e.body[i] = 'x'
	}
	e.body = append(e.body, `"}`...)
	e.sig = testenv.SignGitHub256(benchSecret, string(e.body))
	for _, l := range configurations {
		err := e.rdb.HSet(context.Background(), space(l).Record("bench"), "is_enabled", "true",
			"resource_type", "workflow", "resource_id", "wf-1", "github_webhook_secret", benchSecret,
			"github_event_filter", "push,pull_request.opened").Err()
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// prefix is the key prefix of configuration l.
func prefix(l string) string { return "bench-" + l + ":" }

// space is the Redis key space of configuration l.
func space(l string) keyspace.Space { return keyspace.Space{Prefix: prefix(l)} }

func (e *env) stop() {
	for _, c := range e.caddies {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	if e.stub != nil {
		_ = e.stub.Close()
	}
	if e.redis != nil {
		e.redis.Close()
	}
	_ = os.RemoveAll(e.dir)
}

// site is one of the configurations, by letter.
func (e *env) site(letter string) string {
	// Each configuration has a key prefix of its own, so that one's
	// workers never take another's webhooks. The rate limit counts every
	// request, as in production, against a limit the load never reaches.
	edge := func(extra string) string {
		return fmt.Sprintf("codemie_webhooks {\n\t\t\tredis %s {\n\t\t\t\tkey_prefix %s\n\t\t\t}\n\t\t\trate_limit 1000000000 1m\n\t\t\tupstream http://%s\n\t\t\t%s\n\t\t}",
			e.redisAt, prefix(letter), e.stubAt, extra)
	}
	switch letter {
	case "a":
		return "respond 200"
	case "b":
		return "reverse_proxy " + e.stubAt
	case "c":
		return edge("")
	case "c0":
		return edge("workers off")
	case "w":
		workers := ""
		if e.workers > 0 {
			workers = "workers " + strconv.Itoa(e.workers)
		}
		return strings.Replace(edge(workers), "upstream http://"+e.stubAt, "upstream http://"+e.slowAt, 1)
	}
	return edge("delivery sync")
}

// startCaddy runs this binary as Caddy serving configuration letter, and
// returns its address and process.
func (e *env) startCaddy(letter string) (string, *exec.Cmd, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	admin := "off"
	if e.profile {
		a, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		admin, e.admins[letter] = a, a
	}
	cfg := fmt.Sprintf(`{
	admin %s
	auto_https off
	persist_config off
	log {
		level ERROR
	}
}
http://%s {
	route /code-assistant-api/v1/webhooks/* {
		%s
	}
}
`, admin, addr, e.site(letter))
	path := filepath.Join(e.dir, "Caddyfile."+letter+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "caddy", "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+e.dir, "XDG_CONFIG_HOME="+e.dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	e.caddies = append(e.caddies, cmd)
	return addr, cmd, waitListening(addr)
}

// rss reads a process's resident memory, in bytes.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// clockTicks is the unit of /proc/<pid>/stat's times, per second
// (sysconf(_SC_CLK_TCK): 100 on Linux).
const clockTicks = 100

// processTicks is a process's user and system time, in clock ticks, or 0
// when it cannot be read.
func processTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command's name in parentheses: state is field 3, utime 14
	// and stime 15.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	system, _ := strconv.ParseInt(f[12], 10, 64)
	return user + system
}

// redisPid is the process id of the bench's redis-server.
func (e *env) redisPid() (int, error) {
	info, err := e.rdb.Info(context.Background(), "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("redis-server did not say its process id")
}

// readsStat is the key under which commandCalls returns the reads Redis
// made from its clients' connections.
const readsStat = "total_reads_processed"

// commandCalls reads INFO commandstats, calls per command, and INFO
// stats' total_reads_processed.
func (e *env) commandCalls() (map[string]int64, error) {
	info, err := e.rdb.Info(context.Background(), "commandstats", "stats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, readsStat+":"); ok {
			out[readsStat], _ = strconv.ParseInt(v, 10, 64)
			continue
		}
		name, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out, nil
}
