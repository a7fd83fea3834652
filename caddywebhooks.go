// Package caddywebhooks is a Caddy plugin that is the edge for CodeMie
// webhooks: it loads each webhook's integration, enforces at the edge what
// the integration asks for, and triggers the CodeMie assistant, workflow or
// datasource it names.
//
// Build Caddy with it from a checkout (`make build` reads xcaddy.json):
//
//	xcaddy build v2.11.9 --with github.com/codemie-edge/caddy-webhooks@v0.0.0-00010101000000-000000000000=.
//
// This package only registers the plugin's modules and Caddyfile directive.
package caddywebhooks

import (
	_ "github.com/codemie-edge/caddy-webhooks/caddyfile"
	_ "github.com/codemie-edge/caddy-webhooks/module"
)
