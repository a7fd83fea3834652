package filestore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.json"), nil, zap.NewNop()); err == nil {
		t.Error("missing file: want an error")
	}
	bad := filepath.Join(dir, "bad.json")
	testenv.WriteFile(t, bad, `[{"webhook_id": "a", "is_enabled": "perhaps"}]`)
	if _, err := Open(bad, nil, zap.NewNop()); err == nil {
		t.Error("invalid record: want an error")
	}
}

func TestLoadAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrations.json")
	testenv.WriteFile(t, path, `[{"webhook_id": "a", "is_enabled": true}]`)
	core, logs := observer.New(zap.InfoLevel)
	s, err := Open(path, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s.poll = 5 * time.Millisecond
	ctx := context.Background()
	if in, err := s.Load(ctx, "a"); err != nil || !in.Enabled {
		t.Fatalf("Load(a) = %+v, %v", in, err)
	}
	if _, err := s.Load(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load(b) err = %v, want ErrNotFound", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reloaded := make(chan struct{}, 10)
	go s.Watch(ctx, nil, func() { reloaded <- struct{}{} })
	waitReload := func() {
		t.Helper()
		select {
		case <-reloaded:
		case <-time.After(10 * time.Second):
			t.Fatal("file change not picked up")
		}
	}

	testenv.WriteFile(t, path, `[{"webhook_id": "b", "is_enabled": true}, {"webhook_id": "a", "is_enabled": false}]`)
	waitReload()
	if in, err := s.Load(ctx, "a"); err != nil || in.Enabled {
		t.Errorf("after reload Load(a) = %+v, %v; want disabled", in, err)
	}
	if _, err := s.Load(ctx, "b"); err != nil {
		t.Errorf("after reload Load(b): %v", err)
	}

	// An invalid file is logged and the previous records stay.
	testenv.WriteFile(t, path, `[{"webhook_id": "a", "is_enabled": "perhaps, with a longer body"}]`)
	testenv.Eventually(t, "the invalid file to be reported", func() bool {
		return logs.FilterMessage("integrations file not reloaded; serving the previous version").Len() > 0
	})
	if _, err := s.Load(ctx, "b"); err != nil {
		t.Errorf("after an invalid file Load(b): %v; want the previous records", err)
	}

	testenv.WriteFile(t, path, `[{"webhook_id": "c"}]`)
	waitReload()
	if _, err := s.Load(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after a fixed file Load(b) err = %v, want ErrNotFound", err)
	}
}
