package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestBackorders: on a pool that takes backorders, a hold the pool cannot give is granted
// backordered while the backordered units stay within the limit; nothing is taken past a
// waiting backorder; units that come fill the queue first come, first served (an open part is
// held from then on, a sold one committed), each with a FILLED event; a backorder given back
// owes nothing more; and Verify agrees with the counters, the queue and the records at
// every step.
func TestBackorders(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "bo", Shards: 1, Policy: PolicyBackorder, BackorderLimit: 5}, 3)
		n := 0
		hold := func(qty int64) (*Hold, error) {
			n++
			return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "bo", Qty: qty}},
				IdempotencyKey: fmt.Sprint("k", n), TTL: time.Minute, Actor: "shop"})
		}
		mustHold := func(qty int64, backordered bool) *Hold {
			t.Helper()
			h, err := hold(qty)
			if err != nil {
				t.Fatalf("hold of %d: %v", qty, err)
			}
			if h.Parts[0].Backordered != backordered {
				t.Fatalf("hold of %d: backordered %v, want %v", qty, h.Parts[0].Backordered, backordered)
			}
			return h
		}
		// verify checks Verify, and the pool's counters (avail: the shard's available count).
		verify := func(when string, avail, held, committed, backordered int64) {
			t.Helper()
			if _, err := e.Verify(ctx); err != nil {
				t.Fatalf("%s: verify: %v", when, err)
			}
			a, err := e.Availability(ctx, "s1", "bo")
			if err != nil {
				t.Fatal(err)
			}
			// Units that a waiting backorder will take are allotted, not available.
			allotted := int64(0)
			if backordered > 0 {
				allotted, avail = avail, 0
			}
			if a.Available != avail || a.Allotted != allotted || a.Held != held || a.Committed != committed || a.Backordered != backordered {
				t.Fatalf("%s: available %d allotted %d held %d committed %d backordered %d, want %d %d %d %d %d", when,
					a.Available, a.Allotted, a.Held, a.Committed, a.Backordered, avail, allotted, held, committed, backordered)
			}
			if want := max(5-backordered, 0); a.Backorderable != want {
				t.Fatalf("%s: backorderable %d, want %d", when, a.Backorderable, want)
			}
		}
		restock := func(qty int64) {
			t.Helper()
			n++
			if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "bo", Kind: Restock, Qty: qty,
				TransactionID: fmt.Sprint("r", n), Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		a := mustHold(2, false) // 1 left
		b := mustHold(2, true)  // 2 owed
		c := mustHold(1, true)  // one unit is there, but b waits: 3 owed
		d := mustHold(2, true)  // 5 owed: the limit
		verify("placed", 1, 2, 0, 5)
		if _, err := hold(1); !errors.Is(err, ErrInsufficient) {
			t.Fatalf("past the backorder limit: %v, want insufficient", err)
		}
		// A retry answers the same, backordered.
		if h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "bo", Qty: 2}},
			IdempotencyKey: "k4", TTL: time.Minute, Actor: "shop"}); err != nil || h.ID != d.ID || !h.Parts[0].Backordered {
			t.Fatalf("retry of d: %+v, %v", h, err)
		}
		if _, err := e.ReduceHold(ctx, b.ID, 1, "shop"); !errors.Is(err, ErrBackorderedPart) {
			t.Fatalf("reduce a backorder: %v", err)
		}
		if err := e.CommitPart(ctx, b.ID, 1, "shop"); !errors.Is(err, ErrBackorderedPart) {
			t.Fatalf("commit part of a backorder: %v", err)
		}
		if err := e.Commit(ctx, b.ID, "shop"); err != nil { // sold; its units still owed
			t.Fatal(err)
		}
		if err := e.Release(ctx, d.ID, "shop"); err != nil { // owes nothing more
			t.Fatal(err)
		}
		verify("b sold, d given back", 1, 2, 0, 3)
		gb, err := e.GetHold(ctx, b.ID, "shop")
		if err != nil || gb.Status != StatusCommitted || !gb.Parts[0].Backordered {
			t.Fatalf("b: %+v, %v; want committed, backordered", gb, err)
		}
		restock(1) // 2 available: b (2, sold) is filled and committed
		verify("b filled", 0, 2, 2, 1)
		if gb, _ := e.GetHold(ctx, b.ID, "shop"); gb.Parts[0].Backordered {
			t.Fatalf("b after its fill: %+v", gb)
		}
		if err := e.Release(ctx, a.ID, "shop"); err != nil { // 2 back: c (1) is filled, 1 left
			t.Fatal(err)
		}
		verify("a given back, c filled", 1, 1, 2, 0)
		gc, err := e.GetHold(ctx, c.ID, "shop")
		if err != nil || gc.Status != StatusActive || gc.Parts[0].Backordered || gc.Parts[0].Qty != 1 {
			t.Fatalf("c: %+v, %v; want held", gc, err)
		}
		mustHold(1, false) // no queue: taken from stock
		verify("queue empty", 0, 2, 2, 0)
		v, err := e.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		types := v.CountTypes()
		if types[EventBackordered] != 3 || types[EventFilled] != 2 {
			t.Fatalf("events %v: want 3 BACKORDERED and 2 FILLED", types)
		}
	})
}
