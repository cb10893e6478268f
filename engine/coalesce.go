package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// coalescer sends concurrent requests to Redis together. Requests wait in one queue; each of
// CoalesceWorkers workers takes whatever has queued up while its previous round trip was in
// flight (up to CoalesceMaxBatch), groups the reserves by partition and sends one pipeline:
// one reserve_batch call per partition (reserve when a partition has a single request), and
// one call per other request (the commit, release or extend of a one-part hold, a cart's
// stored answer). A lone request goes out at once and a crowd shares round trips and script
// calls. No timer delays anything.
type coalescer struct {
	e     *Engine
	queue chan *pendingPlace
	// lookups queues the sold-out path's idempotency reads (see lookup.go).
	lookups chan *pendingLookup
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type pendingPlace struct {
	ctx context.Context
	// op is the operation of a request that is not a reserve (""); it gets a call of its own.
	op        string
	partition int
	args      []any
	out       chan placeResult
}

type placeResult struct {
	r   reply
	err error
}

var errEngineClosed = errors.New("engine closed")

func newCoalescer(e *Engine) *coalescer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &coalescer{e: e, ctx: ctx, cancel: cancel,
		queue:   make(chan *pendingPlace, 4*e.cfg.CoalesceMaxBatch),
		lookups: make(chan *pendingLookup, 4*e.cfg.CoalesceMaxBatch)}
	for range e.cfg.CoalesceWorkers {
		c.wg.Add(2)
		go c.lookupWork()
		go c.work()
	}
	return c
}

func (c *coalescer) stop() {
	c.cancel()
	c.wg.Wait()
}

// submit queues one reserve request (reserve.lua's ARGV[3..]) for partition p and waits for
// its reply. A caller that leaves may still have its request run; a part placed for it
// expires by itself.
func (c *coalescer) submit(ctx context.Context, p int, args []any) (reply, error) {
	return c.call(ctx, "", p, args)
}

// call queues one call of operation op ("": a reserve) on partition p and waits for its reply.
func (c *coalescer) call(ctx context.Context, op string, p int, args []any) (reply, error) {
	pp := &pendingPlace{ctx: ctx, op: op, partition: p, args: args, out: make(chan placeResult, 1)}
	res, err := queueAndWait(c, ctx, c.queue, pp, pp.out)
	if err != nil {
		return nil, err
	}
	return res.r, res.err
}

// queueAndWait puts item on q and waits for its result on out, unless the caller's ctx ends
// or the engine closes first (also while the item is still queued).
func queueAndWait[T, R any](c *coalescer, ctx context.Context, q chan<- T, item T, out <-chan R) (R, error) {
	var zero R
	select {
	case q <- item:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-c.ctx.Done():
		return zero, errEngineClosed
	}
	select {
	case res := <-out:
		return res, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-c.ctx.Done():
		return zero, errEngineClosed
	}
}

// partitionCall is one script call of a round trip: the reserves of one partition, in the
// order they queued, or one other request.
type partitionCall struct {
	partition int
	op        string
	batch     []*pendingPlace
}

func (c *coalescer) work() {
	defer c.wg.Done()
	max := c.e.cfg.CoalesceMaxBatch
	batch := make([]*pendingPlace, 0, max)
	var calls []partitionCall
	slot := map[int]int{} // partition -> index in calls
	for {
		var ok bool
		if batch, ok = takeBatch(c.ctx, c.queue, batch[:0], max); !ok {
			return
		}
		calls = calls[:0]
		clear(slot)
		for _, pp := range batch {
			if err := pp.ctx.Err(); err != nil {
				pp.out <- placeResult{err: err}
				continue
			}
			if pp.op != "" {
				calls = append(calls, partitionCall{partition: pp.partition, op: pp.op, batch: []*pendingPlace{pp}})
				continue
			}
			i, ok := slot[pp.partition]
			if !ok {
				i = len(calls)
				slot[pp.partition] = i
				calls = append(calls, partitionCall{partition: pp.partition})
			}
			calls[i].batch = append(calls[i].batch, pp)
		}
		if len(calls) > 0 {
			c.flush(calls)
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

// flush sends the calls of one round trip as a pipeline and hands each request its reply.
func (c *coalescer) flush(calls []partitionCall) {
	e := c.e
	e.stats.RoundTrips.Add(1)
	ops := make([]opCall, len(calls))
	for i := range calls {
		pc := &calls[i]
		if pc.op != "" {
			e.stats.Ops.Add(1)
		} else {
			e.stats.Batches.Add(1)
			e.stats.BatchedRequests.Add(int64(len(pc.batch)))
			if h := e.stats.batchHook.Load(); h != nil {
				(*h)(len(pc.batch))
			}
		}
		ops[i] = opCall{name: pc.name(), p: pc.partition, args: pc.args()}
	}
	out, errs := e.runAll(c.ctx, e.nowMs(), ops)
	for i := range calls {
		c.answer(&calls[i], out[i], errs[i])
	}
}

func (pc *partitionCall) name() string {
	if pc.op != "" {
		return pc.op
	}
	if len(pc.batch) == 1 {
		return "reserve"
	}
	return "reserve_batch"
}

func (pc *partitionCall) args() []any {
	if len(pc.batch) == 1 {
		return pc.batch[0].args
	}
	args := make([]any, 0, len(pc.batch)*reqWidth)
	for _, pp := range pc.batch {
		args = append(args, pp.args...)
	}
	return args
}

// answer hands each request of a call its own reply.
func (c *coalescer) answer(pc *partitionCall, r reply, err error) {
	p, batch := pc.partition, pc.batch
	if len(batch) == 1 || (err == nil && r.code() == "FENCED") {
		for _, pp := range batch {
			pp.out <- placeResult{r, err}
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
	RoundTrips      atomic.Int64 // pipelines the coalescer sent
	Batches         atomic.Int64 // reserve script calls those pipelines carried (one per partition)
	BatchedRequests atomic.Int64 // reserves those calls carried
	Ops             atomic.Int64 // other calls those pipelines carried (commit, release, extend, remember)
	LookupBatches   atomic.Int64 // round trips of the sold-out path's idempotency reads
	Lookups         atomic.Int64 // reads those round trips carried
	Expired         atomic.Int64 // hold parts restored by Sweep calls of this engine
	batchHook       atomic.Pointer[func(size int)]
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// OnBatch registers a function called with the size of every coalesced call (for a histogram).
func (s *Stats) OnBatch(f func(size int)) { s.batchHook.Store(&f) }
