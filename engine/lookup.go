package engine

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// pendingLookup is one idempotency read of the sold-out path waiting for a pipeline.
type pendingLookup struct {
	ctx    context.Context
	key    string
	fields []string
	out    chan lookupResult
}

type lookupResult struct {
	vals []any
	err  error
}

// lookup reads fields of hash key through the coalescer's lookup workers: concurrent reads
// share one pipeline (one round trip), as concurrent reserves share one script call.
func (c *coalescer) lookup(ctx context.Context, key string, fields ...string) ([]any, error) {
	pl := &pendingLookup{ctx: ctx, key: key, fields: fields, out: make(chan lookupResult, 1)}
	res, err := queueAndWait(c, ctx, c.lookups, pl, pl.out)
	if err != nil {
		return nil, err
	}
	return res.vals, res.err
}

// lookupWork sends whatever reads queued up while its previous pipeline was in flight.
func (c *coalescer) lookupWork() {
	defer c.wg.Done()
	max := c.e.cfg.CoalesceMaxBatch
	batch := make([]*pendingLookup, 0, max)
	cmds := make([]*redis.SliceCmd, 0, max)
	for {
		var ok bool
		if batch, ok = takeBatch(c.ctx, c.lookups, batch[:0], max); !ok {
			return
		}
		c.e.stats.LookupBatches.Add(1)
		c.e.stats.Lookups.Add(int64(len(batch)))
		cmds = cmds[:0]
		ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.RedisTimeout)
		pipe := c.e.rdb.Pipeline()
		for _, pl := range batch {
			cmds = append(cmds, pipe.HMGet(ctx, pl.key, pl.fields...))
		}
		_, err := pipe.Exec(ctx)
		cancel()
		for i, pl := range batch {
			if err != nil {
				pl.out <- lookupResult{err: redisErr(err)}
				continue
			}
			pl.out <- lookupResult{vals: cmds[i].Val()}
		}
	}
}
