package sweeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

type clock = testengine.Clock

var newClock = testengine.NewClock

// newEngine builds a test engine on clk (nil: real time), with no sold-out memory and no
// inline reclaim, so only the sweeper restores expired holds.
func newEngine(t testing.TB, rdb redis.UniversalClient, clk *clock) *engine.Engine {
	t.Helper()
	now := time.Now
	if clk != nil {
		now = clk.Now
	}
	return testengine.New(t, rdb, func(c *engine.Config) { c.SoldOutMemory, c.ReclaimInline = 0, 0 }, engine.WithClock(now))
}

func testConfig() Config {
	return Config{Rate: 0, Burst: 1000, Batch: 50, Interval: 10 * time.Millisecond, Lease: 2 * time.Second,
		LagAlarm: time.Hour, GCEvery: 0, GCBatch: 100, RebalanceEvery: 0, LowWater: 0.25, TransferGrace: 2 * time.Second}
}

func makePool(t testing.TB, e *engine.Engine, c engine.PoolConfig, stock int64) {
	t.Helper()
	testengine.Pool(t, e, c, stock)
}

func reserve(t testing.TB, e *engine.Engine, sku string, qty int64, key string, ttl time.Duration) *engine.Hold {
	t.Helper()
	h, err := e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: qty}},
		IdempotencyKey: key, TTL: ttl, Actor: "shop"})
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	return h
}

func verify(t testing.TB, e *engine.Engine) *engine.Verification {
	t.Helper()
	v, err := e.Verify(context.Background())
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
	return v
}

// ends maps each hold part to the events that ended it.
func ends(v *engine.Verification) map[string][]string {
	out := map[string][]string{}
	for _, evs := range v.Events {
		for _, ev := range evs {
			switch ev.Type {
			case engine.EventCommitted, engine.EventReleased, engine.EventExpired:
				out[ev.Hold] = append(out[ev.Hold], ev.Type)
			}
		}
	}
	return out
}

// TestExpiresOnTime: with a fake clock, each hold is restored at exactly its expiry, never a
// millisecond early, and exactly once, while commits race the sweep at the boundary.
func TestExpiresOnTime(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	e := newEngine(t, testredis.Standalone(t), clk)
	makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "a", Shards: 4}, 1000)
	start := clk.Ms()
	holds := make([]*engine.Hold, 40)
	for i := range holds {
		holds[i] = reserve(t, e, "a", 1, fmt.Sprint("h", i), time.Duration(i/2+1)*time.Second) // two per second
	}
	s := New(e, testConfig(), WithClock(clk.Now), WithOwner("one"))
	results := make([]error, len(holds))
	for sec := 1; sec <= 20; sec++ {
		clk.Set(start + int64(sec)*1000 - 1)
		if p, err := s.RunOnce(ctx); err != nil || p.Restored != 0 {
			t.Fatalf("1ms before second %d: restored %d (%v)", sec, p.Restored, err)
		}
		clk.Set(start + int64(sec)*1000)
		// The hold due now with an odd index is committed by a customer racing the sweeper.
		var wg sync.WaitGroup
		i := 2*(sec-1) + 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.Commit(ctx, holds[i].ID, "shop")
		}()
		p, err := s.RunOnce(ctx)
		wg.Wait()
		if err != nil || p.Restored < 1 || p.Restored > 2 || p.Lag != 0 {
			t.Fatalf("second %d: %+v %v", sec, p, err)
		}
	}
	got := ends(verify(t, e))
	for i, h := range holds {
		parts, _ := e.HoldParts(h.ID)
		part := parts[0].Part
		evs := got[part]
		if len(evs) != 1 {
			t.Fatalf("hold %d ended %v", i, evs)
		}
		switch {
		case i%2 == 0 && evs[0] == engine.EventExpired:
		case i%2 == 1 && results[i] == nil && evs[0] == engine.EventCommitted:
		case i%2 == 1 && errors.Is(results[i], engine.ErrHoldGone) && evs[0] == engine.EventExpired:
		default:
			t.Fatalf("hold %d: commit said %v, it ended %s", i, results[i], evs[0])
		}
	}
}

