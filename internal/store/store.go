// Package store loads webhook integrations. A Store is where records live
// (Redis, or a JSON file); a Cache in front of one keeps them in memory,
// remembers unknown ids for a while, drops records that changed, and keeps
// serving the last good copy while the store cannot be reached.
package store

import (
	"context"
	"errors"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// ErrNotFound says that no integration has the requested id.
var ErrNotFound = errors.New("integration not found")

// Store loads integration records.
type Store interface {
	// Load returns the integration with the given id; ErrNotFound when there
	// is none; an error for which integration.IsMalformed is true when the
	// record cannot be decoded; or another error when the store cannot be
	// reached. The returned record must not be modified.
	Load(ctx context.Context, id string) (*integration.Integration, error)
}

// Watcher is a Store that learns when records change.
type Watcher interface {
	// Watch runs until ctx is done. It calls changed with the id of every
	// record written or deleted, and all whenever changes may have been
	// missed (on every (re)connection, or a file re-read).
	Watch(ctx context.Context, changed func(id string), all func())
}
