// Package redisstore loads integrations from Redis hashes and learns of
// changes through a Redis channel: the keys keyspace.Space.Record and the
// channel keyspace.Space.Changed.
package redisstore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
)

// Store is a store.Store and store.Watcher over Redis.
type Store struct {
	client redis.UniversalClient
	space  keyspace.Space
	keys   *seal.Keys
	logger *zap.Logger
}

// New returns a store reading the records of space through client, opening
// encrypted secrets with keys.
func New(client redis.UniversalClient, space keyspace.Space, keys *seal.Keys, logger *zap.Logger) *Store {
	return &Store{client: client, space: space, keys: keys, logger: logger}
}

// Load implements store.Store with one HGETALL.
func (s *Store) Load(ctx context.Context, id string) (*integration.Integration, error) {
	fields, err := s.client.HGetAll(ctx, s.space.Record(id)).Result()
	switch {
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &integration.FieldError{ID: id, Field: "(key)", Reason: "the key does not hold a hash"}
	case err != nil:
		return nil, fmt.Errorf("loading integration %q: %w", id, err)
	case len(fields) == 0:
		return nil, store.ErrNotFound
	}
	return integration.Decode(id, fields, s.keys)
}

// Watch implements store.Watcher: it subscribes to the changed channel and
// calls changed for every id published there. Every (re)subscription calls
// all, since messages published while disconnected are lost.
func (s *Store) Watch(ctx context.Context, changed func(id string), all func()) {
	ps := s.client.Subscribe(ctx, s.space.Changed())
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

// Fields returns the stored fields of webhook id, as they are (secrets
// still encrypted), or store.ErrNotFound.
func (s *Store) Fields(ctx context.Context, id string) (map[string]string, error) {
	fields, err := s.client.HGetAll(ctx, s.space.Record(id)).Result()
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading integration %q: %w", id, err)
	case len(fields) == 0:
		return nil, store.ErrNotFound
	}
	return fields, nil
}

// Put replaces the record of webhook id with fields in one transaction,
// then announces the change on the channel.
func (s *Store) Put(ctx context.Context, id string, fields map[string]string) error {
	key := s.space.Record(id)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, fields)
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing integration %q: %w", id, err)
	}
	return s.announce(ctx, id)
}

// Delete removes the record of webhook id and announces it; it reports
// whether there was one.
func (s *Store) Delete(ctx context.Context, id string) (bool, error) {
	n, err := s.client.Del(ctx, s.space.Record(id)).Result()
	if err != nil {
		return false, fmt.Errorf("deleting integration %q: %w", id, err)
	}
	return n == 1, s.announce(ctx, id)
}

func (s *Store) announce(ctx context.Context, id string) error {
	if err := s.client.Publish(ctx, s.space.Changed(), id).Err(); err != nil {
		return fmt.Errorf("announcing the change of integration %q: %w", id, err)
	}
	return nil
}

// IDs lists the ids of every stored record, sorted, scanning every master
// of a cluster.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	pattern := s.space.RecordPattern()
	var (
		mu  sync.Mutex
		ids []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.ScanType(ctx, 0, pattern, 1000, "hash").Iterator()
		for iter.Next(ctx) {
			if id, ok := s.space.RecordID(iter.Val()); ok && integration.ValidID(id) {
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return nil, fmt.Errorf("listing integrations: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}
