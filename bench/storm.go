package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// stormTTL is the lifetime of the holds the storm leaves to expire.
const stormTTL = 2 * time.Second

// expiryStorm places StormHolds short holds and abandons them; while they expire (and the
// sweeper gives their units back) shoppers keep reserving and committing on the same pool.
func (b *bench) expiryStorm(ctx context.Context) (*Scenario, error) {
	o := b.opts
	pool := engine.PoolConfig{Location: "bench", SKU: "storm", Vendor: "bench", Shards: o.Shards}
	stock := int64(o.StormHolds) + 1_000_000
	if err := b.makePools(ctx, []engine.PoolConfig{pool}, stock); err != nil {
		return nil, err
	}
	b.settle(ctx, 30*time.Second)

	// Fill: abandoned holds, as fast as the clients can place them.
	fill := b.newReserveOp("sf", pool.Location, pool.SKU, stormTTL)
	defer fill.cl.close()
	var placed atomic.Int64
	fillOp := func(ctx context.Context, w int) (Outcome, Kind) {
		out, kind := fill.op(ctx, w)
		if out == OK {
			placed.Add(1)
		}
		return out, kind
	}
	frun := b.drive(ctx, Load{Workers: o.Clients, Duration: o.Duration, Done: func() bool { return placed.Load() >= int64(o.StormHolds) },
		Progress: b.progress("expiry-storm fill")}, fillOp)
	abandoned := int64(len(fill.granted()))

	// Storm: shoppers reserve and commit while the abandoned holds expire.
	s := b.newShopper("ss", []engine.PoolConfig{pool}, func(*rand.Rand) func([]int) []int {
		return func(lines []int) []int { return append(lines, 0) }
	}, "", nil)
	defer s.cl.close()
	var worst time.Duration
	stopWatch := every(100*time.Millisecond, func() { worst = max(worst, b.sweeper.Lag()) })
	run := b.closedLoop(ctx, "expiry-storm", o.Duration, s.op)
	want, failed := s.finish(ctx, b, stock)
	heldAfterStorm := int64(-1)
	if a, err := b.eng.Availability(ctx, pool.Location, pool.SKU); err == nil {
		heldAfterStorm = a.Held
	}
	// Every abandoned hold must come back by itself; wait for the sweeper (bounded).
	limit := 60*time.Second + time.Duration(float64(abandoned)/max(b.env.Sweep.Rate, 1)*2*float64(time.Second))
	waited := time.Now()
	for time.Since(waited) < limit {
		a, err := b.eng.Availability(ctx, pool.Location, pool.SKU)
		if err == nil && a.Held == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopWatch()
	lagS := round(worst.Seconds(), 3)
	iv, err := b.check(ctx, want, false)
	if err != nil {
		return nil, err
	}
	sc := &Scenario{Name: ExpiryStorm, Invariants: iv, Oversold: iv.Oversold, Undersold: iv.Undersold, SweeperLagMaxS: &lagS}
	sc.Notes = append(sc.Notes, fmt.Sprintf("%d holds abandoned (ttl %s); %d units still held when the storm phase ended; all back %.1f s after it",
		abandoned, stormTTL, heldAfterStorm, time.Since(waited).Seconds()))
	if failed > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d open holds could not be released at the end", failed))
	}
	fstats := frun.summary()
	all := run.summary()
	res := summarize(run.Samples, run.Elapsed, func(s sample) bool { return s.kind == Reserve })
	sc.Phases = []Phase{{Name: "fill (abandoned holds)", Stats: fstats}, {Name: "storm: all requests", Stats: all}, {Name: "storm: reserves", Stats: res}}
	sc.ThroughputRPS, sc.P50Ms, sc.P99Ms, sc.P999Ms = all.ThroughputRPS, res.P50Ms, res.P99Ms, res.P999Ms
	sc.Errors = fstats.Errors + all.Errors
	sc.Series = series(run.Samples, run.Elapsed, 250*time.Millisecond)
	return sc, nil
}
