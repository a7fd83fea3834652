package testenv

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
)

// Caddy is a Caddy server running in the test's process.
type Caddy struct {
	// URL is the base URL of the site, such as http://127.0.0.1:34567.
	URL string
	// LogPath is the file Caddy writes all its logs to, at debug level.
	LogPath string
	// Client has short timeouts and no redirects.
	Client *http.Client
	// Config is the whole Caddyfile loaded.
	Config string
}

// withAdmin turns the admin endpoint off unless a global line configures it.
func withAdmin(global []string) []string {
	for _, line := range global {
		if strings.HasPrefix(strings.TrimSpace(line), "admin") {
			return global
		}
	}
	return append([]string{"admin off"}, global...)
}

// StartCaddy serves site (the body of a site block, in Caddyfile syntax) on
// a free loopback port in this process, logging to a file at debug level,
// and stops it when the test ends. extraGlobal lines go into the global
// options block; without an "admin" line the admin endpoint is off. Only
// one Caddy runs in a process at a time: the tests that use it must not be
// parallel.
func StartCaddy(t testing.TB, site string, extraGlobal ...string) *Caddy {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := &Caddy{
		URL:     fmt.Sprintf("http://127.0.0.1:%d", port),
		LogPath: filepath.Join(t.TempDir(), "caddy.log"),
		Client: &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	c.Config = fmt.Sprintf(`{
	persist_config off
	auto_https off
	grace_period 5s
	log {
		output file %s
		format json
		level DEBUG
	}
	%s
}

%s {
	%s
}
`, c.LogPath, strings.Join(withAdmin(extraGlobal), "\n\t"), c.URL, site)
	LoadCaddyfile(t, c.Config)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return c
}

// LoadCaddyfile adapts and loads a whole Caddyfile, failing the test on error.
func LoadCaddyfile(t testing.TB, cfg string) {
	t.Helper()
	if err := TryLoadCaddyfile(cfg); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
}

// TryLoadCaddyfile adapts and loads a whole Caddyfile.
func TryLoadCaddyfile(cfg string) error {
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return err
	}
	return caddy.Load(js, true)
}

// Logs returns what Caddy has logged so far.
func (c *Caddy) Logs(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(c.LogPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Post sends body to path with the given header lines ("Name: value") and
// returns the status, headers and body of the answer.
func (c *Caddy) Post(t testing.TB, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	return c.Do(t, http.MethodPost, path, body, headers...)
}

// Do sends a request and returns the status, headers and body of the answer.
func (c *Caddy) Do(t testing.TB, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("header %q is not Name: value", h)
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// WriteFile replaces path with data the way editors and config management
// do: written beside it, then renamed over it.
func WriteFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
