// Package redisconn shares one go-redis client per set of connection
// settings across Caddy config reloads, through a caddy.UsagePool: a reload
// reuses the open connections, and the client is closed when the last
// configuration using it is cleaned up.
package redisconn

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap/zapcore"
)

// Config says how to reach Redis. The topology follows from it: one address
// is a single node, several are a cluster, and MasterName makes the
// addresses Sentinels of that master.
type Config struct {
	// Addrs are host:port addresses. Default: 127.0.0.1:6379.
	Addrs []string `json:"addrs,omitempty"`
	// Cluster treats a single address as a cluster's entry point.
	Cluster bool `json:"cluster,omitempty"`
	// MasterName is the Sentinel master name; Addrs are then Sentinels.
	MasterName string `json:"master_name,omitempty"`
	// Username and Password authenticate to Redis (ACL or requirepass).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the database number (single node and Sentinel only). Default: 0.
	DB int `json:"db,omitempty"`
	// TLS connects with TLS, verifying the server's certificate.
	TLS bool `json:"tls,omitempty"`
}

// Timeouts for every command. A webhook sender waits on us; a Redis that
// does not answer in this time is treated as down.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
)

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	clustered := c.Cluster || (len(c.Addrs) > 1 && c.MasterName == "")
	if c.DB < 0 {
		return fmt.Errorf("redis: db %d: databases are numbered from 0", c.DB)
	}
	if clustered && c.DB != 0 {
		return fmt.Errorf("redis: db %d: a Redis Cluster has only database 0", c.DB)
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redis: address %q: %v", a, err)
		}
	}
	return nil
}

// key identifies a client in the pool. It is a digest, so the password is
// not kept in the pool's keys.
func (c Config) key() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c Config) options() *redis.UniversalOptions {
	addrs := c.Addrs
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:6379"}
	}
	opts := &redis.UniversalOptions{
		Addrs:         addrs,
		IsClusterMode: c.Cluster,
		MasterName:    c.MasterName,
		Username:      c.Username,
		Password:      c.Password,
		DB:            c.DB,
		DialTimeout:   dialTimeout,
		ReadTimeout:   ioTimeout,
		WriteTimeout:  ioTimeout,
		// No command is sent twice. After a read timeout go-redis cannot
		// know whether Redis ran a command, and Redis runs what it has read
		// even once the caller gave up: a retried script that enqueues
		// would queue a webhook twice, or find its own replay marker and
		// answer a first delivery as a duplicate. Every caller handles an
		// error itself (503 to the sender, a later pass of the workers).
		MaxRetries:      -1,
		ClientName:      "caddy-codemie-webhooks",
		DisableIdentity: true, // no CLIENT SETINFO round trips on connect
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if c.MasterName != "" {
		// Sentinels usually share the data nodes' credentials.
		opts.SentinelUsername, opts.SentinelPassword = c.Username, c.Password
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opts
}

var pool = caddy.NewUsagePool()

func init() {
	// go-redis logs connection trouble to stderr on its own; send it to
	// Caddy's log instead, at debug level: the handler logs outages itself.
	redis.SetLogger(debugLog{})
}

// debugLog writes go-redis's internal messages to Caddy's debug log.
type debugLog struct{}

func (debugLog) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("redis").Check(zapcore.DebugLevel, fmt.Sprintf(format, v...)); c != nil {
		c.Write()
	}
}

// client lets the pool close a go-redis client.
type client struct{ redis.UniversalClient }

func (c client) Destruct() error { return c.Close() }

// NewClient returns a client of its own for c, for short-lived users such
// as the command line; the caller closes it.
func NewClient(c Config) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(c.options()), nil
}

// Acquire returns the shared client for c, creating it on first use. Every
// Acquire must be paired with a Release of the same Config.
func Acquire(c Config) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v, _, err := pool.LoadOrNew(c.key(), func() (caddy.Destructor, error) {
		return client{redis.NewUniversalClient(c.options())}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(client).UniversalClient, nil
}

// Release gives back a client taken with Acquire; the last release closes it.
func Release(c Config) error {
	_, err := pool.Delete(c.key())
	return err
}
