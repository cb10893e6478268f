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

// TestBackorderGiveBackFills: a backorder given back (released, expired or voided) lets the
// one behind it take the units on hand at once.
func TestBackorderGiveBackFills(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	e := newEngine(t, testredisStandalone(t), nil, clock.option())
	makePool(t, e, PoolConfig{Location: "s1", SKU: "gb", Shards: 1, Policy: PolicyBackorder, BackorderLimit: 10}, 1)
	hold := func(key string, qty int64, ttl time.Duration) *Hold {
		t.Helper()
		h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gb", Qty: qty}}, IdempotencyKey: key, TTL: ttl, Actor: "shop"})
		if err != nil || !h.Parts[0].Backordered {
			t.Fatalf("%s: %+v %v, want backordered", key, h, err)
		}
		return h
	}
	owed := func(when string, want int64) {
		t.Helper()
		a, err := e.Availability(ctx, "s1", "gb")
		if err != nil || a.Backordered != want {
			t.Fatalf("%s: %+v %v, want %d backordered", when, a, err, want)
		}
		if _, err := e.Verify(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	b := hold("b", 2, time.Minute) // 1 on hand, allotted to b
	hold("c", 1, time.Minute)
	hold("d", 1, time.Second)
	if err := e.Release(ctx, b.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	owed("b released: c takes the unit on hand", 1)
	hold("x", 2, time.Second) // 2 owed after d
	if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "gb", Kind: Restock, Qty: 1, TransactionID: "in", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	owed("d filled", 2)
	clock.Advance(2 * time.Second) // d and x expire: d's unit comes back, x owes nothing more
	p := e.PartitionOf("s1", "gb", 0)
	if _, err := e.Sweep(ctx, p, 100, 100); err != nil {
		t.Fatal(err)
	}
	owed("d and x expired", 0)
}

// TestBackorderQueueWhateverThePolicy: an instance that still has the pool cached without a
// policy takes nothing while backorders wait.
func TestBackorderQueueWhateverThePolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testredisStandalone(t)
	e := newEngine(t, rdb, func(c *Config) { c.PoolCacheTTL = time.Hour })
	makePool(t, e, PoolConfig{Location: "s1", SKU: "st", Shards: 1}, 1)
	if _, err := e.Availability(ctx, "s1", "st"); err != nil { // cached: no policy
		t.Fatal(err)
	}
	other, err := New(ctx, rdb, e.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.CreatePool(ctx, PoolConfig{Location: "s1", SKU: "st", Vendor: "v1", Shards: 1, Policy: PolicyBackorder, BackorderLimit: 5}, "test"); err != nil {
		t.Fatal(err)
	}
	if h, err := other.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "st", Qty: 2}}, IdempotencyKey: "a", Actor: "shop"}); err != nil || !h.Parts[0].Backordered {
		t.Fatalf("a: %+v %v, want backordered", h, err)
	}
	// One unit on hand, allotted to a: the instance with the old configuration may not take it.
	if _, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "st", Qty: 1}}, IdempotencyKey: "b", Actor: "shop"}); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("a hold past a waiting backorder: %v, want insufficient", err)
	}
}

// TestBackorderBatchFillsPerChange: a batch of vendor changes fills the queue after each change,
// as the changes one by one would: a restock that fills the queue leaves nothing for a
// spoilage behind it.
func TestBackorderBatchFillsPerChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngine(t, testredisStandalone(t), nil)
	makePool(t, e, PoolConfig{Location: "s1", SKU: "bf", Shards: 1, Policy: PolicyBackorder, BackorderLimit: 5}, 0)
	if h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "bf", Qty: 2}}, IdempotencyKey: "a", Actor: "shop"}); err != nil || !h.Parts[0].Backordered {
		t.Fatalf("a: %+v %v", h, err)
	}
	out := e.AdjustMany(ctx, "v1", []AdjustRequest{
		{Location: "s1", SKU: "bf", Kind: Restock, Qty: 2, TransactionID: "in", Actor: "test"},
		{Location: "s1", SKU: "bf", Kind: Spoilage, Qty: 2, TransactionID: "out", Actor: "test"},
	})
	if out[0].Err != nil || !errors.Is(out[1].Err, ErrInsufficient) {
		t.Fatalf("restock then spoilage: %v, %v; want the spoilage refused (the restock went to the backorder)", out[0].Err, out[1].Err)
	}
	if a, _ := e.Availability(ctx, "s1", "bf"); a.Backordered != 0 || a.Held != 2 {
		t.Fatalf("after the batch: %+v", a)
	}
	if _, err := e.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTold: a part placed by the fast path, or by a slow-path attempt whose answer its key
