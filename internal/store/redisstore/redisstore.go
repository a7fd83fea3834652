// Package redisstore loads integrations from Redis hashes and learns of
// changes through a Redis channel.
//
// Layout, for a key prefix P (default "codemie:webhooks:"):
//
//	P{<id>}    HASH   the record, with the contract's field names
//	Pchanged   PUBSUB the id of every record written or deleted
//
// The braces make {<id>} the key's hash tag, so a Redis Cluster keeps every
// key of one webhook on one slot.
package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
)

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "codemie:webhooks:"

// Store is a store.Store and store.Watcher over Redis.
type Store struct {
	client redis.UniversalClient
	prefix string
	logger *zap.Logger
}

// New returns a store reading keys under prefix through client.
func New(client redis.UniversalClient, prefix string, logger *zap.Logger) *Store {
	return &Store{client: client, prefix: prefix, logger: logger}
}

// Key returns the key of the record of webhook id.
func Key(prefix, id string) string { return prefix + "{" + id + "}" }

// Channel returns the channel that announces changed records.
func Channel(prefix string) string { return prefix + "changed" }

// Load implements store.Store with one HGETALL.
func (s *Store) Load(ctx context.Context, id string) (*integration.Integration, error) {
	fields, err := s.client.HGetAll(ctx, Key(s.prefix, id)).Result()
	switch {
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &integration.FieldError{ID: id, Field: "(key)", Reason: "the key does not hold a hash"}
	case err != nil:
		return nil, fmt.Errorf("loading integration %q: %w", id, err)
	case len(fields) == 0:
		return nil, store.ErrNotFound
	}
	return integration.Decode(id, fields)
}

// Watch implements store.Watcher: it subscribes to the changed channel and
// calls changed for every id published there. Every (re)subscription calls
// all, since messages published while disconnected are lost.
func (s *Store) Watch(ctx context.Context, changed func(id string), all func()) {
	ps := s.client.Subscribe(ctx, Channel(s.prefix))
	defer ps.Close()
	// Receive does not return on a cancelled context by itself.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.logger.Warn("integration change subscription interrupted; retrying", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			all()
		case *redis.Message:
			if integration.ValidID(m.Payload) {
				changed(m.Payload)
			} else {
				all()
			}
		}
	}
}
