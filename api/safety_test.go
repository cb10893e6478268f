package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
)

// TestSafetyStock: a pool's safety stock through HTTP. Racing holds (single items and carts)
// take exactly the units above it; availability shows it on hand but not available; lowering
// it frees units at once; a bad value, or one on a sharded pool, is refused and changes nothing.
func TestSafetyStock(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		ctx := context.Background()
		put := func(safety any) response {
			return ts.do("PUT", "/v1/pools/s1/buffered", adminKey, map[string]any{"vendor": "acme", "shards": 1, "safety_stock": safety})
		}
		put(6).want(t, 200, "")
		if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "buffered", Kind: engine.Set, Qty: 20,
			TransactionID: "seed", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		avail := func() response {
			return ts.do("GET", "/v1/availability/buffered?location=s1", clientKey, nil).want(t, 200, "")
		}
		if a := avail(); a.num("available") != 14 || a.num("on_hand") != 20 || a.num("safety_stock") != 6 {
			t.Fatalf("availability with 20 units and a safety stock of 6: %s", a.raw)
		}

		// Racing holds of one or two units: exactly the 14 above the safety stock are held.
		holdAll := func(n int, tag string) int64 {
			var held atomic.Int64
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					qty := 1 + i%2
					r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "buffered", "qty": qty},
						"Idempotency-Key", fmt.Sprint(tag, i))
					switch r.status {
					case 201:
						held.Add(int64(qty))
					case 409:
						if e, _ := r.body["error"].(map[string]any); e["code"] != "insufficient_stock" {
							t.Errorf("hold %d: %s", i, r.raw)
						}
					default:
						t.Errorf("hold %d: %d %s", i, r.status, r.raw)
					}
				})
			}
			wg.Wait()
			return held.Load()
		}
		// Then one-unit holds one at a time until refused: every unit above the safety stock
		// can be had, whichever shard it is on.
		holdRest := func(tag string) {
			for i := 0; ; i++ {
				r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "buffered", "qty": 1},
					"Idempotency-Key", fmt.Sprint(tag, i))
				if r.status == 409 {
					return
				}
				r.want(t, 201, "")
			}
		}
		if held := holdAll(24, "a"); held > 14 {
			t.Fatalf("%d units held of 20 with a safety stock of 6", held)
		}
		holdRest("one")
		a := avail()
		if a.num("available") != 0 || a.num("held") != 14 || a.num("on_hand") != 20 {
			t.Fatalf("after every unit above the safety stock was held: %s", a.raw)
		}
		st := ts.do("GET", "/v1/vendors/acme/inventory/buffered/status?location=s1", adminKey, nil).want(t, 200, "")
		if st.num("buffered") != 6 || !hasReason(st, "SAFETY_STOCK") {
			t.Fatalf("pool status: %s", st.raw)
		}
		inv := ts.do("GET", "/v1/vendors/acme/inventory", adminKey, nil).want(t, 200, "")
		if fmt.Sprint(inv.body["items"]) == "" || !inventoryShows(inv, "buffered", 6, 0, 6) {
			t.Fatalf("vendor inventory: %s", inv.raw)
		}
		// A cart (the slow path) finds nothing either.
		ts.do("POST", "/v1/holds", clientKey, map[string]any{"items": []map[string]any{{"location": "s1", "sku": "buffered", "qty": 1},
			{"location": "berlin", "sku": "cap", "qty": 1}}}, "Idempotency-Key", "cart").want(t, 409, "insufficient_stock")

		// Bad input changes nothing.
		put(-1).want(t, 422, "invalid")
		ts.do("PUT", "/v1/pools/s1/sharded", adminKey, map[string]any{"vendor": "acme", "shards": 4, "safety_stock": 2}).want(t, 422, "invalid")
		if r := put("six"); r.status != 400 && r.status != 422 {
			t.Fatalf("safety_stock \"six\": %d %s", r.status, r.raw)
		}
		if a := avail(); a.num("safety_stock") != 6 || a.num("available") != 0 {
			t.Fatalf("after refused changes: %s", a.raw)
		}

		// Lowered to 2: four units come free at once, and racing holds take exactly them.
		put(2).want(t, 200, "")
		if a := avail(); a.num("available") != 4 {
			t.Fatalf("after lowering the safety stock to 2: %s", a.raw)
		}
		if held := holdAll(12, "b"); held > 4 {
			t.Fatalf("%d more units held after lowering the safety stock from 6 to 2", held)
		}
		holdRest("two")
		if a := avail(); a.num("available") != 0 || a.num("held") != 18 || a.num("on_hand") != 20 {
			t.Fatalf("after every unit above the lower safety stock was held: %s", a.raw)
		}
		if _, err := ts.eng.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func hasReason(r response, code string) bool {
	rs, _ := r.body["reasons"].([]any)
	for _, x := range rs {
		if m, _ := x.(map[string]any); m["code"] == code {
			return true
		}
	}
	return false
}

