package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
)

// TestBackorders: a pool's inventory policy through HTTP. Racing holds and carts (then single
// holds until refused) get exactly the units on hand, then exactly the backorder limit
// backordered, the rest refused; no
// hold takes stock past a waiting backorder; racing sales, give-backs and restocks fill the
// queue first come, first served with one FILLED event per fill; availability shows
// sellable, on hand and backorderable apart; a backordered hold is changed only whole; bad
// policies are refused naming the field and change nothing; and Verify agrees at the end.
func TestBackorders(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		ctx := context.Background()
		put := func(sku string, body map[string]any) response {
			body["vendor"] = "acme"
			return ts.do("PUT", "/v1/pools/s1/"+sku, adminKey, body)
		}
		put("bo", map[string]any{"shards": 1, "inventory_policy": "backorder", "backorder_limit": 6}).want(t, 200, "")
		put("other", map[string]any{"shards": 1}).want(t, 200, "")
		for _, sku := range []string{"bo", "other"} {
			if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: sku, Kind: engine.Set, Qty: 4,
				TransactionID: "seed-" + sku, Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}

		// Bad policies: refused, naming the field, nothing changed.
		before := ts.seqs()
		for _, c := range []struct {
			field string
			body  map[string]any
		}{
			{"inventory_policy", map[string]any{"shards": 1, "inventory_policy": "sometimes"}},
			{"backorder_limit", map[string]any{"shards": 1, "inventory_policy": "backorder"}},
			{"backorder_limit", map[string]any{"shards": 1, "inventory_policy": "backorder", "backorder_limit": -1}},
			{"backorder_limit", map[string]any{"shards": 1, "backorder_limit": 3}},
			{"release_at", map[string]any{"shards": 1, "inventory_policy": "preorder", "backorder_limit": 3}},
			{"release_at", map[string]any{"shards": 1, "inventory_policy": "backorder", "backorder_limit": 3, "release_at_ms": 5}},
			{"inventory_policy", map[string]any{"shards": 4, "inventory_policy": "backorder", "backorder_limit": 3}},
			{"inventory_policy", map[string]any{"shards": 1, "inventory_policy": "backorder", "backorder_limit": 3, "safety_stock": 1}},
		} {
			r := put("bad", c.body).want(t, 422, "invalid")
			if msg := r.body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, c.field) {
				t.Fatalf("%v: %s does not name %s", c.body, r.raw, c.field)
			}
		}
		ts.do("GET", "/v1/availability/bad?location=s1", clientKey, nil).want(t, 404, "")
		if !slices.Equal(before, ts.seqs()) {
			t.Fatal("a refused pool changed the partitions")
		}

		// 30 racing shoppers, half of them with a cart of two lines (the second on a pool
		// without a policy): 4 units on hand, 6 backorderable.
		type granted struct {
			id          string
			backordered bool
			single      bool // a hold of one part
		}
		var mu sync.Mutex
		var got []granted
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				body := map[string]any{"location": "s1", "sku": "bo", "qty": 1}
				if i%2 == 1 {
					body = map[string]any{"items": []map[string]any{{"location": "s1", "sku": "bo", "qty": 1}, {"location": "s1", "sku": "other", "qty": 1}}}
				}
				r := ts.do("POST", "/v1/holds", clientKey, body, "Idempotency-Key", fmt.Sprint("race-", i))
				switch r.status {
				case 201:
					parts := r.body["parts"].([]any)
					for _, p := range parts {
						p := p.(map[string]any)
						if p["sku"] == "bo" {
							mu.Lock()
							got = append(got, granted{r.str("hold_id"), p["backordered"] == true, len(parts) == 1})
							mu.Unlock()
						} else if p["backordered"] == true {
							t.Errorf("a part of a pool without a policy backordered: %s", r.raw)
						}
					}
				case 409:
				default:
					t.Errorf("hold %d: %d %s", i, r.status, r.raw)
				}
			})
		}
		wg.Wait()
		// A cart whose other line was refused gave its backorder back after others were
		// refused: one-unit holds one at a time then get what is left, and no more.
		for i := 0; ; i++ {
			r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "bo", "qty": 1}, "Idempotency-Key", fmt.Sprint("rest-", i))
			if r.status == 409 {
				break
			}
			r.want(t, 201, "")
			got = append(got, granted{r.str("hold_id"), strings.Contains(string(r.raw), `"backordered":true`), true})
		}
		var held, owed int
		for _, g := range got {
			if g.backordered {
				owed++
			} else {
				held++
			}
		}
		if held != 4 || owed != 6 {
			t.Fatalf("%d held and %d backordered of 4 on hand and a limit of 6", held, owed)
		}
		if len(got) > 10 {
			t.Fatalf("%d holds granted of 4 on hand and a limit of 6", len(got))
		}
		avail := func() response {
			return ts.do("GET", "/v1/availability/bo?location=s1", clientKey, nil).want(t, 200, "")
		}
		if a := avail(); a.num("available") != 0 || a.num("on_hand") != 4 || a.num("backordered") != 6 || a.num("backorderable") != 0 ||
			a.num("sellable") != 0 || a.str("inventory_policy") != "backorder" {
			t.Fatalf("availability: %s", a.raw)
		}

		// The limit cannot go below what is backordered, nor can the policy stop.
		put("bo", map[string]any{"shards": 1, "inventory_policy": "backorder", "backorder_limit": 5}).want(t, 422, "invalid")
		put("bo", map[string]any{"shards": 1, "inventory_policy": "deny"}).want(t, 422, "invalid")

		// A backordered hold changes only whole.
		var bos []string
		single := ""
		for _, g := range got {
			if g.backordered && !slices.Contains(bos, g.id) {
				bos = append(bos, g.id)
				if g.single {
					single = g.id
				}
			}
		}
		if single != "" {
			ts.do("POST", "/v1/holds/"+single+"/adjust", clientKey, map[string]any{"qty": 1}).want(t, 200, "") // the same: nothing to do
		}
		if r := ts.do("GET", "/v1/holds/"+bos[0], clientKey, nil).want(t, 200, ""); !strings.Contains(string(r.raw), `"backordered":true`) {
			t.Fatalf("a backordered hold reads %s", r.raw)
		}

		// Racing: half the backordered holds sold, the others given back, restocks of one
		// unit at a time, and more shoppers trying their luck.
		given := map[string]bool{}
		for i, id := range bos {
			given[id] = i%2 == 1
		}
		for i, id := range bos {
			wg.Go(func() {
				if given[id] {
					ts.do("POST", "/v1/holds/"+id+"/release", clientKey, nil).want(t, 200, "")
				} else {
					ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, nil).want(t, 200, "")
				}
			})
			wg.Go(func() {
				if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "bo", Kind: engine.Restock, Qty: 1,
					TransactionID: fmt.Sprint("in-", i), Actor: "test"}); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "bo", "qty": 1}, "Idempotency-Key", fmt.Sprint("late-", i))
				if r.status != 201 && r.status != 409 {
					t.Errorf("late hold %d: %s", i, r.raw)
				}
			})
		}
		wg.Wait()
		if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "bo", Kind: engine.Restock, Qty: 20,
			TransactionID: "in-last", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		if a := avail(); a.num("backordered") != 0 || a.num("backorderable") != 6 || a.num("sellable") != a.num("available")+6 {
			t.Fatalf("availability after the restocks: %s", a.raw)
		}

		// Every backorder not given back was filled once, in the order the backorders were
		// placed; a hold sold before its fill is committed by it.
		v, err := ts.eng.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var placed, filled []string
		ended := map[string]string{}
		for _, evs := range v.Events {
			for _, ev := range evs {
				if ev.SKU != "bo" {
					continue
				}
				switch ev.Type {
				case engine.EventBackordered:
					placed = append(placed, ev.Hold)
				case engine.EventFilled:
					filled = append(filled, ev.Hold)
				case engine.EventReleased, engine.EventVoided, engine.EventExpired:
					ended[ev.Hold] = ev.Type
				}
			}
		}
		// filled must be placed in order, less those given back before their fill.
		i := 0
		for _, part := range filled {
			for i < len(placed) && placed[i] != part {
				if _, gone := ended[placed[i]]; !gone {
					t.Fatalf("backorder %s was passed over: filled %v, placed %v", placed[i], filled, placed)
				}
				i++
			}
			if i == len(placed) {
				t.Fatalf("filled %v, not in the order placed %v (or filled twice)", filled, placed)
			}
			i++
		}
		for ; i < len(placed); i++ {
			if _, gone := ended[placed[i]]; !gone {
				t.Fatalf("backorder %s never filled: filled %v, placed %v", placed[i], filled, placed)
			}
		}
		for _, id := range bos {
			r := ts.do("GET", "/v1/holds/"+id, clientKey, nil).want(t, 200, "")
			switch {
			case given[id] && r.str("status") != "RELEASED", !given[id] && r.str("status") != "COMMITTED":
				t.Fatalf("hold %s: %s", id, r.raw)
			case strings.Contains(string(r.raw), `"backordered":true`):
				t.Fatalf("hold %s still backordered after the restock: %s", id, r.raw)
			}
		}
	})
}

