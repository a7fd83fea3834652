package redisconn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func TestSharedAcrossReloads(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := Config{Addrs: []string{r.Addr}}
	ctx := context.Background()

	first, err := Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Acquire(cfg) // the next config load, before the old one is cleaned up
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("the same settings gave two clients")
	}
	if err := Release(cfg); err != nil { // the old config's cleanup
		t.Fatal(err)
	}
	if err := second.Ping(ctx).Err(); err != nil {
		t.Fatalf("client closed while still in use: %v", err)
	}
	if err := Release(cfg); err != nil {
		t.Fatal(err)
	}
	if err := second.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("after the last release: err = %v, want the client closed", err)
	}

	other, err := Acquire(Config{Addrs: []string{r.Addr}, DB: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer Release(Config{Addrs: []string{r.Addr}, DB: 1})
	if other == first {
		t.Error("different settings shared a client")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{Addrs: []string{"a:1"}, DB: 3}, ""},
		{Config{Addrs: []string{"a:1", "b:1"}, MasterName: "m", DB: 3}, ""},
		{Config{Addrs: []string{"a:1", "b:1"}, DB: 3}, "only database 0"},
		{Config{Addrs: []string{"a:1"}, Cluster: true, DB: 1}, "only database 0"},
		{Config{Addrs: []string{"a"}}, `address "a"`},
		{Config{Addrs: []string{"a:1"}, DB: -1}, "numbered from 0"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestKeyHidesPassword(t *testing.T) {
	k := Config{Password: "hunter2"}.key()
	if strings.Contains(k, "hunter2") || k == (Config{Password: "other"}).key() {
		t.Errorf("key %q reveals the password or ignores it", k)
	}
}