// TestTwoSweepers: two instances over the same keyspace restore every expired hold exactly
// once, with leases (efficient) and with leases so short they always contend (correct anyway).
func TestTwoSweepers(t *testing.T) {
	for _, lease := range []time.Duration{2 * time.Second, time.Millisecond} {
		t.Run(lease.String(), func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			e := newEngine(t, testredis.Standalone(t), clk)
			makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "b", Shards: 8}, 2000)
			var wg sync.WaitGroup
			for i := range 1000 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reserve(t, e, "b", 2, fmt.Sprint("k", i), time.Second)
				}()
			}
			wg.Wait()
			clk.Advance(time.Second)
			cfg := testConfig()
			cfg.Lease = lease
			var total atomic.Int64
			for _, owner := range []string{"a", "b"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := New(e, cfg, WithClock(clk.Now), WithOwner(owner))
					for range 200 {
						p, err := s.RunOnce(ctx)
						if err != nil {
							t.Errorf("sweep: %v", err)
							return
						}
						total.Add(int64(p.Restored))
						next, _ := e.NextExpiries(ctx)
						if allIdle(next) {
							return
						}
					}
				}()
			}
			wg.Wait()
			v := verify(t, e)
			if total.Load() != 1000 || v.CountTypes()[engine.EventExpired] != 1000 {
				t.Fatalf("restored %d, EXPIRED events %d; want 1000", total.Load(), v.CountTypes()[engine.EventExpired])
			}
			for part, evs := range ends(v) {
				if len(evs) != 1 {
					t.Fatalf("part %s ended %v", part, evs)
				}
			}
			if a, _ := e.Availability(ctx, "s1", "b"); a.Available != 2000 || a.Held != 0 {
				t.Fatalf("after the sweep: %+v", a)
			}
		})
	}
}

func allIdle(next []int64) bool {
	for _, x := range next {
		if x >= 0 {
			return false
		}
	}
	return true
}

// TestRateLimit: the sweeper restores exactly what its token bucket allows per interval of
// the fake clock, reports the lag it leaves, and catches up.
func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	e := newEngine(t, testredis.Standalone(t), clk)
	makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "c", Shards: 4}, 1000)
	for i := range 400 {
		reserve(t, e, "c", 1, fmt.Sprint("r", i), time.Second)
	}
	clk.Advance(time.Second)
	cfg := testConfig()
	cfg.Rate, cfg.Burst, cfg.Batch = 100, 100, 30
	s := New(e, cfg, WithClock(clk.Now))
	steps := []struct {
		advance time.Duration
		want    int
	}{{0, 100}, {0, 0}, {500 * time.Millisecond, 50}, {time.Second, 100}, {3 * time.Second, 100}, {time.Second, 50}}
	for i, st := range steps {
		clk.Advance(st.advance)
		p, err := s.RunOnce(ctx)
		if err != nil || p.Restored != st.want {
			t.Fatalf("step %d: restored %d, want %d (%v)", i, p.Restored, st.want, err)
		}
		left := i < len(steps)-1
		// Steps 0 and 1 run at the very millisecond the holds expire: work is left, none is late yet.
		if p.Throttled != left || (i > 1 && (p.Lag > 0) != left) {
			t.Fatalf("step %d: throttled %v lag %s", i, p.Throttled, p.Lag)
		}
	}
	if s.Lag() != 0 {
		t.Fatalf("lag %s after catching up", s.Lag())
	}
	verify(t, e)
}

// TestRebalance: a pool whose stock sits on one shard is spread out, so single-shard reserves
// on every shard succeed and every unit sells; an interrupted transfer is completed.
func TestRebalance(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	e := newEngine(t, testredis.Standalone(t), clk)
	makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "d", Shards: 8}, 800)
	for s := 1; s < 8; s++ { // pile everything on shard 0
		if _, err := e.Transfer(ctx, "s1", "d", s, 0, 100, fmt.Sprint("pile-", s), "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.BeginTransfer(ctx, "s1", "d", 0, 3, 50, "half-done", "test"); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.RebalanceEvery = time.Second
	s := New(e, cfg, WithClock(clk.Now))
	clk.Advance(3 * time.Second)
	p, err := s.RunOnce(ctx)
	if err != nil || p.Completed != 1 || p.Transfers == 0 {
		t.Fatalf("rebalance pass: %+v %v", p, err)
	}
	// Every shard is at least at the low-water mark (25% of the mean of 100); the seven dry
	// ones were filled to the mean.
	a, _ := e.Availability(ctx, "s1", "d")
	for _, sc := range a.Shards {
		if sc.Available < 25 || (sc.Shard != 0 && sc.Shard != 3 && sc.Available != 100) {
			t.Fatalf("shards after rebalancing: %+v", a.Shards)
		}
	}
	verify(t, e)
	var sold atomic.Int64
	var wg sync.WaitGroup
	for i := range 900 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "d", Qty: 1}}, IdempotencyKey: fmt.Sprint("buy", i), Actor: "shop"})
			if err == nil && len(h.Parts) == 1 && e.Commit(ctx, h.ID, "shop") == nil {
				sold.Add(1)
			}
		}()
	}
	wg.Wait()
	if sold.Load() != 800 {
		t.Fatalf("sold %d of 800", sold.Load())
	}
	verify(t, e)
}

