package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/ledger"
)

// TestRedisLostEverything: Redis restarts empty (no persistence) under a running service.
// Until the documented repair, reserves and vendor changes are refused as unavailable (never
// "unknown pool"), readiness fails and an alarm is recorded; `reconcile --repair` then brings
// back pools, counters, per-customer counts, open holds and the answers of earlier requests,
// and the service sells again with every limit intact, on the running engine and on one
// started afterwards.
func TestRedisLostEverything(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	rdb := srv.Client(t)
	e := testengine.New(t, rdb, func(c *engine.Config) { c.SoldOutMemory = 0 })
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st := ledger.NewStore(pool)
	guard := ledger.NewGuard(e, st)
	if err := guard.Check(ctx); err != nil {
		t.Fatalf("guard before the loss: %v", err)
	}
	per := ledger.NewPersister(e, st, ledger.PersistConfig{Group: "ledger", Batch: 1000, MaxRows: 20000, Interval: time.Millisecond,
		Mode: ledger.ModeCopy, ClaimIdle: time.Second, Lease: time.Second, Keep: 1 << 40, BackoffMax: 100 * time.Millisecond,
		Timeout: 10 * time.Second, LagAlarm: 1 << 40, SyncPoolsEvery: time.Nanosecond})
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "a", Shards: 4}, 100)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "lim", Shards: 8, CustomerLimit: 2}, 60)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "empty", Shards: 2}, 0)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "win", Shards: 1, CustomerLimit: 2, CustomerWindow: time.Hour.Milliseconds()}, 10)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "c", Shards: 1, Substitutes: []string{"a", "empty"}, SafetyStock: 3}, 10)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "bo", Shards: 1, Policy: engine.PolicyBackorder, BackorderLimit: 4}, 1)
	region := engine.Region{Name: "r1", Strategy: engine.StrategyMostStock, Locations: []engine.RegionLocation{{Location: "s1", Priority: 1}, {Location: "s2"}}}
	if err := e.PutRegion(ctx, region); err != nil {
		t.Fatal(err)
	}
	reserve := func(e *engine.Engine, sku string, qty int64, customer, key string) (*engine.Hold, error) {
		return e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: qty}}, Customer: customer,
			IdempotencyKey: key, Actor: "shop"})
	}
	small, err := reserve(e, "a", 1, "", "small")
	if err != nil {
		t.Fatal(err)
	}
	cart := func(e *engine.Engine) (*engine.Hold, error) { // more than a shard has, and a second line
		return e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "a", Qty: 40}, {Location: "s1", SKU: "c", Qty: 2}},
			IdempotencyKey: "big", Actor: "shop"})
	}
	big, err := cart(e)
	if err != nil || len(big.Parts) != 2 {
		t.Fatalf("big: %v %+v", err, big)
	}
	var sold *engine.Hold
	for c := range 24 { // 24 customers at their limit of 2; half of them bought already
		h, err := reserve(e, "lim", 2, fmt.Sprint("c", c), fmt.Sprint("lim-", c))
		if err != nil {
			t.Fatalf("customer %d: %v", c, err)
		}
		if c%2 == 0 {
			sold = h
			if err := e.Commit(ctx, h.ID, "shop"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A sale under a limit over a window (of an hour) before the loss.
	if h, err := reserve(e, "win", 2, "w1", "win-1"); err != nil {
		t.Fatal(err)
	} else if err := e.Commit(ctx, h.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	// Holds changed before the loss: one reduced from 2 to 1, one of 2 committed in part (1).
	reduced, err := reserve(e, "lim", 2, "cr", "reduce")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ReduceHold(ctx, reduced.ID, 1, "shop"); err != nil {
		t.Fatal(err)
	}
	part, err := reserve(e, "lim", 2, "cp", "part")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CommitPart(ctx, part.ID, 1, "shop"); err != nil {
		t.Fatal(err)
	}
	// Backorders before the loss: one unit held from stock, then 2 units owed to a sale and 1
	// to an open hold, in that order.
	if _, err := reserve(e, "bo", 1, "", "bo-held"); err != nil {
		t.Fatal(err)
	}
	boSold, err := reserve(e, "bo", 2, "", "bo-sold")
	if err != nil || !boSold.Parts[0].Backordered {
		t.Fatalf("bo-sold: %v %+v, want backordered", err, boSold)
	}
	if err := e.Commit(ctx, boSold.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	boOpen, err := reserve(e, "bo", 1, "", "bo-open")
	if err != nil || !boOpen.Parts[0].Backordered {
		t.Fatalf("bo-open: %v %+v, want backordered", err, boOpen)
	}
	for {
		pass, err := per.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pass.Read == 0 {
			break
		}
	}
	before := map[string]*engine.Availability{}
	for _, sku := range []string{"a", "lim", "empty", "c", "bo"} {
		before[sku], _ = e.Availability(ctx, "s1", sku)
	}

	srv.Kill()
	srv.Start()      // empty: it kept nothing
	per.RunOnce(ctx) // the persister goes on meanwhile: it must not copy the empty Redis over the ledger's pools and regions

	// Until repaired: unavailable, never unknown; not ready; alarmed.
	if _, err := reserve(e, "a", 1, "", "during"); !errors.Is(err, engine.ErrUnavailable) && !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("reserve on a Redis that lost its data: %v, want unavailable", err)
	}
	if err := guard.Check(ctx); err == nil {
		t.Fatal("the guard did not notice that Redis lost its data")
	}
	if _, err := e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "a", Kind: engine.Restock, Qty: 5, TransactionID: "during",
		Actor: "v"}); !errors.Is(err, engine.ErrUnavailable) && !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("vendor change on a Redis that lost its data: %v, want unavailable", err)
	}
	if _, err := reserve(e, "lim", 1, "c1", "during-2"); !errors.Is(err, engine.ErrUnavailable) && !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("reserve after the guard's check: %v", err)
	}
	var alarms int
	pool.QueryRow(ctx, `SELECT count(*) FROM integrity_alarms WHERE kind = 'keyspace_lost'`).Scan(&alarms)
	if alarms != 1 {
		t.Fatalf("%d keyspace_lost alarms, want 1", alarms)
	}

	// The documented repair.
	rep, err := New(e, st).Run(ctx, Options{Repair: true, TransferGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		if !f.Repaired {
			t.Fatalf("not repaired: %+v", f)
		}
	}
	if err := guard.Check(ctx); err != nil {
		t.Fatalf("guard after the repair: %v", err)
	}
	later, err := engine.New(ctx, rdb, e.Config()) // a process started after the repair
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	for _, eng := range []*engine.Engine{e, later} {
		for _, sku := range []string{"a", "lim", "empty", "c", "bo"} {
			a, err := eng.Availability(ctx, "s1", sku)
			if err != nil {
				t.Fatalf("%s after the repair: %v", sku, err)
			}
			if b := before[sku]; a.Available != b.Available || a.Held != b.Held || a.Committed != b.Committed ||
				a.Backordered != b.Backordered || a.Backorderable != b.Backorderable {
				t.Fatalf("%s after the repair: %d/%d/%d/%d/%d available/held/committed/backordered/backorderable, before the loss %d/%d/%d/%d/%d", sku,
					a.Available, a.Held, a.Committed, a.Backordered, a.Backorderable, b.Available, b.Held, b.Committed, b.Backordered, b.Backorderable)
			}
		}
		if c, err := eng.Pool(ctx, "s1", "bo"); err != nil || c.Policy != engine.PolicyBackorder || c.BackorderLimit != 4 {
			t.Fatalf("pool bo after the repair: %v %+v, want its policy", err, c)
		}
		if h, err := eng.GetHold(ctx, boOpen.ID, "shop"); err != nil || !h.Parts[0].Backordered || h.Status != engine.StatusActive {
			t.Fatalf("the open backorder after the repair: %v %+v", err, h)
		}
		if h, err := eng.GetHold(ctx, boSold.ID, "shop"); err != nil || !h.Parts[0].Backordered || h.Status != engine.StatusCommitted {
			t.Fatalf("the sale still owed after the repair: %v %+v", err, h)
		}
		if c, err := eng.Pool(ctx, "s1", "c"); err != nil || fmt.Sprint(c.Substitutes) != "[a empty]" || c.SafetyStock != 3 {
			t.Fatalf("pool c after the repair: %v %+v, want its substitutes and safety stock", err, c)
		}
		// The regions come back, with their indexes of items.
		if r, err := eng.RegionNamed(ctx, "r1", true); err != nil || fmt.Sprint(*r) != fmt.Sprint(region) {
			t.Fatalf("region after the repair: %v %+v, want %+v", err, r, region)
		}
		if items, _, err := eng.RegionItems(ctx, "r1", "", 10, false); err != nil || len(items) != 6 {
			t.Fatalf("region items after the repair: %v %d, want 6", err, len(items))
		}
		// Retries of earlier requests get their holds; customers at their limit stay there.
		if h, err := reserve(eng, "a", 1, "", "small"); err != nil || h.ID != small.ID {
			t.Fatalf("retry of a one-part hold: %v %+v, want %s", err, h, small.ID)
		}
		if h, err := cart(eng); err != nil || h.ID != big.ID {
			t.Fatalf("retry of a cart: %v %+v, want %s", err, h, big.ID)
		}
		// A hold sold before the loss reads sold, and its commit sent again answers the same.
		if got, err := eng.GetHold(ctx, sold.ID, "shop"); err != nil || got.Status != engine.StatusCommitted {
			t.Fatalf("a hold sold before the loss: %v %+v", err, got)
		}
		if err := eng.Commit(ctx, sold.ID, "shop"); err != nil {
			t.Fatalf("its commit sent again: %v", err)
		}
		for c := range 24 {
			_, err := reserve(eng, "lim", 1, fmt.Sprint("c", c), fmt.Sprintf("more-%p-%d", eng, c))
			if !errors.Is(err, engine.ErrCustomerLimit) {
				t.Fatalf("customer %d past the limit after the repair: %v", c, err)
			}
		}
	}
	// The sale under the window still counts, and stops counting an hour after it was made.
	if _, err := reserve(later, "win", 1, "w1", "win-2"); !errors.Is(err, engine.ErrCustomerLimit) {
		t.Fatalf("a customer who bought 2 of 2 in the window, after the repair: %v", err)
	}
	custKey := fmt.Sprintf("%s:{p%d}:cust", e.Config().Prefix, later.PartitionOf("s1", "win", 0))
	if w, err := rdb.HGet(ctx, custKey, "s1|win|w1|w").Result(); err != nil || !strings.HasSuffix(w, ":2") || strings.Contains(w, " ") {
		t.Fatalf("the sale's window after the repair: %q %v, want one entry of 2 units", w, err)
	}
	// The changed holds count what they kept: each customer may take one unit more, not two.
	for _, c := range []string{"cr", "cp"} {
		if _, err := reserve(later, "lim", 1, c, "again-"+c); err != nil {
			t.Fatalf("customer %s, one more after the repair: %v", c, err)
		}
		if _, err := reserve(later, "lim", 1, c, "again2-"+c); !errors.Is(err, engine.ErrCustomerLimit) {
			t.Fatalf("customer %s, two more after the repair: %v", c, err)
		}
	}
	if h, err := later.GetHold(ctx, reduced.ID, "shop"); err != nil || h.Parts[0].Qty != 1 || h.Status != engine.StatusActive {
		t.Fatalf("the reduced hold after the repair: %v %+v", err, h)
	}
	// And sells again.
	if _, err := reserve(later, "lim", 2, "newcomer", "new"); err != nil {
		t.Fatalf("selling after the repair: %v", err)
	}
	// The backorder queue came back in its order: 3 units fill the sale (2), then the open
	// hold (1).
	if b := before["bo"]; b.Backordered != 3 || b.Held != 1 {
		t.Fatalf("bo before the loss: %+v, want 3 backordered and 1 held", b)
	}
	if _, err := later.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "bo", Kind: engine.Restock, Qty: 3, TransactionID: "bo-in",
		Actor: "v"}); err != nil {
		t.Fatal(err)
	}
	if a, err := later.Availability(ctx, "s1", "bo"); err != nil || a.Backordered != 0 || a.Committed != 2 || a.Held != 2 || a.Available != 0 {
		t.Fatalf("bo after the restock: %v %+v, want the queue filled", err, a)
	}
	if h, err := later.GetHold(ctx, boOpen.ID, "shop"); err != nil || h.Parts[0].Backordered {
		t.Fatalf("the open backorder after its fill: %v %+v", err, h)
	}
	if err := e.Commit(ctx, big.ID, "shop"); err != nil {
		t.Fatalf("committing a hold placed before the loss: %v", err)
	}
	for {
		pass, err := per.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pass.Read == 0 {
			break
		}
	}
	if rep, err := New(e, st).Run(ctx, Options{TransferGrace: time.Second}); err != nil || !rep.Clean() {
		t.Fatalf("reconciliation after the repair and more traffic: %v %+v", err, rep)
	}
}
