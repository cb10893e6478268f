package engine

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// read sends plain commands (reads, and the sold-out path's refusal records) through the
// coalescer's lookup workers: concurrent callers share one pipeline, one round trip, and
// never wait behind a round trip of script calls. Each command carries its own reply.
func (c *coalescer) read(ctx context.Context, cmds ...redis.Cmder) error {
	pp := &pendingPlace{ctx: ctx, natives: cmds, out: make(chan placeResult, 1)}
	_, err := c.wait(ctx, c.lookups, pp)
	return err
}

// lookupWork sends whatever commands queued up while its previous pipeline was in flight.
func (c *coalescer) lookupWork() {
	defer c.wg.Done()
	max := c.e.cfg.CoalesceMaxBatch
	batch := make([]*pendingPlace, 0, max)
	for {
		var ok bool
		if batch, ok = takeBatch(c.ctx, c.lookups, batch[:0], max); !ok {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.RedisTimeout)
		pipe := c.e.rdb.Pipeline()
		n := 0
		for _, pp := range batch {
			if !pp.state.CompareAndSwap(queued, taken) {
				continue
			}
			batch[n] = pp
			n++
			for _, cmd := range pp.natives {
				_ = pipe.Process(ctx, cmd)
			}
		}
		batch = batch[:n]
		if n > 0 {
			c.e.stats.LookupBatches.Add(1)
			c.e.stats.Lookups.Add(int64(n))
			pipe.Exec(ctx) // each command's own error is read by its caller
		}
		cancel()
		for _, pp := range batch {
			pp.out <- placeResult{}
		}
	}
}

// plain sends cmds in one round trip: through the coalescer's lookup workers when it is on,
// else as a pipeline of their own. Each command carries its own reply or error (see
// nativeErr); the error returned is only that of a caller who left before they were sent.
func (e *Engine) plain(ctx context.Context, cmds ...redis.Cmder) error {
	if e.batchers != nil {
		return e.batchers.read(ctx, cmds...)
	}
	e.stats.LookupBatches.Add(1)
	e.stats.Lookups.Add(1)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, cmd := range cmds {
		_ = pipe.Process(ctx, cmd)
	}
	pipe.Exec(ctx)
	return nil
}
