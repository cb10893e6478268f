package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Sweep restores up to limit expired hold parts of partition p (expiry <= now) and forgets
// up to gcLimit records past their retention. Safe to run from many processes at once.
func (e *Engine) Sweep(ctx context.Context, p, limit, gcLimit int) (SweepResult, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return SweepResult{}, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	r, err := e.run(ctx, "sweep", p, e.nowMs(), limit, gcLimit, e.cfg.IdempotencyTTL.Milliseconds())
	if err != nil {
		return SweepResult{}, err
	}
	if r.code() == "FENCED" {
		return SweepResult{}, fencedErr(p, r)
	}
	e.stats.Expired.Add(r.int(0))
	return SweepResult{Restored: int(r.int(0)), NextExpiry: r.int(1), Forgotten: int(r.int(2))}, nil
}

// NextExpiries reads every partition's earliest hold expiry (unix ms; -1 when it has no open
// hold) in one pipeline.
func (e *Engine) NextExpiries(ctx context.Context) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, e.cfg.Partitions)
	for p := range cmds {
		cmds[p] = pipe.ZRangeWithScores(ctx, e.ks.parts[p][2], 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read next expiries: %w", redisErr(err))
	}
	out := make([]int64, len(cmds))
	for p, cmd := range cmds {
		out[p] = -1
		if z := cmd.Val(); len(z) > 0 {
			out[p] = int64(z[0].Score)
		}
	}
	return out, nil
}

// indexPool keeps the sets of sharded and perishable pools that background work scans, the
// vendor's set of pools and the index of items of the pool's region.
func (e *Engine) indexPool(ctx context.Context, c PoolConfig) error {
	pipe := e.rdb.Pipeline()
	k := c.Key().String()
	pipe.SAdd(ctx, e.ks.vendorKey(c.Vendor), k)
	pipe.Incr(ctx, e.ks.poolsVersionKey())
	if c.Shards > 1 {
		pipe.SAdd(ctx, e.ks.prefix+":sharded", k)
	}
	if c.BestBefore > 0 {
		pipe.SAdd(ctx, e.ks.prefix+":perishable", k)
	} else {
		pipe.SRem(ctx, e.ks.prefix+":perishable", k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("index pool %s: %w", k, redisErr(err))
	}
	return e.indexRegionItem(ctx, c)
}

// PoolsVersion counts the times a pool was made, changed or restored: the pools have not
// changed while it stays the same.
func (e *Engine) PoolsVersion(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	v, err := e.rdb.Get(ctx, e.ks.poolsVersionKey()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read pools version: %w", redisErr(err))
	}
	return v, nil
}

// ShardedPools lists the pools with more than one shard.
func (e *Engine) ShardedPools(ctx context.Context) ([]PoolConfig, error) {
	return e.poolsIn(ctx, e.ks.prefix+":sharded")
}

// PerishablePools lists the pools with a best-before date.
func (e *Engine) PerishablePools(ctx context.Context) ([]PoolConfig, error) {
	return e.poolsIn(ctx, e.ks.prefix+":perishable")
}

func (e *Engine) poolsIn(ctx context.Context, set string) ([]PoolConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	keys, err := e.rdb.SMembers(ctx, set).Result()
	if err != nil || len(keys) == 0 {
		return nil, redisErr(err)
	}
	return e.loadPools(ctx, keys)
}

// WriteOff spoils every unit available in a pool (a perishable pool past its best-before
// date), shard by shard, each shard idempotent under "<txid>/<shard>". Holds already placed
// are untouched and may still commit. It returns the units written off.
func (e *Engine) WriteOff(ctx context.Context, location, sku, txid, actor, reason string) (int64, error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return 0, err
	}
	if !idemKeyPattern.MatchString(txid) {
		return 0, invalid("transaction_id", "must match %s", idemKeyPattern)
	}
	if err := validateReason(reason); err != nil {
		return 0, err
	}
	var total int64
	for s := range p.partitions {
		r, err := e.adjustShard(ctx, p, s, "WRITEOFF", 0, txid+"/"+strconv.Itoa(s), "writeoff",
			AdjustRequest{Actor: actor, Reason: reason, TransactionID: txid}, nil)
		if err != nil {
			return total, err
		}
		total += r.Before - r.After
	}
	return total, nil
}
