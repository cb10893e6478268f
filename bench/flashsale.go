package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// holdTTL keeps the bench's holds alive through a run; the scenarios end them themselves
// (except the expiry storm's, which are meant to expire).
const holdTTL = 30 * time.Minute

func reserveBody(location, sku string, ttl time.Duration) []byte {
	return fmt.Appendf(nil, `{"location":%q,"sku":%q,"qty":1,"ttl_ms":%d}`, location, sku, ttl.Milliseconds())
}

// reserveOp is a closed-loop op placing single-unit holds on one pool over HTTP; granted
// hold ids are kept per worker.
type reserveOp struct {
	cl   *client
	keys *keys
	body []byte
	ids  [][]string
}

func (b *bench) newReserveOp(tag, location, sku string, ttl time.Duration) *reserveOp {
	n := b.opts.Clients
	return &reserveOp{cl: newClient(b.addr, b.apiKey, n), keys: newKeys(tag, n), body: reserveBody(location, sku, ttl), ids: make([][]string, n)}
}

func (r *reserveOp) op(_ context.Context, w int) (Outcome, Kind) {
	status, body, err := r.cl.post(w, "/v1/holds", r.body, r.keys.next(w))
	switch {
	case err != nil:
		return Failed, Reserve
	case status == 201:
		id := holdID(body)
		if id == "" {
			return Failed, Reserve
		}
		r.ids[w] = append(r.ids[w], id)
		return OK, Reserve
	case status == 409:
		return Refused, Reserve
	case status == 503:
		return Shed, Reserve
	}
	return Failed, Reserve
}

func (r *reserveOp) granted() []string {
	var all []string
	for _, ids := range r.ids {
		all = append(all, ids...)
	}
	return all
}

// lagWatch samples the persister's lag until stopped and keeps the worst.
func (b *bench) lagWatch(ctx context.Context) func() *Lag {
	worst := &Lag{}
	stop := every(250*time.Millisecond, func() {
		if err := b.persister.UpdateLag(ctx); err != nil {
			return
		}
		n, age := b.persister.Lag()
		worst.MaxEntries = max(worst.MaxEntries, n)
		worst.MaxSeconds = max(worst.MaxSeconds, round(age.Seconds(), 3))
	})
	return func() *Lag {
		stop()
		return worst
	}
}

// flashSale sells one hot SKU: many more attempts than units, until the run ends. The
// selling phase ends with the last hold granted; the sold-out phase is every request sent
// after it. Then an open-loop run at half the selling rate measures latency without hiding
// queueing, on a second pool stocked so it does not sell out.
func (b *bench) flashSale(ctx context.Context, mem *Memory) (*Scenario, error) {
	o := b.opts
	pool := engine.PoolConfig{Location: "bench", SKU: "flash", Vendor: "bench", Shards: o.Shards}
	if err := b.makePools(ctx, []engine.PoolConfig{pool}, o.Stock); err != nil {
		return nil, err
	}
	b.settle(ctx, 30*time.Second)
	before, err := b.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	r := b.newReserveOp("fs", pool.Location, pool.SKU, holdTTL)
	defer r.cl.close()
	watch := b.lagWatch(ctx)
	run := b.closedLoop(ctx, "flash-sale", o.Duration, r.op)
	lag := watch()
	if o.NoPersister {
		lag = nil
	}
	ids := r.granted()
	if after, err := b.usedMemory(ctx); err == nil && len(ids) > 0 {
		mem.OpenHolds = int64(len(ids))
		mem.RedisBytesPerHold = math.Round(float64(after-before) / float64(len(ids)))
	}

	sc := &Scenario{Name: FlashSale, PersisterLag: lag}
	var lastGrant int64
	for _, s := range run.Samples {
		if s.out == OK {
			lastGrant = max(lastGrant, s.start+s.lat)
		}
	}
	soldOut := int64(len(ids)) >= o.Stock
	if !soldOut {
		lastGrant = int64(run.Elapsed)
		sc.Notes = append(sc.Notes, fmt.Sprintf("the stock of %d did not sell out in %s: raise --duration or lower --stock", o.Stock, o.Duration))
	}
	selling := summarize(run.Samples, time.Duration(lastGrant), func(s sample) bool { return s.start+s.lat <= lastGrant })
	run.costWindow(&selling, 0, time.Duration(lastGrant))
	sc.Phases = append(sc.Phases, Phase{Name: "selling", Stats: selling})
	if soldOut {
		sold := summarize(run.Samples, run.Elapsed-time.Duration(lastGrant), func(s sample) bool { return s.start > lastGrant })
		run.costWindow(&sold, time.Duration(lastGrant), run.Elapsed)
		sc.Phases = append(sc.Phases, Phase{Name: "sold out", Stats: sold})
	}
	sc.Series = series(run.Samples, run.Elapsed, 250*time.Millisecond)
	sc.ThroughputRPS, sc.P50Ms, sc.P99Ms, sc.P999Ms = selling.ThroughputRPS, selling.P50Ms, selling.P99Ms, selling.P999Ms
	for _, p := range sc.Phases {
		sc.Errors += p.Errors
	}

	failed := b.endHolds(ctx, ids, true)
	if failed > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d granted holds could not be committed", failed))
	}
	want := []expectation{{pool: pool, stock: o.Stock, committed: int64(len(ids)) - failed}}
	iv, err := b.check(ctx, want, selling.Refused+sc.phaseRefused("sold out") > 0)
	if err != nil {
		return nil, err
	}
	if over := int64(len(ids)) - o.Stock; over > 0 {
		iv.Oversold += over
		iv.Violations = append(iv.Violations, fmt.Sprintf("%d holds granted beyond the stock of %d", over, o.Stock))
	}

	// Open loop at half the selling rate, on a pool that cannot sell out during it.
	rate := o.Rate
	if rate == 0 {
		rate = math.Floor(selling.ThroughputRPS / 2)
	}
	if rate >= 1 {
		oiv, err := b.flashOpenLoops(ctx, sc, rate)
		if err != nil {
			return nil, err
		}
		iv = mergeInvariants(iv, oiv)
	}
	sc.Invariants = iv
	sc.Oversold, sc.Undersold = iv.Oversold, iv.Undersold
	return sc, nil
}

