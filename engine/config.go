package engine

import (
	"fmt"
	"time"
)

// Config is the engine's configuration (package config reads it from the environment).
// Every instance that shares a Redis must use the same Prefix and Partitions.
type Config struct {
	// RedisURL addresses a single Redis (redis://host:port/db).
	RedisURL string
	// RedisClusterAddrs, when set, selects Redis Cluster with these seed nodes.
	RedisClusterAddrs []string
	// RedisSentinelAddrs and RedisSentinelMaster, when set, select the primary that these
	// Sentinels monitor under that name; the client follows it through failovers. RedisURL
	// then gives only the user, password and database (its host is not used).
	RedisSentinelAddrs  []string
	RedisSentinelMaster string
	// RedisSentinelUsername and RedisSentinelPassword authenticate to the Sentinels
	// themselves (their requirepass), which may differ from the data nodes'.
	RedisSentinelUsername string
	RedisSentinelPassword string
	// RedisPoolSize is the most connections to each Redis node (0: go-redis's default, 10 per CPU).
	RedisPoolSize int
	// RedisWaitReplicas (0: off): after every round trip of script calls, wait until this
	// many replicas have the writes (WAIT); if fewer acknowledge within RedisWaitTimeout, the
	// caller is answered 503 and should retry (the write was made on the primary and is
	// replayed to the retry if the primary keeps it). Not with Redis Cluster.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	// RedisTimeout bounds every Redis call the engine makes.
	RedisTimeout time.Duration
	// Prefix starts every Redis key.
	Prefix string
	// Partitions is the fixed number of keyspace partitions. Never change it on live data.
	Partitions int

	// DefaultTTL is a hold's lifetime when the request names none.
	DefaultTTL time.Duration
	// MinTTL and MaxTTL bound the lifetime a request may ask for.
	MinTTL time.Duration
	MaxTTL time.Duration
	// MaxQty is the most units one cart line may reserve.
	MaxQty int64
	// MaxCartLines is the most lines one cart may have.
	MaxCartLines int
	// IdempotencyTTL is how long answers (and tombstones of ended holds) are remembered.
	IdempotencyTTL time.Duration
	// IdempotencyLease: a reservation that takes several calls holds its key this long;
	// duplicates meanwhile wait for its answer, and after it a retry takes the request over.
	IdempotencyLease time.Duration
	// RefusalTTL is how long a refused reservation's answer is kept: the same request sent
	// again meanwhile is refused the same; after it, it is tried anew.
	RefusalTTL time.Duration
	// IDSecret keys the hash that turns a caller's idempotency key into its hold ids, so
	// that ids cannot be guessed. Every instance must use the same one, and it must outlive
	// Redis's data (set it explicitly in production). Empty: one is made at first start and
	// kept in Redis.
	IDSecret string

	// Coalesce sends concurrent reserves together: one pipeline per round trip, one
	// reserve_batch call per partition in it.
	Coalesce bool
	// CoalesceMaxBatch caps the requests in one round trip.
	CoalesceMaxBatch int
	// CoalesceWorkers is how many round trips of coalesced reserves (and, apart, of sold-out
	// idempotency reads) may be in flight at once.
	CoalesceWorkers int
	// SoldOutMemory is how long a pool found empty answers "sold out" without asking Redis.
	SoldOutMemory time.Duration
	// ReclaimInline is how many expired holds a short reserve may restore on the spot.
	ReclaimInline int
	// CommitGrace: a multi-part hold's parts are kept alive this long while it is committed.
	CommitGrace time.Duration
	// PoolCacheTTL is how long pool configuration is cached in process.
	PoolCacheTTL time.Duration
}

// DefaultConfig is the configuration flashhold runs with when the environment sets nothing.
func DefaultConfig() Config {
	return Config{
		RedisURL:         "redis://127.0.0.1:6379/0",
		RedisWaitTimeout: 100 * time.Millisecond,
		RedisTimeout:     2 * time.Second,
		Prefix:           "fh",
		Partitions:       64,
		DefaultTTL:       5 * time.Minute,
		MinTTL:           time.Second,
		MaxTTL:           30 * time.Minute,
		MaxQty:           100,
		MaxCartLines:     20,
		IdempotencyTTL:   time.Hour,
		IdempotencyLease: 10 * time.Second,
		RefusalTTL:       30 * time.Second,
		Coalesce:         true,
		CoalesceMaxBatch: 128,
		CoalesceWorkers:  2,
		SoldOutMemory:    250 * time.Millisecond,
		ReclaimInline:    8,
		CommitGrace:      5 * time.Second,
		PoolCacheTTL:     5 * time.Second,
	}
}

