package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestHotPoolConcurrency: 1,000 goroutines reserve random quantities from one 8-shard pool and
// commit, release or abandon their holds. Afterwards no counter is negative, stock is conserved,
// the live counters equal the replayed events, chains verify, and every hold part of every
// successful reservation has exactly one RESERVED event.
func TestHotPoolConcurrency(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		const stock = 3000
		makePool(t, e, PoolConfig{Location: "wh-1", SKU: "hot", Shards: 8}, stock)

		var (
			mu        sync.Mutex
			parts     = map[string]bool{} // part id -> placed by a successful reservation
			committed atomic.Int64
			refused   atomic.Int64
		)
		var wg sync.WaitGroup
		for g := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				for i := range 3 {
					qty := int64(rng.IntN(5) + 1)
					h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "hot", Qty: qty}},
						Customer: fmt.Sprintf("cust-%d", g), IdempotencyKey: fmt.Sprintf("g%d-%d", g, i), Actor: "shop"})
					if errors.Is(err, ErrInsufficient) {
						refused.Add(1)
						continue
					}
					if err != nil {
						t.Errorf("reserve: %v", err)
						return
					}
					mu.Lock()
					hk, refs, _ := parseHoldID(h.ID, e.Partitions())
					for _, r := range refs {
						parts[hk.part(r)] = true
					}
					mu.Unlock()
					switch n := rng.IntN(10); {
					case n < 5:
						if err := e.Commit(ctx, h.ID, "shop"); err != nil {
							t.Errorf("commit: %v", err)
						}
						committed.Add(qty)
					case n < 8:
						if err := e.Release(ctx, h.ID, "shop"); err != nil {
							t.Errorf("release: %v", err)
						}
					}
				}
			}()
		}
		wg.Wait()
		events := checkInvariants(t, e)

		reserved := map[string]int{}
		var committedEv int64
		for _, evs := range events {
			for _, ev := range evs {
				switch {
				case ev.Type == EventReserved:
					reserved[ev.Hold]++
				case ev.Type == EventCommitted:
					committedEv += ev.Qty
				case ev.Type == EventVoided:
					reserved[ev.Hold]-- // a part of an attempt that answered nothing with it
				}
			}
		}
		for part := range parts {
			if reserved[part] != 1 {
				t.Fatalf("part %s of a successful hold has %d RESERVED events", part, reserved[part])
			}
		}
		for part, n := range reserved {
			if n != 0 && !parts[part] {
				t.Fatalf("part %s has a RESERVED event but no reservation returned it", part)
			}
		}
		a, err := e.Availability(ctx, "wh-1", "hot")
		if err != nil {
			t.Fatal(err)
		}
		if a.Committed != committed.Load() || committedEv != committed.Load() {
			t.Fatalf("committed: live %d, events %d, callers %d", a.Committed, committedEv, committed.Load())
		}
		if a.Available+a.Held+a.Committed != stock {
			t.Fatalf("pool: %d available + %d held + %d committed != %d", a.Available, a.Held, a.Committed, stock)
		}
		t.Logf("%d hold parts placed, %d refused, %d units committed, %d held, %d available; %d batches carried %d requests",
			len(parts), refused.Load(), a.Committed, a.Held, a.Available, e.Stats().Batches.Load(), e.Stats().BatchedRequests.Load())
	})
}

// TestExactlyStockSold: far more demand than stock. Exactly `stock` units are sold once every
// hold is committed: no oversell, and no unit left behind while a buyer still wanted one.
func TestExactlyStockSold(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		const stock = 2000
		makePool(t, e, PoolConfig{Location: "wh-1", SKU: "drop", Shards: 8}, stock)

		var sold atomic.Int64
		var wg sync.WaitGroup
		for g := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 11))
				for i := 0; ; i++ {
					qty := int64(rng.IntN(3) + 1)
					h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "drop", Qty: qty}},
						IdempotencyKey: fmt.Sprintf("g%d-%d", g, i), Actor: "shop"})
					if errors.Is(err, ErrInsufficient) {
						var ie *InsufficientError
						errors.As(err, &ie)
						if ie.Available == 0 && qty == 1 {
							return // sold out for a single unit: this buyer leaves
						}
						continue // try again (the next quantity may fit)
					}
					if err != nil {
						t.Errorf("reserve: %v", err)
						return
					}
					if err := e.Commit(ctx, h.ID, "shop"); err != nil {
						t.Errorf("commit: %v", err)
						return
					}
					sold.Add(qty)
				}
			}()
		}
		wg.Wait()
		checkInvariants(t, e)
		a, err := e.Availability(ctx, "wh-1", "drop")
		if err != nil {
			t.Fatal(err)
		}
		if sold.Load() != stock || a.Committed != stock || a.Available != 0 || a.Held != 0 {
			t.Fatalf("sold %d (live committed %d), left available %d, held %d; stock was %d",
				sold.Load(), a.Committed, a.Available, a.Held, stock)
		}
	})
}