// TestWriteOff: past its best-before date a perishable pool's available units are written off
// as SPOILED, holds already placed still commit, and nothing more is sold.
func TestWriteOff(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	e := newEngine(t, testredis.Standalone(t), clk)
	bb := clk.Now().Add(10 * time.Second).UnixMilli()
	if err := e.CreatePool(ctx, engine.PoolConfig{Location: "s1", SKU: "milk", Vendor: "v1", Shards: 2, BestBefore: bb}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "milk", Kind: engine.Restock, Qty: 10, TransactionID: "in", Actor: "v"}); err != nil {
		t.Fatal(err)
	}
	h := reserve(t, e, "milk", 3, "m1", time.Minute)
	cfg := testConfig()
	cfg.RebalanceEvery = time.Second
	s := New(e, cfg, WithClock(clk.Now))
	clk.Set(bb - 1)
	if p, _ := s.RunOnce(ctx); p.WrittenOff != 0 {
		t.Fatalf("wrote off %d before the date", p.WrittenOff)
	}
	clk.Set(bb + 1000)
	if p, err := s.RunOnce(ctx); err != nil || p.WrittenOff != 7 {
		t.Fatalf("write-off pass: %+v %v", p, err)
	}
	if err := e.Commit(ctx, h.ID, "shop"); err != nil {
		t.Fatalf("a hold placed before the date: %v", err)
	}
	_, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "milk", Qty: 1}}, IdempotencyKey: "late", Actor: "shop"})
	if !errors.Is(err, engine.ErrInsufficient) {
		t.Fatalf("reserve past best-before: %v", err)
	}
	v := verify(t, e)
	var spoiled int64
	for _, evs := range v.Events {
		for _, ev := range evs {
			if ev.Type == engine.EventSpoiled {
				spoiled -= ev.Delta
			}
		}
	}
	if spoiled != 7 {
		t.Fatalf("SPOILED events total %d units", spoiled)
	}
}

func TestPlanRebalance(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want string
	}{
		{[]int64{800, 0, 0, 0, 0, 0, 0, 0}, "[{0 1 100} {0 2 100} {0 3 100} {0 4 100} {0 5 100} {0 6 100} {0 7 100}]"},
		{[]int64{10, 10, 10, 10}, "[]"},
		{[]int64{30, 0, 0, 0}, "[{0 1 7} {0 2 7} {0 3 7}]"},
		{[]int64{3, 0, 0, 0}, "[]"},           // a mean below one unit: nothing to spread
		{[]int64{50, 40, 9, 1}, "[{0 3 24}]"}, // 9 is above the low water (6); only 1 is dry
	} {
		in := fmt.Sprint(tc.in)
		if got := fmt.Sprint(planRebalance(tc.in, 0.25)); got != tc.want || fmt.Sprint(tc.in) != in {
			t.Errorf("plan %v = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestStreamsBoundedWithoutLedger: with no consumer group on a stream (no ledger, no alert
// detector), the sweeper keeps only the last FLASHHOLD_STREAM_KEEP entries of it.
func TestStreamsBoundedWithoutLedger(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb, nil)
	makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "busy", Shards: 1}, 100000)
	for i := range 300 {
		h := reserve(t, e, "busy", 1, fmt.Sprint("b", i), time.Minute)
		e.Release(ctx, h.ID, "shop")
	}
	cfg := testConfig()
	cfg.GCEvery, cfg.StreamKeep = time.Nanosecond, 100
	s := New(e, cfg)
	if _, err := s.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	p := e.PartitionOf("s1", "busy", 0)
	if n, _ := rdb.XLen(ctx, e.StreamKey(p)).Result(); n > 110 {
		t.Fatalf("the stream holds %d entries after a pass; want at most about 100", n)
	}
}

// TestForgetCatchesUp: a pass forgets every idempotency record and tombstone past its
// retention, however many there are, not a fixed few per partition.
func TestForgetCatchesUp(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb, clk)
	makePool(t, e, engine.PoolConfig{Location: "s1", SKU: "gc", Shards: 4}, 100000)
	for i := range 3000 {
		h := reserve(t, e, "gc", 1, fmt.Sprint("g", i), time.Minute)
		e.Release(ctx, h.ID, "shop")
	}
	clk.Advance(2 * e.Config().IdempotencyTTL)
	cfg := testConfig()
	cfg.GCEvery, cfg.GCBatch = time.Nanosecond, 100
	pass, err := New(e, cfg, WithClock(clk.Now)).RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left int64
	for p := range e.Partitions() {
		n, _ := rdb.ZCard(ctx, e.Config().Prefix+":{p"+fmt.Sprint(p)+"}:gc").Result()
		left += n
	}
	if left != 0 || pass.Forgotten < 3000 {
		t.Fatalf("one pass forgot %d records and left %d due", pass.Forgotten, left)
	}
}
