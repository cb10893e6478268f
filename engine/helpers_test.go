package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *fakeClock) Set(ms int64)            { c.ms.Store(ms) }
func (c *fakeClock) Ms() int64               { return c.ms.Load() }
func (c *fakeClock) option() Option          { return WithClock(c.Now) }

// backends runs f against the shared standalone Redis and against a test-owned 3-master
// Redis Cluster.
func backends(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient)) {
	t.Run("standalone", func(t *testing.T) { f(t, testredis.Standalone(t)) })
	t.Run("cluster", func(t *testing.T) { f(t, testredis.Cluster(t)) })
}

func testredisCluster(t *testing.T) redis.UniversalClient    { return testredis.Cluster(t) }
func testredisStandalone(t *testing.T) redis.UniversalClient { return testredis.Standalone(t) }

func testConfig(prefix string) Config {
	return Config{
		Prefix: prefix, Partitions: 64, RedisTimeout: 5 * time.Second,
		DefaultTTL: time.Minute, MinTTL: time.Second, MaxTTL: 30 * time.Minute,
		MaxQty: 100, MaxCartLines: 20, IdempotencyTTL: time.Hour, IdempotencyLease: 10 * time.Second, RefusalTTL: 30 * time.Second,
		Coalesce: true, CoalesceMaxBatch: 128, CoalesceWorkers: 2,
		SoldOutMemory: 250 * time.Millisecond, ReclaimInline: 8, CommitGrace: 5 * time.Second,
		PoolCacheTTL: 5 * time.Second,
	}
}

// newEngine builds an engine under a fresh key prefix; mod may change the configuration.
func newEngine(t testing.TB, rdb redis.UniversalClient, mod func(*Config), opts ...Option) *Engine {
	t.Helper()
	cfg := testConfig(testredis.Prefix(t, rdb))
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(context.Background(), rdb, cfg, opts...)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// makePool creates a pool and sets its stock.
func makePool(t testing.TB, e *Engine, c PoolConfig, stock int64) {
	t.Helper()
	ctx := context.Background()
	if c.Vendor == "" {
		c.Vendor = "v1"
	}
	if err := e.CreatePool(ctx, c, "test"); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	if stock > 0 {
		if _, err := e.Adjust(ctx, AdjustRequest{Location: c.Location, SKU: c.SKU, Kind: Restock, Qty: stock,
			TransactionID: "initial-" + c.SKU, Actor: "test"}); err != nil {
			t.Fatalf("initial stock: %v", err)
		}
	}
}

// allEvents reads every event of every partition from the streams.
func allEvents(t testing.TB, e *Engine) map[int][]Event {
	t.Helper()
	out := map[int][]Event{}
	for p := range e.Partitions() {
		var after int64
		for {
			evs, err := e.ReadEvents(context.Background(), p, after, 5000)
			if err != nil {
				t.Fatalf("read events: %v", err)
			}
			if len(evs) == 0 {
				break
			}
			out[p] = append(out[p], evs...)
			after = evs[len(evs)-1].Seq
		}
	}
	return out
}

// checkInvariants fails the test unless Verify finds everything the engine promises holds
// (chains, gap-free seqs, replay = live counters, conservation); it returns the events.
func checkInvariants(t testing.TB, e *Engine) map[int][]Event {
	t.Helper()
	v, err := e.Verify(context.Background())
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
	return v.Events
}

func countTypes(events map[int][]Event) map[string]int {
	n := map[string]int{}
	for _, evs := range events {
		for _, ev := range evs {
			n[ev.Type]++
		}
	}
	return n
}

func mustReserve(t testing.TB, e *Engine, req ReserveRequest) *Hold {
	t.Helper()
	h, err := e.Reserve(context.Background(), req)
	if err != nil {
		t.Fatalf("reserve %+v: %v", req, err)
	}
	return h
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}
