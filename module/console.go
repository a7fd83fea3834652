package module

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/codemie-edge/caddy-webhooks/internal/console"
	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/history"
)

func init() {
	caddy.RegisterModule(Console{})
	httpcaddyfile.RegisterHandlerDirective("codemie_webhooks_console", parseConsole)
	httpcaddyfile.RegisterDirectiveOrder("codemie_webhooks_console", httpcaddyfile.Before, "respond")
}

// consoleToken is the CSRF token of this process's console pages: the
// page carries it, and its POSTs must send it back. A page from another
// site cannot read it.
var consoleToken = rand.Text()

// consoleSources finds the queue and the log of key prefix prefix (the
// only ones when it is empty) among the loaded configurations'.
type consoleSources struct{ prefix string }

func (s consoleSources) Queue() (*delivery.Queue, error) {
	q, err := queues.get(s.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", console.ErrNone, err)
	}
	return q, nil
}

func (s consoleSources) Log() (*history.Log, error) {
	l, err := logs.get(s.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", console.ErrNone, err)
	}
	return l, nil
}

// Console serves the deliveries console inside a site, for an operator to
// put behind the site's own authentication (basic_auth, forward_auth):
//
//	handle_path /webhooks-console/* {
//		basic_auth { ops <hash> }
//		codemie_webhooks_console
//	}
//
// The console is then at /webhooks-console/ (the trailing slash matters:
// its pages and API are relative to it). Caddy's admin endpoint cannot
// serve it: it refuses a browser's navigation.
type Console struct {
	// KeyPrefix names the queue and the delivery log to show, by the
	// key prefix of the handler that keeps them. Default: the only one.
	KeyPrefix string `json:"key_prefix,omitempty"`

	console *console.Console
	servers *sync.Map // *http.Server whose shutdown closes the console
}

// CaddyModule returns the Caddy module information.
func (Console) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.codemie_webhooks_console",
		New: func() caddy.Module { return new(Console) },
	}
}

// Provision builds the console.
func (c *Console) Provision(caddy.Context) error {
	c.console = console.New(consoleSources{c.KeyPrefix}, consoleToken)
	c.servers = new(sync.Map)
	return nil
}

// Cleanup ends the console's events streams.
func (c *Console) Cleanup() error {
	c.console.Close()
	return nil
}

// ServeHTTP serves the console; the request's path is relative to where
// the console is mounted (handle_path strips the mount point). It never
// calls next.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// A shutdown waits for requests to end: the streams must. (Caddy's
	// own RegisterOnShutdown is read once, when the server starts.)
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		if _, seen := c.servers.LoadOrStore(srv, true); !seen {
			srv.RegisterOnShutdown(c.console.Close)
		}
	}
	err := c.console.Serve(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	if err == nil {
		return nil
	}
	status := http.StatusInternalServerError
	if ce, ok := errors.AsType[*console.Error](err); ok {
		status = ce.Status
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// UnmarshalCaddyfile reads
//
//	codemie_webhooks_console [<key prefix>]
func (c *Console) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	args := d.RemainingArgs()
	if len(args) > 1 {
		return d.ArgErr()
	}
	if len(args) == 1 {
		c.KeyPrefix = args[0]
	}
	if d.NextBlock(0) {
		return d.Err("codemie_webhooks_console takes no block")
	}
	return nil
}

func parseConsole(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Console)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Console)(nil)
	_ caddy.CleanerUpper          = (*Console)(nil)
	_ caddyhttp.MiddlewareHandler = (*Console)(nil)
	_ caddyfile.Unmarshaler       = (*Console)(nil)
)