// TestPreorders: a preorder pool backorders holds until its release time (on the server's
// clock) and refuses them after it, while the preorders still come first; partial changes of
// a preorder are refused with 409.
func TestPreorders(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		ctx := context.Background()
		release := ts.clock.Now().Add(30 * time.Second).UnixMilli()
		ts.do("PUT", "/v1/pools/s1/pre", adminKey, map[string]any{"vendor": "acme", "shards": 1, "inventory_policy": "preorder",
			"backorder_limit": 3, "release_at_ms": release}).want(t, 200, "")
		hold := func(key string, qty int) response {
			return ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "s1", "sku": "pre", "qty": qty, "ttl_ms": 300000},
				"Idempotency-Key", key)
		}
		a := hold("a", 2).want(t, 201, "")
		if !strings.Contains(string(a.raw), `"backordered":true`) {
			t.Fatalf("a preorder: %s", a.raw)
		}
		id := a.str("hold_id")
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 1}).want(t, 409, "hold_backordered")
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 1}).want(t, 409, "hold_backordered")
		hold("b", 2).want(t, 409, "insufficient_stock") // 2 + 2 > 3
		if r := ts.do("GET", "/v1/availability/pre?location=s1", clientKey, nil).want(t, 200, ""); r.num("backorderable") != 1 ||
			r.num("release_at_ms") != release {
			t.Fatalf("availability before the release: %s", r.raw)
		}
		ts.clock.Advance(30 * time.Second)
		hold("c", 1).want(t, 409, "insufficient_stock") // released: no more preorders
		if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "pre", Kind: engine.Restock, Qty: 3,
			TransactionID: "release", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		// The preorder was filled first; one unit is left for anyone.
		if r := ts.do("GET", "/v1/holds/"+id, clientKey, nil).want(t, 200, ""); strings.Contains(string(r.raw), `"backordered":true`) {
			t.Fatalf("the preorder after the release's stock came: %s", r.raw)
		}
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 1}).want(t, 200, "") // filled: a partial commit is fine now
		hold("d", 1).want(t, 201, "")
		if _, err := ts.eng.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
