package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testredis.StopCluster()
	os.Exit(code)
}

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
		MaxQty: 100, MaxCartLines: 20, IdempotencyTTL: time.Hour, IdempotencyLease: 10 * time.Second,
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

// ledgerTotals is what replaying the events says about one shard.
type ledgerTotals struct {
	available, held, committed, vendor int64 // vendor: net of restock, spoilage, adjustment
	transfers                          int64
}

// checkInvariants asserts, at a quiet moment, everything the design promises:
// every partition's events form a gap-free, unbroken hash chain whose seq and head match the
// partition's; each shard's available_after chain is continuous; replaying the events gives
// exactly the live counters; no counter is negative; held equals the open holds' units; and per
// pool, initial ± vendor changes = available + held + committed. It returns the events.
func checkInvariants(t testing.TB, e *Engine) map[int][]Event {
	t.Helper()
	ctx := context.Background()
	events := allEvents(t, e)
	pools := map[string]*ledgerTotals{}
	for p := range e.Partitions() {
		snap, err := e.Snapshot(ctx, p)
		if err != nil {
			t.Fatalf("snapshot %d: %v", p, err)
		}
		evs := events[p]
		if err := VerifyChain(evs, 0, GenesisHash, map[string]int64{}); err != nil {
			t.Fatalf("chain: %v", err)
		}
		if int64(len(evs)) != snap.Seq {
			t.Fatalf("partition %d: %d events in the stream, seq is %d", p, len(evs), snap.Seq)
		}
		if len(evs) > 0 && evs[len(evs)-1].Hash != snap.Head {
			t.Fatalf("partition %d: head %s is not the last event's hash", p, snap.Head)
		}
		replay := map[string]*ledgerTotals{}
		for _, ev := range evs {
			f := shardField(ev.Location, ev.SKU, ev.Shard)
			r := replay[f]
			if r == nil {
				r = &ledgerTotals{}
				replay[f] = r
			}
			r.available = ev.After
			r.held += ev.HeldDelta
			switch ev.Type {
			case EventCommitted:
				r.committed += ev.Qty
			case EventRestocked, EventSpoiled, EventAdjusted:
				r.vendor += ev.Delta
			case EventTransferOut, EventTransferIn:
				r.transfers += ev.Delta
			}
		}
		openHeld := map[string]int64{}
		for _, h := range snap.Holds {
			openHeld[shardField(h.Location, h.SKU, h.Shard)] += h.Qty
		}
		for f, sc := range snap.Shards {
			if sc.Available < 0 || sc.Held < 0 || sc.Committed < 0 {
				t.Fatalf("shard %s: negative counter %+v", f, sc)
			}
			r := replay[f]
			if r == nil {
				r = &ledgerTotals{}
			}
			if r.available != sc.Available || r.held != sc.Held || r.committed != sc.Committed {
				t.Fatalf("shard %s: live %+v, events replay to available %d held %d committed %d",
					f, sc, r.available, r.held, r.committed)
			}
			if openHeld[f] != sc.Held {
				t.Fatalf("shard %s: held counter %d, open holds %d", f, sc.Held, openHeld[f])
			}
			pk := f[:len(f)-len(fmt.Sprint(sc.Shard))-1]
			pt := pools[pk]
			if pt == nil {
				pt = &ledgerTotals{}
				pools[pk] = pt
			}
			pt.available += sc.Available
			pt.held += sc.Held
			pt.committed += sc.Committed
			pt.vendor += r.vendor
			pt.transfers += r.transfers
		}
	}
	for pk, pt := range pools {
		if pt.transfers != 0 {
			t.Fatalf("pool %s: transfers net %d units (a transfer is half done)", pk, pt.transfers)
		}
		if pt.vendor != pt.available+pt.held+pt.committed {
			t.Fatalf("pool %s: conservation broken: stock in %d != available %d + held %d + committed %d",
				pk, pt.vendor, pt.available, pt.held, pt.committed)
		}
	}
	return events
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
