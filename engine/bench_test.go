package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
)

// BenchmarkReserve measures single-unit reserves on one hot 8-shard pool against the real
// standalone Redis: one at a time, and from 64 concurrent callers with and without
// coalescing (the same callers, so the two parallel figures compare directly). Coalesced runs
// also report requests per script call and script calls per round trip.
func BenchmarkReserve(b *testing.B) {
	rdb := testredis.Standalone(b)
	run := func(b *testing.B, coalesce bool, callers int) {
		e := newEngine(b, rdb, func(c *Config) { c.Coalesce = coalesce })
		makePool(b, e, PoolConfig{Location: "bench", SKU: "hot", Shards: 8}, 1_000_000_000)
		ctx := context.Background()
		var seq atomic.Int64
		reserve := func() {
			n := seq.Add(1)
			_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "bench", SKU: "hot", Qty: 1}},
				IdempotencyKey: fmt.Sprintf("b%d", n), Actor: "bench"})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		if callers == 1 {
			for b.Loop() {
				reserve()
			}
		} else {
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					reserve()
				}
			})
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
		if st := e.Stats(); st.Batches.Load() > 0 {
			b.ReportMetric(float64(st.BatchedRequests.Load())/float64(st.Batches.Load()), "reqs/batch")
			b.ReportMetric(float64(st.Batches.Load())/float64(st.RoundTrips.Load()), "calls/trip")
		}
	}
	b.Run("single/1-caller", func(b *testing.B) { run(b, false, 1) })
	b.Run("single/64-callers", func(b *testing.B) { run(b, false, 64) })
	b.Run("coalesced/64-callers", func(b *testing.B) { run(b, true, 64) })
	b.Run("single/256-callers", func(b *testing.B) { run(b, false, 256) })
	b.Run("coalesced/256-callers", func(b *testing.B) { run(b, true, 256) })
}

// BenchmarkCommit measures commits of one-part holds from 64 concurrent callers, with and
// without coalescing (with it, concurrent commits of a partition share an end_batch call and
// round trips). The holds are placed before the timer starts.
func BenchmarkCommit(b *testing.B) {
	rdb := testredis.Standalone(b)
	run := func(b *testing.B, coalesce bool) {
		e := newEngine(b, rdb, func(c *Config) { c.Coalesce = coalesce })
		makePool(b, e, PoolConfig{Location: "bench", SKU: "hot", Shards: 8}, 1_000_000_000)
		ctx := context.Background()
		ids := make([]string, b.N)
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Go(func() {
				for i := w; i < len(ids); i += 64 {
					h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "bench", SKU: "hot", Qty: 1}},
						IdempotencyKey: fmt.Sprintf("b%d", i), Actor: "bench"})
					if err != nil {
						b.Error(err)
						return
					}
					ids[i] = h.ID
				}
			})
		}
		wg.Wait()
		var next atomic.Int64
		b.ResetTimer()
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.Commit(ctx, ids[next.Add(1)-1], "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		if st := e.Stats(); st.EndCalls.Load() > 0 {
			b.ReportMetric(float64(st.Ops.Load())/float64(st.EndCalls.Load()), "reqs/call")
		}
	}
	b.Run("single/64-callers", func(b *testing.B) { run(b, false) })
	b.Run("coalesced/64-callers", func(b *testing.B) { run(b, true) })
}

// BenchmarkReserveBatch sends reserve_batch calls of 1, 6 and 64 single-unit requests on one
// shard, one call after another: b.N reservations in all. It isolates what Redis does per
// reservation from the coalescer. Under deploy/local/redis-instructions.sh, two -benchtime
// values give Redis's instructions per reservation as the difference of the two totals over
// the difference of the two counts (setup cancels out), for example 3200x and 320x.
func BenchmarkReserveBatch(b *testing.B) {
	rdb := testredis.Standalone(b)
	for _, size := range []int{1, 6, 64} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			e := newEngine(b, rdb, func(c *Config) { c.Coalesce = false })
			makePool(b, e, PoolConfig{Location: "bench", SKU: "batch", Shards: 1}, 1_000_000_000)
			ctx := context.Background()
			p := e.PartitionOf("bench", "batch", 0)
			exp := e.nowMs() + 30*60*1000
			round := time.Now().UnixNano() // the benchmark runs more than once on the same keys
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(size, b.N-done)
				args := make([]any, 0, n*reqWidth)
				for i := done; i < done+n; i++ {
					token := fmt.Sprintf("%016x%016x", round, i)
					args = append(args, token+".0.0", "bench", "batch", 0, 1, exp, "", 0, token,
						"0123456789abcdef0123456789abcdef01234567", modePart, "bench", 8, 3_600_000, 30_000, 0, 0, "0")
				}
				r, err := e.run(ctx, "reserve_batch", p, e.nowMs(), args...)
				if err != nil || len(r) != n {
					b.Fatalf("reserve_batch of %d: %d replies, %v", n, len(r), err)
				}
				for _, x := range r {
					if _, placed := x.(int64); !placed { // a part placed now is answered with a count
						b.Fatalf("reserve_batch answered %v", x)
					}
				}
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
		})
	}
}

// BenchmarkReserveReplicated measures what FLASHHOLD_REDIS_WAIT_REPLICAS costs: concurrent
// single-unit reserves on a test-started primary with one replica, without and with waiting
// for the replica after every round trip.
func BenchmarkReserveReplicated(b *testing.B) {
	primary := testredis.StartServer(b)
	testredis.StartReplica(b, primary)
	rdb := primary.Client(b)
	for _, wait := range []int{0, 1} {
		b.Run(fmt.Sprintf("wait-%d", wait), func(b *testing.B) {
			e := newEngine(b, rdb, func(c *Config) { c.RedisWaitReplicas, c.RedisWaitTimeout = wait, time.Second })
			makePool(b, e, PoolConfig{Location: "bench", SKU: "rep", Shards: 8}, 1_000_000_000)
			var seq atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Reserve(context.Background(), ReserveRequest{Items: []Item{{Location: "bench", SKU: "rep", Qty: 1}},
						IdempotencyKey: fmt.Sprintf("r%d", seq.Add(1)), Actor: "bench"}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
		})
	}
}

// BenchmarkAdjustMany applies an import's batches with AdjustMany: batches of 10,000 SET changes
// over 10,000 single-shard pools of one vendor (every pool once a batch, each change new). It
// reports changes per second, end to end (claims, pools, one adjust_batch call per partition).
func BenchmarkAdjustMany(b *testing.B) {
	rdb := testredis.Standalone(b)
	e := newEngine(b, rdb, nil)
	ctx := context.Background()
	const pools, batch = 10_000, 10_000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < pools; i += 8 {
				if err := e.CreatePool(ctx, PoolConfig{Location: "bench", SKU: fmt.Sprintf("sku-%05d", i), Vendor: "v1", Shards: 1}, "test"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	round := time.Now().UnixNano()
	reqs := make([]AdjustRequest, batch)
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		for i := range n {
			row := done + i
			reqs[i] = AdjustRequest{Location: "bench", SKU: fmt.Sprintf("sku-%05d", row%pools), Kind: Set, Qty: int64(row%97 + 1),
				TransactionID: fmt.Sprintf("imp%x-%d", round, row), Actor: "bench", Reason: fmt.Sprintf("import imp%x row %d", round, row)}
		}
		for i, o := range e.AdjustMany(ctx, "v1", reqs[:n]) {
			if o.Err != nil {
				b.Fatalf("change %d: %v", done+i, o.Err)
			}
		}
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}
