package sweeper

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testredis"
)

// fillExpired places n single-unit holds of 1s and moves the clock past them (a nil clock:
// waits for them to expire).
func fillExpired(b *testing.B, e *engine.Engine, clk *clock, sku string, n int) {
	b.Helper()
	testengine.ReserveMany(b, e, "s1", sku, n, time.Second)
	if clk == nil {
		time.Sleep(1100 * time.Millisecond)
		return
	}
	clk.Advance(2 * time.Second)
}

// BenchmarkSweepUnlimited: expired hold parts restored per second by one sweeper with no
// rate limit (8-shard pool, batches of 100).
func BenchmarkSweepUnlimited(b *testing.B) {
	ctx := context.Background()
	clk := newClock()
	e := newEngine(b, testredis.Standalone(b), clk)
	makePool(b, e, engine.PoolConfig{Location: "s1", SKU: "x", Shards: 8}, int64(b.N))
	fillExpired(b, e, clk, "x", b.N)
	cfg := testConfig()
	cfg.Batch = 100
	s := New(e, cfg, WithClock(clk.Now))
	b.ResetTimer()
	restored := 0
	for restored < b.N {
		p, err := s.RunOnce(ctx)
		if err != nil {
			b.Fatal(err)
		}
		restored += p.Restored
	}
	b.StopTimer()
	b.ReportMetric(float64(restored)/b.Elapsed().Seconds(), "holds/s")
}

// BenchmarkReserveWhileSweeping: single-unit reserves from 64 callers on a hot pool, alone
// ("idle") and while a sweeper at the default rate limit (real clock) works through 100,000
// expired holds of another pool ("sweeping").
func BenchmarkReserveWhileSweeping(b *testing.B) {
	for _, sweeping := range []bool{false, true} {
		name := "idle"
		if sweeping {
			name = "sweeping"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			e := newEngine(b, testredis.Standalone(b), nil)
			makePool(b, e, engine.PoolConfig{Location: "s1", SKU: "hot", Shards: 8}, 1_000_000_000)
			var s *Sweeper
			var wg sync.WaitGroup
			if sweeping {
				makePool(b, e, engine.PoolConfig{Location: "s1", SKU: "old", Shards: 8}, 100_000)
				fillExpired(b, e, nil, "old", 100_000)
				cfg := testConfig()
				cfg.Rate, cfg.Burst, cfg.Batch, cfg.Interval = 5000, 1000, 100, 50*time.Millisecond // the defaults
				s = New(e, cfg)
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.Run(ctx)
				}()
			}
			waitLazyFree(b)
			var seq atomic.Int64
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "hot", Qty: 1}},
						IdempotencyKey: fmt.Sprint("r", seq.Add(1)), TTL: 30 * time.Minute, Actor: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cancel()
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
			if sweeping {
				v := e.Stats().Expired.Load()
				b.ReportMetric(float64(v)/b.Elapsed().Seconds(), "restored/s")
			}
		})
	}
}

// waitLazyFree waits until Redis has finished freeing the keys earlier runs deleted, so that
// work does not land in the next measurement.
func waitLazyFree(b *testing.B) {
	rdb := testredis.Standalone(b)
	for range 600 {
		info, err := rdb.Info(context.Background(), "memory").Result()
		if err != nil || strings.Contains(info, "lazyfree_pending_objects:0") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