// record holds, was told; a part of an attempt that answered nothing was not.
func TestTold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngine(t, testredisStandalone(t), nil)
	makePool(t, e, PoolConfig{Location: "s1", SKU: "t1", Shards: 1}, 10)
	makePool(t, e, PoolConfig{Location: "s1", SKU: "t2", Shards: 1}, 10)
	one, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "t1", Qty: 1}}, IdempotencyKey: "one", Actor: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	cart, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "t1", Qty: 1}, {Location: "s1", SKU: "t2", Qty: 1}},
		IdempotencyKey: "cart", Actor: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Hold{one, cart} {
		parts, err := e.HoldParts(h.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if told, err := e.Told(ctx, p.Part); err != nil || !told {
				t.Fatalf("part %s of hold %s: told %v, %v", p.Part, h.ID, told, err)
			}
		}
	}
	parts, _ := e.HoldParts(cart.ID)
	token, _, _ := PartOf(parts[0].Part)
	if told, err := e.Told(ctx, token+".0badcafe.0.0"); err != nil || told {
		t.Fatalf("a part of an attempt that answered nothing: told %v, %v", told, err)
	}
}

// TestReplayQueueReusedPart: a part id placed again (its earlier placing sold, still owed, and
// its answers forgotten) is a second entry of the queue: giving the new one back leaves the
// sale, and a fill takes the entry at the head, as lib.lua does.
func TestReplayQueueReusedPart(t *testing.T) {
	r := NewReplay(ReplayOptions{})
	k := ShardKey{Location: "s1", SKU: "q"}
	ev := func(typ string, held int64) *Event {
		return &Event{Type: typ, Location: "s1", SKU: "q", Hold: "p.0.0.0", Qty: 2, HeldDelta: held}
	}
	r.Apply(ev(EventBackordered, 0))
	r.Apply(ev(EventCommitted, 0))
	r.Apply(ev(EventBackordered, 0))
	r.Apply(ev(EventReleased, 0))
	if q := r.Queues[k]; len(q) != 1 || !q[0].Sold || r.Shard(k).Backordered != 2 {
		t.Fatalf("queue %+v, owed %d; want the sale alone", q, r.Shard(k).Backordered)
	}
	r.Apply(ev(EventBackordered, 0))
	r.Apply(&Event{Type: EventFilled, Location: "s1", SKU: "q", Hold: "p.0.0.0", Qty: 2, Delta: -2})
	if q := r.Queues[k]; len(q) != 1 || q[0].Sold || r.Shard(k).Committed != 2 {
		t.Fatalf("queue %+v, committed %d; want the sale filled and the new part waiting", q, r.Shard(k).Committed)
	}
}

// TestBackorderReclaimsInline: a hold that would be refused while a backorder waits first
// gives back the expired holds the sweeper has not reached: they may fill the queue, and the
// hold is then had.
func TestBackorderReclaimsInline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	e := newEngine(t, testredisStandalone(t), nil, clock.option())
	makePool(t, e, PoolConfig{Location: "s1", SKU: "ri", Shards: 1, Policy: PolicyBackorder, BackorderLimit: 1}, 1)
	hold := func(key string, ttl time.Duration) (*Hold, error) {
		return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "ri", Qty: 1}}, IdempotencyKey: key, TTL: ttl, Actor: "shop"})
	}
	if h, err := hold("h", time.Second); err != nil || h.Parts[0].Backordered {
		t.Fatalf("h: %+v %v", h, err)
	}
	if a, err := hold("a", time.Minute); err != nil || !a.Parts[0].Backordered {
		t.Fatalf("a: %+v %v", a, err)
	}
	clock.Advance(2 * time.Second) // h has expired; no sweeper ran
	if b, err := hold("b", time.Minute); err != nil || !b.Parts[0].Backordered {
		t.Fatalf("b, with h expired and a waiting at the limit: %+v %v; want backordered (h's unit fills a)", b, err)
	}
	if av, _ := e.Availability(ctx, "s1", "ri"); av.Held != 1 || av.Backordered != 1 {
		t.Fatalf("after b: %+v", av)
	}
	if _, err := e.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBackorderReclaimsInlineUnderLimit: the same when the customer's limit check is what
// reclaimed the expired hold.
func TestBackorderReclaimsInlineUnderLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	e := newEngine(t, testredisStandalone(t), nil, clock.option())
	makePool(t, e, PoolConfig{Location: "s1", SKU: "rl", Shards: 1, CustomerLimit: 1, Policy: PolicyBackorder, BackorderLimit: 1}, 1)
	hold := func(key, customer string, ttl time.Duration) (*Hold, error) {
		return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "rl", Qty: 1}}, Customer: customer, IdempotencyKey: key,
			TTL: ttl, Actor: "shop"})
	}
	if h, err := hold("h", "c", time.Second); err != nil || h.Parts[0].Backordered {
		t.Fatalf("h: %+v %v", h, err)
	}
	if d, err := hold("d", "d", time.Minute); err != nil || !d.Parts[0].Backordered {
		t.Fatalf("d: %+v %v", d, err)
	}
	clock.Advance(2 * time.Second) // h has expired; no sweeper ran
	if c, err := hold("c2", "c", time.Minute); err != nil || !c.Parts[0].Backordered {
		t.Fatalf("c again, with h expired and d waiting at the limit: %+v %v; want backordered", c, err)
	}
	if _, err := e.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