// TestConcurrentCarts: 200 goroutines buy carts of 2 to 5 lines over six small pools (two of
// them sharded), whose later lines run at once. A cart is all or nothing: every granted hold
// has its lines' units in line order, every refused one leaves nothing held, and once every
// hold is committed or released the units sold per pool are exactly what the granted carts
// committed.
func TestConcurrentCarts(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		skus := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
		for i, sku := range skus {
			makePool(t, e, PoolConfig{Location: "wh-1", SKU: sku, Shards: 1 + 3*(i%3/2)}, 150)
		}
		var (
			sold    [6]atomic.Int64
			granted atomic.Int64
			refused atomic.Int64
			wg      sync.WaitGroup
		)
		for g := range 200 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 13))
				for i := range 4 {
					lines := rng.Perm(len(skus))[:2+rng.IntN(4)]
					items := make([]Item, len(lines))
					for j, k := range lines {
						items[j] = Item{Location: "wh-1", SKU: skus[k], Qty: int64(1 + rng.IntN(3))}
					}
					h, err := e.Reserve(ctx, ReserveRequest{Items: items, IdempotencyKey: fmt.Sprintf("cart-%d-%d", g, i), Actor: "shop"})
					if errors.Is(err, ErrInsufficient) {
						refused.Add(1)
						continue
					}
					if err != nil {
						t.Errorf("reserve: %v", err)
						return
					}
					granted.Add(1)
					got := map[string]int64{}
					last := 0
					for _, part := range h.Parts {
						got[part.SKU] += part.Qty
						at := -1
						for j, it := range items {
							if it.SKU == part.SKU {
								at = j
							}
						}
						if at < last {
							t.Errorf("hold %s: parts %+v not in line order %+v", h.ID, h.Parts, items)
						}
						last = at
					}
					for _, it := range items {
						if got[it.SKU] != it.Qty {
							t.Errorf("hold %s: %d units of %s, cart asked %d", h.ID, got[it.SKU], it.SKU, it.Qty)
						}
					}
					if rng.IntN(2) == 0 {
						if err := e.Release(ctx, h.ID, "shop"); err != nil {
							t.Errorf("release: %v", err)
						}
						continue
					}
					if err := e.Commit(ctx, h.ID, "shop"); err != nil {
						t.Errorf("commit: %v", err)
						continue
					}
					for j, k := range lines {
						sold[k].Add(items[j].Qty)
					}
				}
			})
		}
		wg.Wait()
		if granted.Load() == 0 || refused.Load() == 0 {
			t.Fatalf("granted %d, refused %d: the test needs both", granted.Load(), refused.Load())
		}
		checkInvariants(t, e)
		for k, sku := range skus {
			a, err := e.Availability(ctx, "wh-1", sku)
			if err != nil {
				t.Fatal(err)
			}
			if a.Held != 0 || a.Committed != sold[k].Load() || a.Available+a.Committed != 150 {
				t.Errorf("%s: %+v; carts committed %d of 150", sku, a, sold[k].Load())
			}
		}
	})
}

// TestCustomerLimitConcurrent: one customer fires 60 concurrent single-unit reserves at an
// 8-shard pool with a limit of 3 per customer: exactly 3 succeed. The units all sat on other
// shards than the customer's, so the engine had to move them over first.
func TestCustomerLimitConcurrent(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "wh-1", SKU: "limited", Shards: 8, CustomerLimit: 3}, 0)
		p, _ := e.pool(ctx, "wh-1", "limited")
		home := homeShard(p, "", 0, "alice")
		other := (home + 3) % 8
		if _, err := e.adjustShard(ctx, p, other, Restock, 100, "stock-other", "fp", AdjustRequest{Actor: "test"}, nil); err != nil {
			t.Fatal(err)
		}

		var ok, limited atomic.Int64
		var holds sync.Map
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "limited", Qty: 1}}, Customer: "alice",
					IdempotencyKey: fmt.Sprintf("a-%d", i), Actor: "shop"})
				switch {
				case err == nil:
					ok.Add(1)
					holds.Store(h.ID, true)
				case errors.Is(err, ErrCustomerLimit):
					limited.Add(1)
				default:
					t.Errorf("reserve: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 3 || limited.Load() != 57 {
			t.Fatalf("%d reserved, %d refused for the limit; want 3 and 57", ok.Load(), limited.Load())
		}
		// Releasing one hold frees one unit of allowance; committing keeps it used.
		var first string
		holds.Range(func(k, _ any) bool { first = k.(string); return false })
		if err := e.Release(ctx, first, "shop"); err != nil {
			t.Fatal(err)
		}
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "limited", Qty: 1}}, Customer: "alice", IdempotencyKey: "a-again", Actor: "shop"})
		if err := e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "limited", Qty: 1}}, Customer: "alice", IdempotencyKey: "a-over", Actor: "shop"})
		var le *LimitError
		if !errors.As(err, &le) || le.Used != 3 || le.Limit != 3 {
			t.Fatalf("want a limit error with 3 of 3 used, got %v", err)
		}
		// Another customer is not affected.
		mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "wh-1", SKU: "limited", Qty: 3}}, Customer: "bob", IdempotencyKey: "b-1", Actor: "shop"})
		n := countTypes(checkInvariants(t, e))
		if n[EventTransferOut] == 0 || n[EventTransferOut] != n[EventTransferIn] {
			t.Fatalf("expected completed transfers to the customers' shards, events %v", n)
		}
		if !strings.Contains(fmt.Sprint(n), "TRANSFER") {
			t.Fatal("no transfer events")
		}
	})
}
