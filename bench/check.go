package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flashhold/flashhold/engine"
)

// setupActor names the bench in the events it writes outside the load itself.
const setupActor = "bench"

// setupWorkers is how many concurrent callers set up pools and end holds outside the load.
const setupWorkers = 32

// parallel calls f for every item from setupWorkers goroutines and returns when all are done.
func parallel[T any](items []T, f func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range setupWorkers {
		wg.Go(func() {
			for it := range work {
				f(it)
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
}

// makePools creates pools and gives each stock units, from a few concurrent callers.
func (b *bench) makePools(ctx context.Context, pools []engine.PoolConfig, stock int64) error {
	var first error
	var once sync.Once
	parallel(pools, func(c engine.PoolConfig) {
		err := b.eng.CreatePool(ctx, c, setupActor)
		if err == nil && stock > 0 {
			_, err = b.eng.Adjust(ctx, engine.AdjustRequest{Location: c.Location, SKU: c.SKU, Kind: engine.Restock, Qty: stock,
				TransactionID: "bench-stock-" + c.Location + "-" + c.SKU, Actor: setupActor, Reason: "bench stock"})
		}
		if err != nil {
			once.Do(func() { first = fmt.Errorf("create pool %s/%s: %w", c.Location, c.SKU, err) })
		}
	})
	return first
}

// endHolds commits (or releases) every hold in ids through the engine; it returns how many
// it could not end.
func (b *bench) endHolds(ctx context.Context, ids []string, commit bool) int64 {
	var failed atomic.Int64
	parallel(ids, func(id string) {
		var err error
		if commit {
			err = b.eng.Commit(ctx, id, setupActor)
		} else {
			err = b.eng.Release(ctx, id, setupActor)
		}
		if err != nil {
			failed.Add(1)
		}
	})
	return failed.Load()
}

// expectation is what the load generator knows about one pool.
type expectation struct {
	pool  engine.PoolConfig
	stock int64
	// committed is the units clients were told they bought.
	committed int64
}

// check reads every pool's counters and compares them with what was stocked and sold.
// refused says whether buyers were turned away as sold out; units left available then count
// as undersold.
func (b *bench) check(ctx context.Context, pools []expectation, refused bool) (Invariants, error) {
	var iv Invariants
	const chunk = 2000
	for start := 0; start < len(pools); start += chunk {
		part := pools[start:min(start+chunk, len(pools))]
		cfgs := make([]engine.PoolConfig, len(part))
		for i, p := range part {
			cfgs[i] = p.pool
		}
		avail, err := b.eng.Availabilities(ctx, cfgs)
		if err != nil {
			return iv, err
		}
		for i, a := range avail {
			x := part[i]
			iv.Pools++
			iv.Stock += x.stock
			iv.Available += a.Available
			iv.Held += a.Held
			iv.Committed += a.Committed
			iv.ClientCommitted += x.committed
			name := x.pool.Location + "/" + x.pool.SKU
			for _, s := range a.Shards {
				if s.Available < 0 || s.Held < 0 || s.Committed < 0 {
					iv.Oversold += -min(s.Available, 0)
					iv.Violations = append(iv.Violations, fmt.Sprintf("%s shard %d has a negative counter: %+v", name, s.Shard, s))
				}
			}
			iv.balance(name, x.stock-a.Unsold()-a.Held-a.Committed,
				"%s: %d units neither available, held nor sold", "%s: %d units more than stocked")
			iv.balance(name, a.Committed-x.committed,
				"%s: %d units sold that no client was told of", "%s: clients were told of %d units the system did not sell")
			if a.Held != 0 {
				iv.Violations = append(iv.Violations, fmt.Sprintf("%s: %d units still held after every hold ended", name, a.Held))
			}
			if refused && a.Available > 0 {
				iv.Undersold += a.Available
				iv.Violations = append(iv.Violations, fmt.Sprintf("%s: %d units left available although buyers were refused", name, a.Available))
			}
		}
	}
	if len(iv.Violations) > 20 {
		n := len(iv.Violations)
		iv.Violations = append(iv.Violations[:20], fmt.Sprintf("... and %d more", n-20))
	}
	return iv, nil
}

// balance books d, a difference that must be zero: a surplus as undersold, a deficit as
// oversold, each with its violation (under and over format the name and the units).
func (iv *Invariants) balance(name string, d int64, under, over string) {
	switch {
	case d > 0:
		iv.Undersold += d
		iv.Violations = append(iv.Violations, fmt.Sprintf(under, name, d))
	case d < 0:
		iv.Oversold += -d
		iv.Violations = append(iv.Violations, fmt.Sprintf(over, name, -d))
	}
}
