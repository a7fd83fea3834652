package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// runCaddyEnv, when set, makes the test binary run Caddy instead of tests.
const runCaddyEnv = "CODEMIE_WEBHOOKS_TEST_RUN_CADDY"

// RunCaddyIfAsked runs Caddy's command line (and never returns) when the
// test binary was started by StartCaddyProcess. Call it first in TestMain:
// the test binary, with every module it imports, is then the Caddy to run.
func RunCaddyIfAsked() {
	if os.Getenv(runCaddyEnv) == "1" {
		caddycmd.Main()
		os.Exit(0)
	}
}

// CaddyProcess is Caddy in a process of its own, which a test can kill.
type CaddyProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
	// LogPath holds the process's output.
	LogPath string
}

// StartCaddyProcess runs the test binary as Caddy (see RunCaddyIfAsked)
// with caddyfile, and returns once addr accepts connections. The process
// is killed when the test ends.
func StartCaddyProcess(t testing.TB, caddyfile, addr string) *CaddyProcess {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &CaddyProcess{LogPath: filepath.Join(dir, "caddy.out"), exited: make(chan struct{})}
	out, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(os.Args[0], "run", "--config", cfg, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), runCaddyEnv+"=1", "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); _ = out.Close(); close(p.exited) }()
	t.Cleanup(p.Kill)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return p
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.LogPath)
			t.Fatalf("caddy process exited: %s", b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("caddy process did not listen on %s", addr))
		}
	}
}

// Kill sends SIGKILL, like a crash, and waits for the process to exit.
func (p *CaddyProcess) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// RunCaddyCommand runs the test binary as the caddy command with args (see
// RunCaddyIfAsked), stdin as its input and env added to its environment,
// and returns its output and exit status.
func RunCaddyCommand(t testing.TB, stdin string, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runCaddyEnv+"=1"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), status
}
