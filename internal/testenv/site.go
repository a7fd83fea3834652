package testenv

import (
	"fmt"
	"strings"
)

// WebhooksPath is the route prefix of the test sites: CodeMie's public
// webhook path.
const WebhooksPath = "/code-assistant-api/v1/webhooks/"

// Site is the Caddyfile of a test server: the codemie_webhooks handler on
// WebhooksPath, and Caddy's metrics at /metrics. It is the one builder of
// the module tests' sites.
type Site struct {
	// Store is the store option: "redis <addr>" or "integrations_file <path>".
	Store string
	// Upstream is the upstream's URL.
	Upstream string
	// UpstreamBlock is the inside of the upstream's block, if any.
	UpstreamBlock string
	// Options are more options of the handler, each a line or a block.
	Options []string
}

// RedisSite is a Site on the Redis at addr, in front of the CodeMie API at
// apiURL, with options.
func RedisSite(addr, apiURL string, options ...string) Site {
	return Site{Store: "redis " + addr, Upstream: apiURL, Options: options}
}

// String returns the Caddyfile, for StartCaddy.
func (s Site) String() string {
	upstream := s.Upstream
	if s.UpstreamBlock != "" {
		upstream += " {\n" + s.UpstreamBlock + "\n}"
	}
	return fmt.Sprintf(`
	route %s* {
		codemie_webhooks {
			%s
			upstream %s
			%s
		}
	}
	handle /metrics {
		metrics
	}`, WebhooksPath, s.Store, upstream, strings.Join(s.Options, "\n"))
}
