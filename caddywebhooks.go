// Package caddywebhooks is a Caddy plugin that is the edge for CodeMie
// webhooks: it loads each webhook's integration, enforces at the edge what
// the integration asks for, and triggers the CodeMie assistant, workflow or
// datasource it names.
//
// Build Caddy with it:
//
//	xcaddy build --with github.com/codemie-edge/caddy-webhooks
//
// This package only registers the plugin's modules and Caddyfile directive.
package caddywebhooks

import (
	_ "github.com/codemie-edge/caddy-webhooks/caddyfile"
	_ "github.com/codemie-edge/caddy-webhooks/module"
)
