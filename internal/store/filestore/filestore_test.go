package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestOpenRefusesWhatItCannotReadWhole: a device or a pipe is never read (a
// device without end filled the memory; a pipe blocked the load), nor is a
// file over MaxFileSize.
func TestOpenRefusesWhatItCannotReadWhole(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "pipe.json")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.json")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: the size without the bytes.
	if err := errors.Join(f.Truncate(MaxFileSize+1), f.Close()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "/dev/zero is not a regular file"},
		{pipe, "pipe.json is not a regular file"},
		{dir, "is not a regular file"},
		{huge, fmt.Sprintf("has %d bytes, more than the most of %d", MaxFileSize+1, MaxFileSize)},
	} {
		_, err := Open(tc.path, nil, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}

func TestReadAtMost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrations.json")
	testenv.WriteFile(t, path, "[]\n")
	if data, err := readAtMost(path, 3); err != nil || string(data) != "[]\n" {
		t.Errorf("a file of the most: %q, %v", data, err)
	}
	if _, err := readAtMost(path, 2); err == nil || !strings.Contains(err.Error(), "more than the most of 2 bytes") {
		t.Errorf("a file past the most: %v", err)
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

// TestReloadsAFileMovedOverIt: a new file of the same size and
// modification time moved over the old one (a copy that keeps times, a
// ConfigMap's symlink swapped) is read.
func TestReloadsAFileMovedOverIt(t *testing.T) {
	dir := t.TempDir()
	path, next := filepath.Join(dir, "integrations.json"), filepath.Join(dir, "next.json")
	testenv.WriteFile(t, path, `[{"webhook_id": "a", "is_enabled": true}]`)
	testenv.WriteFile(t, next, `[{"webhook_id": "b", "is_enabled": true}]`)
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []string{path, next} {
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(path, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.reload(); err != nil || !changed {
		t.Fatalf("reload after the move: %v, %v; want it read", changed, err)
	}
	if _, err := s.Load(context.Background(), "b"); err != nil {
		t.Errorf("Load(b) after the move: %v", err)
	}
	if changed, _ := s.reload(); changed {
		t.Error("the same file read again with nothing changed")
	}
}