// flashOpenLoops drives the flash sale's open loops at rate: over HTTP (the target), then the
// same against http_hello (what the load generator and this machine add) and against the
// engine in process (what HTTP adds). It fills sc.OpenLoop and returns what the pools' checks found.
func (b *bench) flashOpenLoops(ctx context.Context, sc *Scenario, rate float64) (Invariants, error) {
	overHTTP := func(pool engine.PoolConfig) (Op, func() []string, func()) {
		ro := b.newReserveOp("fo", pool.Location, pool.SKU, holdTTL)
		return ro.op, ro.granted, ro.cl.close
	}
	ostats, missed, oiv, err := b.openRun(ctx, "flash-open", rate, overHTTP)
	if err != nil {
		return Invariants{}, err
	}
	sc.OpenLoop = &OpenLoop{RateRPS: rate, Missed: missed, Stats: ostats}
	sc.Errors += ostats.Errors + missed
	op, stop, err := b.helloOp(ctx)
	if err != nil {
		return Invariants{}, err
	}
	hrun := b.openLoop(ctx, "http_hello", rate, op)
	stop()
	hs := hrun.summary()
	sc.OpenLoop.Hello = &hs
	ips, imissed, iiv, err := b.openRun(ctx, "flash-open-engine", rate, b.inProcessOp)
	if err != nil {
		return Invariants{}, err
	}
	ips.Errors += imissed
	sc.OpenLoop.InProcess = &ips
	return mergeInvariants(oiv, iiv), nil
}

// openRun drives an open loop at rate (for OpenDuration) on a fresh pool that cannot sell
// out, commits every hold it was granted and checks the pool. mk builds the request for the
// pool, the list of holds granted, and what to close afterwards.
func (b *bench) openRun(ctx context.Context, sku string, rate float64, mk func(engine.PoolConfig) (Op, func() []string, func())) (Stats, int64, Invariants, error) {
	o := b.opts
	b.settle(ctx, 30*time.Second)
	pool := engine.PoolConfig{Location: "bench", SKU: sku, Vendor: "bench", Shards: o.Shards}
	stock := min(int64(rate*o.OpenDuration.Seconds()*1.5)+1000, 1_000_000_000)
	if err := b.makePools(ctx, []engine.PoolConfig{pool}, stock); err != nil {
		return Stats{}, 0, Invariants{}, err
	}
	op, granted, done := mk(pool)
	defer done()
	run := b.openLoop(ctx, sku, rate, op)
	st := run.summary()
	ids := granted()
	failed := b.endHolds(ctx, ids, true)
	iv, err := b.check(ctx, []expectation{{pool: pool, stock: stock, committed: int64(len(ids)) - failed}}, false)
	return st, run.Missed, iv, err
}

// inProcessOp reserves one unit of pool through the engine itself, no HTTP.
func (b *bench) inProcessOp(pool engine.PoolConfig) (Op, func() []string, func()) {
	keys := newKeys("fe", b.opts.Clients)
	ids := make([][]string, b.opts.Clients)
	op := func(ctx context.Context, w int) (Outcome, Kind) {
		h, err := b.eng.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: pool.Location, SKU: pool.SKU, Qty: 1}},
			IdempotencyKey: string(keys.next(w)), TTL: holdTTL, Actor: "bench"})
		if err != nil {
			return Failed, Reserve
		}
		ids[w] = append(ids[w], h.ID)
		return OK, Reserve
	}
	return op, func() []string { return slices.Concat(ids...) }, func() {}
}

func (s *Scenario) phaseRefused(name string) int64 {
	for _, p := range s.Phases {
		if p.Name == name {
			return p.Refused
		}
	}
	return 0
}

func mergeInvariants(a, b Invariants) Invariants {
	a.Pools += b.Pools
	a.Stock += b.Stock
	a.Available += b.Available
	a.Held += b.Held
	a.Committed += b.Committed
	a.ClientCommitted += b.ClientCommitted
	a.Oversold += b.Oversold
	a.Undersold += b.Undersold
	a.Violations = append(a.Violations, b.Violations...)
	return a
}

// usedMemory reads Redis INFO memory's used_memory (summed over a cluster's masters).
func (b *bench) usedMemory(ctx context.Context) (int64, error) {
	info, err := b.env.Redis.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, v := range infoValues(info, "used_memory") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
