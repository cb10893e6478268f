package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease takes or renews the lease called name for owner, for ttl. It returns false when
// another owner holds it. Background work (sweeping a partition, rebalancing) takes a lease so
// two processes do not do the same work at once; a lease of a process that died lapses.
func (e *Engine) Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	return e.lease(ctx, name, owner, ttl, "1")
}

// ReleaseLease gives up a lease the owner holds.
func (e *Engine) ReleaseLease(ctx context.Context, name, owner string) error {
	_, err := e.lease(ctx, name, owner, time.Millisecond, "0")
	return err
}

func (e *Engine) lease(ctx context.Context, name, owner string, ttl time.Duration, take string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	n, err := e.scripts["lease"].Run(ctx, e.rdb, []string{e.ks.prefix + ":lease:" + name}, owner, ttl.Milliseconds(), take).Int()
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, redisErr(err))
	}
	return n == 1, nil
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

// indexPool keeps the sets of sharded and perishable pools that background work scans.
func (e *Engine) indexPool(ctx context.Context, c PoolConfig) error {
	pipe := e.rdb.Pipeline()
	k := c.Key().String()
	pipe.SAdd(ctx, e.ks.vendorKey(c.Vendor), k)
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
	return nil
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

// BeginTransfer takes units out of one shard for another (the first half of Transfer) and
// leaves the transfer pending; CompleteTransfers or Transfer with the same id finishes it.
func (e *Engine) BeginTransfer(ctx context.Context, location, sku string, from, to int, qty int64, id, actor string) error {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return err
	}
	if from < 0 || from >= p.Shards || to < 0 || to >= p.Shards || from == to || qty < 1 {
		return invalid("shard", "transfer needs two different shards of %s and a positive qty", p.Key())
	}
	r, err := e.run(ctx, "transfer_out", p.partitions[from], e.nowMs(), location, sku, from, qty, id, p.partitions[to], to, actor)
	if err != nil {
		return err
	}
	if r.code() != "OK" {
		return fmt.Errorf("transfer_out %s: %v", id, []any(r))
	}
	return nil
}

// PendingTransfers lists partition p's transfers taken out and not yet settled.
func (e *Engine) PendingTransfers(ctx context.Context, p int) ([]PendingTransfer, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	all, err := e.rdb.HGetAll(ctx, e.ks.parts[p][7]).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read transfers of partition %d: %w", p, redisErr(err))
	}
	var out []PendingTransfer
	for id, v := range all {
		if t, ok := parsePendingTransfer(p, id, v); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// parsePendingTransfer decodes an xfer hash field "o:<id>" →
// "loc|sku|from shard|qty|to partition|to shard|taken at"; other fields are not pending transfers.
func parsePendingTransfer(p int, field, value string) (PendingTransfer, bool) {
	f := strings.Split(value, "|")
	if !strings.HasPrefix(field, "o:") || len(f) != 7 {
		return PendingTransfer{}, false
	}
	t := PendingTransfer{ID: field[2:], Location: f[0], SKU: f[1], FromPartition: p}
	t.FromShard, _ = strconv.Atoi(f[2])
	t.Qty, _ = strconv.ParseInt(f[3], 10, 64)
	t.ToPartition, _ = strconv.Atoi(f[4])
	t.ToShard, _ = strconv.Atoi(f[5])
	t.TakenAt, _ = strconv.ParseInt(f[6], 10, 64)
	return t, true
}

// FinishTransfer completes one pending transfer (applies it to its destination, settles it).
func (e *Engine) FinishTransfer(ctx context.Context, t PendingTransfer, actor string) error {
	return e.finishTransfer(ctx, t, actor)
}

// StreamKey is the name of partition p's event stream.
func (e *Engine) StreamKey(p int) string { return e.ks.logKey(p) }

// Seq reads partition p's last seq.
func (e *Engine) Seq(ctx context.Context, p int) (int64, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return 0, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	v, err := e.rdb.HGet(ctx, e.ks.parts[p][5], "seq").Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read seq of partition %d: %w", p, redisErr(err))
	}
	return toInt(v), nil
}

// PartitionHead is where a partition's event chain stands: its last seq and hash, and its
// fence reason (empty: not fenced). Two equal heads of one partition mean no event was
// written in between, even across a rebuild (the hash chain differs).
type PartitionHead struct {
	Seq   int64
	Hash  string
	Fence string
}

// PartitionHeads reads every partition's head in one pipeline.
func (e *Engine) PartitionHeads(ctx context.Context) ([]PartitionHead, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, e.cfg.Partitions)
	for p := range cmds {
		cmds[p] = pipe.HMGet(ctx, e.ks.parts[p][5], "seq", "head", "fence")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read partition heads: %w", redisErr(err))
	}
	out := make([]PartitionHead, len(cmds))
	for p, cmd := range cmds {
		v := cmd.Val()
		out[p].Seq = toInt(v[0])
		out[p].Hash, _ = v[1].(string)
		out[p].Fence, _ = v[2].(string)
	}
	return out, nil
}

// Heads reads every partition's last seq and fence reason (empty: not fenced) in one pipeline.
func (e *Engine) Heads(ctx context.Context) (seqs []int64, fences []string, err error) {
	heads, err := e.PartitionHeads(ctx)
	if err != nil {
		return nil, nil, err
	}
	seqs, fences = make([]int64, len(heads)), make([]string, len(heads))
	for p, h := range heads {
		seqs[p], fences[p] = h.Seq, h.Fence
	}
	return seqs, fences, nil
}

// Leases takes or renews many leases in one pipeline; ok[i] says whether owner holds names[i].
func (e *Engine) Leases(ctx context.Context, names []string, owner string, ttl time.Duration) ([]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	s := e.scripts["lease"]
	run := func() ([]*redis.Cmd, error) {
		pipe := e.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(names))
		for i, n := range names {
			cmds[i] = s.EvalSha(ctx, pipe, []string{e.ks.prefix + ":lease:" + n}, owner, ttl.Milliseconds(), "1")
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A node lost its script cache; pipelines do not fall back to EVAL by themselves.
		if err := e.LoadScripts(ctx); err != nil {
			return nil, err
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, fmt.Errorf("leases: %w", redisErr(err))
	}
	ok := make([]bool, len(cmds))
	for i, c := range cmds {
		n, _ := c.Int()
		ok[i] = n == 1
	}
	return ok, nil
}

// TrimStream removes partition p's old stream entries: those up to seq upTo (-1: no bound of
// the caller's) less keep, and never one a consumer group has not acknowledged (see
// trim.lua). It returns how many it removed.
func (e *Engine) TrimStream(ctx context.Context, p int, upTo, keep int64) (int64, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return 0, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	r, err := e.run(ctx, "trim", p, e.nowMs(), upTo, keep)
	if err != nil {
		return 0, err
	}
	return r.int(0), nil
}
