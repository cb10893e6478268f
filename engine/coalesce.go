package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// coalescer sends concurrent reserves aimed at one partition to Redis as one reserve_batch
// call. Each partition has a queue and CoalesceWorkers workers; a worker takes whatever has
// queued up while the previous call was in flight (up to CoalesceMaxBatch), so a lone request
// goes out at once and a crowd shares round trips. No timer delays anything.
type coalescer struct {
	e      *Engine
	queues []chan *pendingPlace
	// lookups queues the sold-out path's idempotency reads (see lookup.go).
	lookups chan *pendingLookup
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type pendingPlace struct {
	ctx  context.Context
	args []any
	out  chan placeResult
}

type placeResult struct {
	r   reply
	err error
}

var errEngineClosed = errors.New("engine closed")

func newCoalescer(e *Engine) *coalescer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &coalescer{e: e, queues: make([]chan *pendingPlace, e.cfg.Partitions), ctx: ctx, cancel: cancel,
		lookups: make(chan *pendingLookup, 4*e.cfg.CoalesceMaxBatch)}
	for range e.cfg.CoalesceWorkers {
		c.wg.Add(1)
		go c.lookupWork()
	}
	for p := range c.queues {
		c.queues[p] = make(chan *pendingPlace, 4*e.cfg.CoalesceMaxBatch)
		for range e.cfg.CoalesceWorkers {
			c.wg.Add(1)
			go c.work(p)
		}
	}
	return c
}

func (c *coalescer) stop() {
	c.cancel()
	c.wg.Wait()
}

// submit queues one reserve request (reserve.lua's ARGV[3..]) for partition p and waits for
// its reply.
func (c *coalescer) submit(ctx context.Context, p int, args []any) (reply, error) {
	pp := &pendingPlace{ctx: ctx, args: args, out: make(chan placeResult, 1)}
	select {
	case c.queues[p] <- pp:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errEngineClosed
	}
	select {
	case res := <-pp.out:
		return res.r, res.err
	case <-ctx.Done():
		// The request may still run; a part placed for a caller that left expires by itself.
		return nil, ctx.Err()
	}
}

func (c *coalescer) work(p int) {
	defer c.wg.Done()
	q := c.queues[p]
	max := c.e.cfg.CoalesceMaxBatch
	batch := make([]*pendingPlace, 0, max)
	for {
		var ok bool
		if batch, ok = takeBatch(c.ctx, q, batch[:0], max); !ok {
			return
		}
		live := batch[:0]
		for _, pp := range batch {
			if err := pp.ctx.Err(); err != nil {
				pp.out <- placeResult{err: err}
				continue
			}
			live = append(live, pp)
		}
		if len(live) > 0 {
			c.flush(p, live)
		}
	}
}

// takeBatch waits for one item of q, then appends whatever else is queued, up to max items:
// a lone item goes out at once and a crowd shares one round trip. It reports false when ctx
// ends first.
func takeBatch[T any](ctx context.Context, q <-chan T, batch []T, max int) ([]T, bool) {
	select {
	case x := <-q:
		batch = append(batch, x)
	case <-ctx.Done():
		return batch, false
	}
	for len(batch) < max {
		select {
		case x := <-q:
			batch = append(batch, x)
		default:
			return batch, true
		}
	}
	return batch, true
}

func (c *coalescer) flush(p int, batch []*pendingPlace) {
	e := c.e
	now := e.nowMs()
	e.stats.Batches.Add(1)
	e.stats.BatchedRequests.Add(int64(len(batch)))
	if h := e.stats.batchHook.Load(); h != nil {
		(*h)(len(batch))
	}
	if len(batch) == 1 {
		r, err := e.run(c.ctx, "reserve", p, now, batch[0].args...)
		batch[0].out <- placeResult{r, err}
		return
	}
	args := make([]any, 0, len(batch)*reqWidth)
	for _, pp := range batch {
		args = append(args, pp.args...)
	}
	r, err := e.run(c.ctx, "reserve_batch", p, now, args...)
	if err == nil && r.code() == "FENCED" {
		for _, pp := range batch {
			pp.out <- placeResult{r: r}
		}
		return
	}
	if err == nil && len(r) != len(batch) {
		err = fmt.Errorf("reserve_batch on partition %d: %d replies for %d requests", p, len(r), len(batch))
	}
	for i, pp := range batch {
		if err != nil {
			pp.out <- placeResult{err: err}
			continue
		}
		one, ok := r[i].([]any)
		if !ok {
			pp.out <- placeResult{err: fmt.Errorf("reserve_batch on partition %d: reply %d is %T", p, i, r[i])}
			continue
		}
		pp.out <- placeResult{r: reply(one)}
	}
}

// Stats counts what the engine did, for metrics.
type Stats struct {
	Reserves        atomic.Int64 // reservations that placed a hold
	SoldOutFast     atomic.Int64 // reservations refused from the in-process sold-out memory
	Batches         atomic.Int64 // reserve calls sent by the coalescer
	BatchedRequests atomic.Int64 // requests those calls carried
	LookupBatches   atomic.Int64 // round trips of the sold-out path's idempotency reads
	Lookups         atomic.Int64 // reads those round trips carried
	Expired         atomic.Int64 // hold parts restored by Sweep calls of this engine
	batchHook       atomic.Pointer[func(size int)]
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// OnBatch registers a function called with the size of every coalesced call (for a histogram).
func (s *Stats) OnBatch(f func(size int)) { s.batchHook.Store(&f) }
