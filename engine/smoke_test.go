package engine

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestReserveCommitRelease(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "store-1", SKU: "sku-1", Shards: 1, LowStock: 5}, 10)

		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "store-1", SKU: "sku-1", Qty: 3}}, IdempotencyKey: "k1", Actor: "c1"})
		if len(h.Parts) != 1 || h.Parts[0].Qty != 3 {
			t.Fatalf("hold parts %+v", h.Parts)
		}
		a, err := e.Availability(ctx, "store-1", "sku-1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Available != 7 || a.Held != 3 || a.Status != InStock {
			t.Fatalf("availability %+v", a)
		}
		if err := e.Commit(ctx, h.ID, "c1"); err != nil {
			t.Fatal(err)
		}
		h2 := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "store-1", SKU: "sku-1", Qty: 4}}, IdempotencyKey: "k2", Actor: "c1"})
		if err := e.Release(ctx, h2.ID, "c1"); err != nil {
			t.Fatal(err)
		}
		a, _ = e.Availability(ctx, "store-1", "sku-1")
		if a.Available != 7 || a.Held != 0 || a.Committed != 3 {
			t.Fatalf("availability %+v", a)
		}
		got, err := e.GetHold(AnyOwner(ctx), h.ID, "")
		if err != nil || got.Status != StatusCommitted || got.Parts[0].Qty != 3 || got.Parts[0].SKU != "sku-1" {
			t.Fatalf("get hold: %+v %v", got, err)
		}
		n := countTypes(checkInvariants(t, e))
		if n[EventReserved] != 2 || n[EventCommitted] != 1 || n[EventReleased] != 1 || n[EventRestocked] != 1 {
			t.Fatalf("events %v", n)
		}
	})
}
