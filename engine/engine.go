// Package engine is flashhold's Go API over Redis: sharded stock pools, holds that expire,
// and one event per change, all through the Lua scripts in package lua.
package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashhold/flashhold/lua"
)

// Engine reserves, commits, releases and adjusts stock. It is safe for concurrent use;
// many engines (processes) may share one Redis.
type Engine struct {
	rdb   redis.UniversalClient
	cfg   Config
	ks    keyspace
	now   func() time.Time
	log   zerolog.Logger
	pools *poolCache
	// regions: the regions, cached (see region.go).
	regions regionCache
	stats   Stats

	// lib is the Functions library of the partition operations (its name and code); fns
	// names each operation's function in it. scripts holds the standalone scripts.
	lib, libCode string
	fns          map[string]string
	scripts      map[string]*redis.Script

	soldOut  sync.Map // PoolKey -> *shortPool: what proves the pool short (see soldout.go)
	batchers *coalescer
	keyspace keyspaceState
	secret   []byte // keys hold ids (see Engine.token); set with the keyspace's settings
	// ownsClient: Close closes rdb too (OwnsClient).
	ownsClient bool
	tracer     trace.Tracer // nil: tracing off (see trace.go)
}

// Option changes how New builds an Engine.
type Option func(*Engine)

// WithClock makes the engine read time from now (tests drive a fake clock with it).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// OwnsClient makes Close close the Redis client too (for a client made for this engine alone).
func OwnsClient() Option { return func(e *Engine) { e.ownsClient = true } }

// WithLogger sets the engine's logger.
func WithLogger(l zerolog.Logger) Option { return func(e *Engine) { e.log = l } }

// NewRedisClient connects to the Redis the configuration names: a Redis Cluster, the
// primary that Sentinels monitor, or a single Redis.
func NewRedisClient(cfg Config) (redis.UniversalClient, error) {
	if len(cfg.RedisClusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        cfg.RedisClusterAddrs,
			ReadTimeout:  cfg.RedisTimeout,
			WriteTimeout: cfg.RedisTimeout,
			PoolSize:     cfg.RedisPoolSize,
		}), nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("FLASHHOLD_REDIS_URL: %w", err)
	}
	opt.ReadTimeout, opt.WriteTimeout = cfg.RedisTimeout, cfg.RedisTimeout
	if cfg.RedisPoolSize > 0 {
		opt.PoolSize = cfg.RedisPoolSize
	}
	if len(cfg.RedisSentinelAddrs) > 0 {
		if opt.TLSConfig != nil {
			// The URL's TLS settings name its host, which Sentinel replaces: not carried over.
			return nil, fmt.Errorf("FLASHHOLD_REDIS_URL: TLS (rediss://) is not supported with FLASHHOLD_REDIS_SENTINEL_ADDRS")
		}
		// Every connection goes to the primary (no reads from replicas: the scripts write,
		// and a replica may lag); the client asks the Sentinels where it is when it dials
		// and drops its connections when they announce a new one.
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       cfg.RedisSentinelMaster,
			SentinelAddrs:    cfg.RedisSentinelAddrs,
			SentinelUsername: cfg.RedisSentinelUsername,
			SentinelPassword: cfg.RedisSentinelPassword,
			Username:         opt.Username,
			Password:         opt.Password,
			DB:               opt.DB,
			ReadTimeout:      opt.ReadTimeout,
			WriteTimeout:     opt.WriteTimeout,
			PoolSize:         opt.PoolSize,
		}), nil
	}
	return redis.NewClient(opt), nil
}

// New builds an engine over rdb, loads its functions and scripts on every node and checks
// that the partition count matches the one this keyspace was created with.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config, opts ...Option) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		rdb:     rdb,
		cfg:     cfg,
		ks:      newKeyspace(cfg.Prefix, cfg.Partitions),
		now:     time.Now,
		log:     zerolog.Nop(),
		fns:     make(map[string]string, len(lua.Names)),
		scripts: map[string]*redis.Script{},
	}
	for _, o := range opts {
		o(e)
	}
	e.pools = newPoolCache(e)
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.AddHook(followFailovers{cc})
	}
	var err error
	if e.lib, e.libCode, err = lua.Library(); err != nil {
		return nil, err
	}
	for _, name := range lua.Names {
		if !lua.Standalone(name) {
			e.fns[name] = lua.Function(e.lib, name)
			continue
		}
		src, err := lua.Script(name)
		if err != nil {
			return nil, err
		}
		e.scripts[name] = redis.NewScript(src)
	}
	if err := e.LoadScripts(ctx); err != nil {
		return nil, err
	}
	if err := e.openSettings(ctx); err != nil {
		return nil, err
	}
	if cfg.Coalesce {
		e.batchers = newCoalescer(e)
	}
	return e, nil
}

// Close stops the engine's background workers. It closes the Redis client only when the
// engine was built with OwnsClient.
func (e *Engine) Close() {
	if e.batchers != nil {
		e.batchers.stop()
	}
	if e.ownsClient {
		e.rdb.Close()
	}
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Partitions returns the number of keyspace partitions.
func (e *Engine) Partitions() int { return e.cfg.Partitions }

// Ping checks that Redis answers.
func (e *Engine) Ping(ctx context.Context) error { return redisErr(e.rdb.Ping(ctx).Err()) }

// LoadScripts loads the library (FUNCTION LOAD REPLACE) and every standalone script on every
// node (every master of a cluster). A node that lost them (a restart without persistence,
// FUNCTION FLUSH, SCRIPT FLUSH) answers "Function not found" or NOSCRIPT without running
// anything; the engine then loads them again and repeats the call.
func (e *Engine) LoadScripts(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*e.cfg.RedisTimeout)
	defer cancel()
	load := func(ctx context.Context, node *redis.Client) error {
		if err := node.FunctionLoadReplace(ctx, e.libCode).Err(); err != nil {
			return fmt.Errorf("load function library %s: %w", e.lib, redisErr(err))
		}
		for name, s := range e.scripts {
			if err := s.Load(ctx, node).Err(); err != nil {
				return fmt.Errorf("load script %s: %w", name, redisErr(err))
			}
		}
		return nil
	}
	return e.forEachNode(ctx, load)
}

// lostFunctions reports a reply that means the node does not have the library (it ran nothing).
func lostFunctions(err error) bool {
	return redis.HasErrorPrefix(err, "Function not found")
}

func (e *Engine) nowMs() int64 { return e.now().UnixMilli() }
