// Package filestore serves integrations from a JSON file (the embedded
// default store: no Redis needed), re-read whenever the file changes.
package filestore

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
)

// PollInterval is how often the file is checked for changes.
const PollInterval = time.Second

// MaxFileSize is the largest integrations file read, in bytes (several
// hundred thousand integrations). A larger file is refused, as is a path
// that is not a regular file (a device or a pipe could be read without
// end, or block the configuration's load).
const MaxFileSize = 256 << 20

// Store is a store.Store and store.Watcher over an integrations file.
type Store struct {
	path   string
	keys   *seal.Keys
	logger *zap.Logger
	poll   time.Duration

	mu      sync.RWMutex
	records map[string]*integration.Integration
	read    os.FileInfo // the file as it was when records were read
}

// unchanged reports whether the file now is the one read, unchanged: the
// same modification time, size and file (one moved over it, a symlink
// pointed elsewhere, as a Kubernetes ConfigMap is updated, is another), so
// that a replacement of the same size and time, from a copy that keeps
// times, is read too.
func unchanged(now, read os.FileInfo) bool {
	return read != nil && now.ModTime().Equal(read.ModTime()) && now.Size() == read.Size() && os.SameFile(now, read)
}

// Open reads the integrations file at path, opening encrypted secrets with
// keys. A file that cannot be read or decoded is an error, so a bad file
// fails the configuration at load.
func Open(path string, keys *seal.Keys, logger *zap.Logger) (*Store, error) {
	s := &Store{path: path, keys: keys, logger: logger, poll: PollInterval}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Load implements store.Store.
func (s *Store) Load(_ context.Context, id string) (*integration.Integration, error) {
	s.mu.RLock()
	in, ok := s.records[id]
	s.mu.RUnlock()
	if !ok {
		return nil, store.ErrNotFound
	}
	return in, nil
}

// reload reads the file if it changed since the last read, and reports
// whether it did.
func (s *Store) reload() (bool, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return false, fmt.Errorf("reading integrations file: %v", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("reading integrations file: %s is not a regular file", s.path)
	case fi.Size() > MaxFileSize:
		return false, fmt.Errorf("reading integrations file: %s has %d bytes, more than the most of %d", s.path, fi.Size(), MaxFileSize)
	}
	s.mu.RLock()
	same := unchanged(fi, s.read)
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	data, err := readAtMost(s.path, MaxFileSize)
	if err != nil {
		return false, fmt.Errorf("reading integrations file: %v", err)
	}
	records, err := integration.DecodeFile(data, s.keys)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.path, err)
	}
	s.mu.Lock()
	s.records, s.read = records, fi
	s.mu.Unlock()
	return true, nil
}

// readAtMost reads the file at path, failing if it has more than n bytes
// (it may have grown since it was looked at).
func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, n+1))
	if err == nil && int64(len(data)) > n {
		err = fmt.Errorf("%s has more than the most of %d bytes", path, n)
	}
	return data, err
}

// Watch implements store.Watcher: it checks the file every poll interval and
// calls all after each successful re-read. A file that became unreadable or
// invalid is logged and the records read before keep being served.
func (s *Store) Watch(ctx context.Context, _ func(id string), all func()) {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			s.logger.Error("integrations file not reloaded; serving the previous version", zap.Error(err))
			lastErr = err.Error()
		case changed:
			s.logger.Info("integrations file reloaded", zap.String("path", s.path))
			lastErr = ""
			all()
		}
	}
}
