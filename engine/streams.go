package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// WaitReplicated waits until FLASHHOLD_REDIS_WAIT_REPLICAS replicas have every write made so
// far to the nodes partitions parts live on, and returns the partitions whose node's replicas
// did not acknowledge in time (or that could not be asked), each with why; nil when all did,
// or at once when the setting is 0. The persister calls it between reading events and copying
// them, so that the ledger never holds an event that a failover to the most advanced replica
// loses: such an event (its writer was answered 503) would leave the ledger ahead of Redis and
// its partition fenced until a repair. Per node: a write (its offset covers every earlier
// write there), then WAIT on the same connection; the nodes in parallel.
func (e *Engine) WaitReplicated(ctx context.Context, parts []int) map[int]error {
	if e.cfg.RedisWaitReplicas == 0 || len(parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	wait := func(c redis.Cmdable, p int) error {
		set := redis.NewStatusCmd(ctx, "set", e.ks.waitKey(p), e.nowMs(), "px", 10000)
		waited := e.pipeline(ctx, c, []redis.Cmder{set}, nil, nil) // the write, then WAIT, as a round trip of calls
		if err := set.Err(); err != nil {
			return fmt.Errorf("wait for replicas of partition %d: %w", p, redisErr(err))
		}
		return waited
	}
	behind := map[int]error{}
	cc, cluster := e.rdb.(*redis.ClusterClient)
	if !cluster {
		if err := wait(e.rdb, parts[0]); err != nil {
			for _, p := range parts {
				behind[p] = err
			}
			return behind
		}
		return nil
	}
	nodes := map[*redis.Client][]int{}
	for _, p := range parts {
		node, err := cc.MasterForKey(ctx, e.ks.waitKey(p))
		if err != nil {
			behind[p] = fmt.Errorf("%w: no node for partition %d: %w", ErrUnavailable, p, err)
			continue
		}
		nodes[node] = append(nodes[node], p)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for node, ps := range nodes {
		wg.Go(func() {
			if err := wait(node, ps[0]); err != nil {
				if !errors.Is(err, errNotReplicated) {
					cc.ReloadState(ctx) // the node failed the write: it may be gone, or serve the slot no more
				}
				mu.Lock()
				for _, p := range ps {
					behind[p] = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(behind) == 0 {
		return nil
	}
	return behind
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

// PartitionHead is where a partition's event chain stands: its last seq and hash, and its
// fence reason (empty: not fenced). Two equal heads of one partition mean no event was
// written in between, even across a rebuild (the hash chain differs).
type PartitionHead struct {
	Seq   int64
	Hash  string
	Fence string
}
