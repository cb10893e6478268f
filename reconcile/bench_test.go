package reconcile

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/ledger"
)

// BenchmarkReplay builds a ledger of FLASHHOLD_BENCH_EVENTS events (default 1,000,000:
// reserves and commits on a 16-shard pool, persisted by the persister), then measures a full
// replay and an incremental one (from the checkpoints the full run left, after 1% more
// events). Run it with -benchtime 1x; the setup takes about a minute.
func BenchmarkReplay(b *testing.B) {
	total := int64(1_000_000)
	if v, err := strconv.ParseInt(os.Getenv("FLASHHOLD_BENCH_EVENTS"), 10, 64); err == nil && v > 0 {
		total = v
	}
	ctx := context.Background()
	rdb := testredis.Standalone(b)
	e := testengine.New(b, rdb, func(c *engine.Config) { c.SoldOutMemory = 0 })
	pool, _ := testpg.Schema(b)
	if _, err := ledger.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	st := ledger.NewStore(pool)
	p := ledger.NewPersister(e, st, ledger.PersistConfig{Group: "ledger", Batch: 5000, MaxRows: 50000, Interval: time.Millisecond,
		Mode: ledger.ModeCopy, ClaimIdle: time.Minute, Lease: time.Minute, Keep: 1000, BackoffMax: time.Second, Timeout: time.Minute, LagAlarm: 1 << 40})
	testengine.Pool(b, e, engine.PoolConfig{Location: "bench", SKU: "hot", Shards: 16}, 1_000_000_000)
	// Each hold is two events (RESERVED, COMMITTED).
	load := func(tag string, holds int64) {
		var wg sync.WaitGroup
		work := make(chan int64, 1024)
		for range 64 {
			wg.Go(func() {
				for i := range work {
					h, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "bench", SKU: "hot", Qty: 1}},
						IdempotencyKey: fmt.Sprintf("%s%d", tag, i), Actor: "bench"})
					if err == nil {
						err = e.Commit(ctx, h.ID, "bench")
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		for i := range holds {
			work <- i
		}
		close(work)
		wg.Wait()
		for {
			pass, err := p.RunOnce(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if pass.Read == 0 {
				break
			}
		}
	}
	load("a", total/2)
	r := New(e, st)
	measure := func(name string, opts Options) {
		start := time.Now()
		rep, err := r.Run(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if !rep.Clean() {
			b.Fatalf("%s: findings %+v", name, rep.Findings[:min(5, len(rep.Findings))])
		}
		b.ReportMetric(float64(rep.Events), name+"-events")
		b.ReportMetric(float64(rep.Events)/d.Seconds(), name+"-events/s")
		b.ReportMetric(d.Seconds(), name+"-s")
	}
	b.ResetTimer()
	for b.Loop() {
		measure("full", Options{Full: true, TransferGrace: time.Minute})
		b.StopTimer()
		load("b", total/200)
		b.StartTimer()
		measure("incremental", Options{TransferGrace: time.Minute})
	}
}