// inventoryShows says whether the vendor's inventory lists sku with these units in stock
// (safety stock included), this safety stock and this many available.
func inventoryShows(r response, sku string, stock, available, safety int64) bool {
	items, _ := r.body["items"].([]any)
	for _, x := range items {
		m, _ := x.(map[string]any)
		if m["sku"] == sku {
			return int64(m["stock_quantity"].(float64)) == stock && int64(m["available"].(float64)) == available &&
				int64(m["safety_stock"].(float64)) == safety
		}
	}
	return false
}

// TestCustomerLimitWindow: a per-customer limit over a window through HTTP. Racing holds of
// one customer get exactly the limit; units bought count until the window has passed (on the
// server's clock), not a millisecond less; bad windows are refused and change nothing.
func TestCustomerLimitWindow(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		const window = 1500 * time.Millisecond
		put := func(body map[string]any) response {
			return ts.do("PUT", "/v1/pools/s1/windowed", adminKey, body)
		}
		put(map[string]any{"vendor": "acme", "shards": 4, "customer_limit": 2, "customer_window_ms": window.Milliseconds()}).want(t, 200, "")
		if _, err := ts.eng.Adjust(context.Background(), engine.AdjustRequest{Location: "s1", SKU: "windowed", Kind: engine.Set, Qty: 100,
			TransactionID: "seed", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		n := 0
		hold := func(customer string, qty int) response {
			n++
			return ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "windowed", "qty": qty,
				"customer_id": customer}, "Idempotency-Key", fmt.Sprint("w", n))
		}
		// Racing one-unit holds of one customer: exactly two.
		var granted atomic.Int64
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "windowed", "qty": 1,
					"customer_id": "bob"}, "Idempotency-Key", fmt.Sprint("bob", i))
				switch e, _ := r.body["error"].(map[string]any); {
				case r.status == 201:
					granted.Add(1)
				case r.status != 409 || e["code"] != "customer_limit":
					t.Errorf("bob's hold %d: %d %s", i, r.status, r.raw)
				}
			})
		}
		wg.Wait()
		if granted.Load() != 2 {
			t.Fatalf("%d of bob's racing holds granted, limit 2", granted.Load())
		}

		// Bought, then refused until the window has passed.
		h := hold("alice", 2).want(t, 201, "")
		ts.do("POST", "/v1/holds/"+h.str("hold_id")+"/commit", clientKey, nil).want(t, 200, "")
		hold("alice", 1).want(t, 409, "customer_limit")
		ts.clock.Advance(window - time.Millisecond)
		hold("alice", 1).want(t, 409, "customer_limit")
		ts.clock.Advance(time.Millisecond) // the window has passed
		hold("alice", 2).want(t, 201, "")

		// Bad windows change nothing.
		put(map[string]any{"vendor": "acme", "shards": 4, "customer_window_ms": 1000}).want(t, 422, "invalid")
		put(map[string]any{"vendor": "acme", "shards": 4, "customer_limit": 2, "customer_window_ms": -1}).want(t, 422, "invalid")
		inv := ts.do("GET", "/v1/vendors/acme/inventory", adminKey, nil).want(t, 200, "")
		if !strings.Contains(string(inv.raw), `"customer_window_ms":1500`) {
			t.Fatalf("vendor inventory after refused changes: %s", inv.raw)
		}
		if _, err := ts.eng.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