// MaxShards is the most sub-counters one pool may have.
const MaxShards = 64

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Partitions < 1 || c.Partitions > 16384:
		return fmt.Errorf("FLASHHOLD_PARTITIONS must be 1..16384, got %d", c.Partitions)
	case !idPattern.MatchString(c.Prefix):
		return fmt.Errorf("FLASHHOLD_KEY_PREFIX must match %s, got %q", idPattern, c.Prefix)
	case c.MinTTL <= 0 || c.MaxTTL < c.MinTTL:
		return fmt.Errorf("hold TTL bounds must satisfy 0 < min <= max, got %s..%s", c.MinTTL, c.MaxTTL)
	case c.DefaultTTL < c.MinTTL || c.DefaultTTL > c.MaxTTL:
		return fmt.Errorf("FLASHHOLD_HOLD_TTL_DEFAULT %s is outside %s..%s", c.DefaultTTL, c.MinTTL, c.MaxTTL)
	case c.MaxQty < 1:
		return fmt.Errorf("FLASHHOLD_MAX_QTY must be at least 1, got %d", c.MaxQty)
	case c.MaxCartLines < 1:
		return fmt.Errorf("FLASHHOLD_MAX_CART_LINES must be at least 1, got %d", c.MaxCartLines)
	case c.IdempotencyTTL < c.MaxTTL:
		return fmt.Errorf("FLASHHOLD_IDEMPOTENCY_TTL (%s) must be at least the longest hold (%s)", c.IdempotencyTTL, c.MaxTTL)
	case c.IdempotencyLease < c.RedisTimeout:
		return fmt.Errorf("FLASHHOLD_IDEMPOTENCY_LEASE (%s) must be at least FLASHHOLD_REDIS_TIMEOUT (%s)", c.IdempotencyLease, c.RedisTimeout)
	case c.RefusalTTL < time.Second || c.RefusalTTL > c.IdempotencyTTL:
		return fmt.Errorf("FLASHHOLD_REFUSAL_TTL (%s) must be between 1s and FLASHHOLD_IDEMPOTENCY_TTL (%s)", c.RefusalTTL, c.IdempotencyTTL)
	case c.SoldOutMemory > c.MinTTL:
		return fmt.Errorf("FLASHHOLD_SOLD_OUT_MEMORY (%s) must not exceed FLASHHOLD_HOLD_TTL_MIN (%s): a hold placed after a pool was found empty may expire no sooner", c.SoldOutMemory, c.MinTTL)
	case c.IDSecret != "" && len(c.IDSecret) < 16:
		return fmt.Errorf("FLASHHOLD_ID_SECRET must be at least 16 characters")
	case c.CoalesceMaxBatch < 1 || c.CoalesceWorkers < 1:
		return fmt.Errorf("coalescing needs a batch size and worker count of at least 1")
	case c.RedisTimeout <= 0:
		return fmt.Errorf("FLASHHOLD_REDIS_TIMEOUT must be positive")
	case c.RedisWaitReplicas < 0 || c.RedisWaitReplicas > 0 && c.RedisWaitTimeout <= 0:
		return fmt.Errorf("FLASHHOLD_REDIS_WAIT_REPLICAS must be 0 or more, with a positive FLASHHOLD_REDIS_WAIT_TIMEOUT")
	case len(c.RedisSentinelAddrs) > 0 != (c.RedisSentinelMaster != ""):
		return fmt.Errorf("FLASHHOLD_REDIS_SENTINEL_ADDRS and FLASHHOLD_REDIS_SENTINEL_MASTER go together: set both or neither")
	case len(c.RedisSentinelAddrs) > 0 && len(c.RedisClusterAddrs) > 0:
		return fmt.Errorf("FLASHHOLD_REDIS_SENTINEL_ADDRS and FLASHHOLD_REDIS_CLUSTER_ADDRS exclude each other: Sentinel watches one primary, a cluster fails over by itself")
	case c.RedisWaitReplicas > 0 && c.RedisWaitTimeout >= c.RedisTimeout:
		return fmt.Errorf("FLASHHOLD_REDIS_WAIT_TIMEOUT (%s) must be shorter than FLASHHOLD_REDIS_TIMEOUT (%s)", c.RedisWaitTimeout, c.RedisTimeout)
	}
	return nil
}
