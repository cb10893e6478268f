package api

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
)

// TestChangeHold: a hold of one part reduced (the difference available at once) and committed
// in part (the rest released in the same step), each answered the same when sent again and
// written as one event; above the held quantity or to zero refused naming qty; a cart refused
// whole; a customer's limit counts only what is still held or sold. On standalone and cluster.
func TestChangeHold(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		ctx := context.Background()
		hold := func(key string, body map[string]any) string {
			t.Helper()
			return ts.do("POST", "/v1/holds", clientKey, body, "Idempotency-Key", key).want(t, 201, "").str("hold_id")
		}
		avail := func(sku string) string {
			a, err := ts.eng.Availability(ctx, "berlin", sku)
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("%d/%d/%d", a.Available, a.Held, a.Committed)
		}
		id := hold("h1", map[string]any{"location": "berlin", "sku": "cap", "qty": 3}) // cap: 10 units
		r := ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 2}).want(t, 200, "")
		if fmt.Sprint(r.parts()) != "map[berlin:2]" || avail("cap") != "8/2/0" {
			t.Fatalf("reduced: %s, cap %s", r.raw, avail("cap"))
		}
		before := ts.seqs()
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 2}).want(t, 200, "")
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 3}).want(t, 422, "invalid")
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 0}).want(t, 422, "invalid")
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{}).want(t, 400, "bad_request")
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 3}).want(t, 422, "invalid")
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 0}).want(t, 422, "invalid")
		if fmt.Sprint(ts.seqs()) != fmt.Sprint(before) {
			t.Fatal("a retry or a refused change changed state")
		}
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 1}).want(t, 200, "")
		if avail("cap") != "9/0/1" {
			t.Fatalf("committed 1 of 2: cap %s", avail("cap"))
		}
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 1}).want(t, 200, "")
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, nil).want(t, 200, "")
		ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, map[string]any{"qty": 2}).want(t, 409, "hold_committed")
		ts.do("POST", "/v1/holds/"+id+"/adjust", clientKey, map[string]any{"qty": 1}).want(t, 409, "hold_committed")
		if r := ts.do("GET", "/v1/holds/"+id, clientKey, nil).want(t, 200, ""); r.str("status") != "COMMITTED" || fmt.Sprint(r.parts()) != "map[berlin:1]" {
			t.Fatalf("the hold after: %s", r.raw)
		}
		ts.do("POST", "/v1/holds/"+id+"/adjust", bistroKey, map[string]any{"qty": 1}).want(t, 403, "forbidden")

		// A limited pool (2 per customer): reducing frees the customer's units too.
		lim := hold("l1", map[string]any{"location": "berlin", "sku": "limited", "qty": 2, "customer_id": "c1"})
		ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "limited", "customer_id": "c1"}, "Idempotency-Key", "l2").want(t, 409, "customer_limit")
		ts.do("POST", "/v1/holds/"+lim+"/adjust", clientKey, map[string]any{"qty": 1}).want(t, 200, "")
		hold("l3", map[string]any{"location": "berlin", "sku": "limited", "customer_id": "c1"})
		ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "limited", "customer_id": "c1"}, "Idempotency-Key", "l4").want(t, 409, "customer_limit")

		cart := hold("c1", map[string]any{"items": []map[string]any{{"location": "berlin", "sku": "cap"}, {"location": "berlin", "sku": "sneaker"}}})
		ts.do("POST", "/v1/holds/"+cart+"/adjust", clientKey, map[string]any{"qty": 1}).want(t, 409, "hold_has_several_parts")
		ts.do("POST", "/v1/holds/"+cart+"/commit", clientKey, map[string]any{"qty": 1}).want(t, 409, "hold_has_several_parts")

		// One event per change: the first hold has RESERVED, REDUCED (1 unit back), COMMITTED (1 sold, 1 back).
		v, err := ts.eng.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parts, _ := ts.eng.HoldParts(id)
		var got []string
		for _, ev := range v.Events[parts[0].Partition] {
			if ev.Hold == parts[0].Part {
				got = append(got, fmt.Sprintf("%s:%d:%+d", ev.Type, ev.Qty, ev.Delta))
			}
		}
		if fmt.Sprint(got) != "[RESERVED:3:-3 REDUCED:1:+1 COMMITTED:1:+1]" {
			t.Fatalf("events of the hold: %v", got)
		}
	})
}

// TestChangeHoldsConcurrent: 60 one-part holds of 3 units on an 8-shard pool, then reduced,
// committed in part, or reduced and released, every request sent twice at once; the copies
// answer alike, nothing stays held, the units sold are exactly those clients were told they
// bought, and the streams replay to the counters.
func TestChangeHoldsConcurrent(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		ts := startServer(t, rdb, nil)
		ts.stockAt("berlin", "hot", 8, 1000)
		send := func(path string, body map[string]any, key string) response {
			var rs [2]response
			var both sync.WaitGroup
			for i := range rs {
				both.Go(func() { rs[i] = ts.do("POST", path, clientKey, body, "Idempotency-Key", key) })
			}
			both.Wait()
			if rs[0].status != rs[1].status || rs[0].status >= 300 {
				t.Errorf("%s %v: copies answered %d (%s) and %d (%s)", path, body, rs[0].status, rs[0].raw, rs[1].status, rs[1].raw)
			}
			return rs[0]
		}
		var told atomic.Int64
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				r := send("/v1/holds", map[string]any{"location": "berlin", "sku": "hot", "qty": 3}, fmt.Sprint("h", i))
				id := r.str("hold_id")
				if len(r.parts()) != 1 {
					t.Errorf("hold %d: %s, want one part", i, r.raw)
					return
				}
				switch i % 3 {
				case 0:
					send("/v1/holds/"+id+"/adjust", map[string]any{"qty": 2}, "")
					send("/v1/holds/"+id+"/commit", map[string]any{"qty": 1}, "")
					told.Add(1)
				case 1:
					send("/v1/holds/"+id+"/commit", map[string]any{"qty": 2}, "")
					told.Add(2)
				case 2:
					send("/v1/holds/"+id+"/adjust", map[string]any{"qty": 1}, "")
					send("/v1/holds/"+id+"/release", nil, "")
				}
			})
		}
		wg.Wait()
		a, err := ts.eng.Availability(context.Background(), "berlin", "hot")
		if err != nil {
			t.Fatal(err)
		}
		if a.Held != 0 || a.Committed != told.Load() || a.Available+a.Committed != 1000 {
			t.Fatalf("hot: available %d, held %d, committed %d; told sold %d", a.Available, a.Held, a.Committed, told.Load())
		}
		v, err := ts.eng.Verify(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n := v.CountTypes(); n[engine.EventReduced] != 40 || n[engine.EventCommitted] != 40 {
			t.Fatalf("events %v: want one REDUCED per reduction (40) and one COMMITTED per commit (40)", n)
		}
	})
}
