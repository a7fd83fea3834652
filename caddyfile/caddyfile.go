// Package caddyfile registers the codemie_webhooks Caddyfile directive: its
// name and its place in the order of directives. The handler parses its
// own block (module.Handler.UnmarshalCaddyfile); the golden adapt tests of
// the directive live here.
package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/codemie-edge/caddy-webhooks/module"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("codemie_webhooks", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("codemie_webhooks", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var wh module.Handler
	err := wh.UnmarshalCaddyfile(h.Dispenser)
	return &wh, err
}
