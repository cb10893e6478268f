package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// coalescer sends concurrent requests to Redis together. Requests wait in one queue; each of
// CoalesceWorkers workers takes whatever has queued up while its previous round trip was in
// flight (up to CoalesceMaxBatch), groups it by partition and sends one pipeline: one
// reserve_batch call per partition for its reserves and one end_batch call for its commits
// and releases (reserve, commit or release when there is a single one), and one call per
// other request (the extend of a one-part hold, a cart's stored answer). A lone request goes
// out at once and a crowd shares round trips and script calls. No timer delays anything.
type coalescer struct {
	e     *Engine
	queue chan *pendingPlace
	// lookups queues the sold-out path's commands (see lookup.go), apart from the script
	// calls so that they never wait behind them.
	lookups chan *pendingPlace
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type pendingPlace struct {
	ctx context.Context
	// op is the request's operation (reserve, commit, ...); see kindOf. natives go out in
	// the same round trip; on the lookup queue a request has natives only.
	op        string
	partition int
	record    string // the key record the operation takes, if any
	args      []any
	natives   []redis.Cmder
	out       chan placeResult
	state     atomic.Int32 // queued, taken (it will be sent) or abandoned (it never will)
}

const (
	queued int32 = iota
	taken
	abandoned
)

type placeResult struct {
	r   reply
	err error
}

var errEngineClosed = errors.New("engine closed")

func newCoalescer(e *Engine) *coalescer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &coalescer{e: e, ctx: ctx, cancel: cancel,
		queue:   make(chan *pendingPlace, 4*e.cfg.CoalesceMaxBatch),
		lookups: make(chan *pendingPlace, 4*e.cfg.CoalesceMaxBatch)}
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

// call queues one call of operation op on partition p (with key record record, if not
// empty) and waits for its reply. Plain commands natives, if any, go out in the same round
// trip (each carries its own reply).
func (c *coalescer) call(ctx context.Context, op string, p int, record string, args []any, natives ...redis.Cmder) (reply, error) {
	pp := &pendingPlace{ctx: ctx, op: op, partition: p, record: record, args: args, natives: natives, out: make(chan placeResult, 1)}
	return c.wait(ctx, c.queue, pp)
}

// wait queues pp and waits for its result. A caller whose ctx ends while pp is still queued
// takes it back (it will never be sent) and gets ctx's error; once a worker has taken it, the
// caller waits for the reply, which comes within FLASHHOLD_REDIS_TIMEOUT, so that it always
// knows whether its request ran.
func (c *coalescer) wait(ctx context.Context, q chan<- *pendingPlace, pp *pendingPlace) (reply, error) {
	select {
	case q <- pp:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errEngineClosed
	}
	select {
	case res := <-pp.out:
		return res.r, res.err
	case <-ctx.Done():
		if pp.state.CompareAndSwap(queued, abandoned) {
			return nil, ctx.Err()
		}
	case <-c.ctx.Done():
		if pp.state.CompareAndSwap(queued, abandoned) {
			return nil, errEngineClosed
		}
	}
	res := <-pp.out
	return res.r, res.err
}

// callKind is what a call of a round trip carries.
type callKind int

const (
	reserves callKind = iota // reserves of one partition: reserve, or reserve_batch for several
	ends                     // commits and releases of one partition: commit or release, or end_batch
	single                   // one other request (extend, remember)
)

// kindOf is the kind of call a request of operation op goes into.
func kindOf(op string) callKind {
	switch op {
	case "reserve":
		return reserves
	case "commit", "release":
		return ends
	}
	return single
}

// partitionCall is one script call of a round trip: the reserves, or the commits and
// releases, of one partition in the order they queued; or one other request.
type partitionCall struct {
	partition int
	record    string
	kind      callKind
	batch     []*pendingPlace
}

// slotKey finds the batched call of a partition in a round trip.
type slotKey struct {
	partition int
	kind      callKind
}

func (c *coalescer) work() {
	defer c.wg.Done()
	max := c.e.cfg.CoalesceMaxBatch
	batch := make([]*pendingPlace, 0, max)
	var calls []partitionCall
	slot := map[slotKey]int{} // index in calls
	for {
		var ok bool
		if batch, ok = takeBatch(c.ctx, c.queue, batch[:0], max); !ok {
			return
		}
		calls = calls[:0]
		clear(slot)
		var natives []redis.Cmder
		now := c.e.nowMs()
		for _, pp := range batch {
			if !pp.state.CompareAndSwap(queued, taken) {
				continue // its caller left before it went out
			}
			if exp, ok := reserveExpiry(pp); ok && exp <= now {
				// It waited here past the expiry it was given: the hold would be born
				// expired (and the script refuses it, with every request of its call).
				pp.out <- placeResult{err: fmt.Errorf("%w: the request waited %d ms for Redis, past its hold's expiry", ErrUnavailable, now-exp)}
				continue
			}
			natives = append(natives, pp.natives...)
			kind := kindOf(pp.op)
			if kind == single {
				calls = append(calls, partitionCall{partition: pp.partition, record: pp.record, kind: single, batch: []*pendingPlace{pp}})
				continue
			}
			key := slotKey{pp.partition, kind}
			i, ok := slot[key]
			if !ok {
				i = len(calls)
				slot[key] = i
				calls = append(calls, partitionCall{partition: pp.partition, kind: kind})
			}
			calls[i].batch = append(calls[i].batch, pp)
		}
		if len(calls) > 0 {
			c.flush(calls, natives, now)
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

// flush sends the calls of one round trip as a pipeline, after the plain commands natives,
// and hands each request its reply.
func (c *coalescer) flush(calls []partitionCall, natives []redis.Cmder, now int64) {
	e := c.e
	e.stats.RoundTrips.Add(1)
	ops := make([]opCall, len(calls))
	for i := range calls {
		pc := &calls[i]
		if pc.kind == ends {
			e.stats.EndCalls.Add(1)
		}
		if pc.kind != reserves {
			e.stats.Ops.Add(int64(len(pc.batch)))
		} else {
			e.stats.Batches.Add(1)
			e.stats.BatchedRequests.Add(int64(len(pc.batch)))
			if h := e.stats.batchHook.Load(); h != nil {
				(*h)(len(pc.batch))
			}
		}
		ops[i] = opCall{name: pc.name(), p: pc.partition, record: pc.record, args: pc.args()}
	}
	out, errs := e.runAll(c.ctx, now, ops, natives...)
	for i := range calls {
		c.answer(&calls[i], out[i], errs[i])
	}
}

// reserveExpiry is the expiry a queued reserve asks for (reserve.lua's ARGV[8]).
func reserveExpiry(pp *pendingPlace) (int64, bool) {
	if pp.op != "reserve" || len(pp.args) < 6 {
		return 0, false
	}
	exp, ok := pp.args[5].(int64)
	return exp, ok
}

func (pc *partitionCall) name() string {
	switch {
	case len(pc.batch) == 1:
		return pc.batch[0].op
	case pc.kind == reserves:
		return "reserve_batch"
	}
	return "end_batch"
}

// args are the call's arguments after the partition number and now: each request's own.
func (pc *partitionCall) args() [][]any {
	args := make([][]any, len(pc.batch))
	for i, pp := range pc.batch {
		if pc.kind == ends && len(pc.batch) > 1 {
			args[i] = endRequest(pp.op, pp.args)
		} else {
			args[i] = pp.args
		}
	}
	return args
}

// endRequest turns the arguments of a commit (part, actor, keep, owner) or a release (part,
// actor, keep, reason, owner) into one request of end_batch (outcome, part, actor, keep,
// reason, owner).
func endRequest(op string, args []any) []any {
	if op == "commit" {
		return []any{"COMMITTED", args[0], args[1], args[2], "", args[3]}
	}
	return []any{"RELEASED", args[0], args[1], args[2], args[3], args[4]}
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
		err = fmt.Errorf("%s on partition %d: %d replies for %d requests", pc.name(), p, len(r), len(batch))
	}
	for i, pp := range batch {
		if err != nil {
			pp.out <- placeResult{err: err}
			continue
		}
		var one reply
		switch v := r[i].(type) {
		case []any:
			one = v
		case int64:
			if pc.kind == reserves { // reserve_batch answers a part placed now with its available count alone
				one = reply{"OK", pp.args[reqQty], pp.args[reqExp], v, "new"}
			}
		}
		if one == nil {
			pp.out <- placeResult{err: fmt.Errorf("%s on partition %d: reply %d is %T", pc.name(), p, i, r[i])}
			continue
		}
		pp.out <- placeResult{r: one}
	}
}

// Stats counts what the engine did, for metrics.
type Stats struct {
	Reserves        atomic.Int64 // reservations that placed a hold
	SoldOutFast     atomic.Int64 // reservations refused from the in-process sold-out memory
	RoundTrips      atomic.Int64 // pipelines the coalescer sent
	Batches         atomic.Int64 // reserve script calls those pipelines carried (one per partition)
	BatchedRequests atomic.Int64 // reserves those calls carried
	Ops             atomic.Int64 // other requests those pipelines carried (commit, release, extend, remember)
	EndCalls        atomic.Int64 // commit, release and end_batch calls that carried the commits and releases
	LookupBatches   atomic.Int64 // round trips of the sold-out path's idempotency reads
	Lookups         atomic.Int64 // reads those round trips carried
	Expired         atomic.Int64 // hold parts restored by Sweep calls of this engine
	batchHook       atomic.Pointer[func(size int)]
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// OnBatch registers a function called with the size of every coalesced call (for a histogram).
func (s *Stats) OnBatch(f func(size int)) { s.batchHook.Store(&f) }
