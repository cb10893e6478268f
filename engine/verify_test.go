package engine

import (
	"context"
	"strings"
	"testing"
)

// TestVerifyCatchesDamage: Verify is not vacuous: a counter changed behind the engine's back,
// and an event removed from a stream, are both reported.
func TestVerifyCatchesDamage(t *testing.T) {
	t.Parallel()
	rdb := testredisStandalone(t)
	ctx := context.Background()
	e := newEngine(t, rdb, nil)
	makePool(t, e, PoolConfig{Location: "s1", SKU: "v", Shards: 1}, 10)
	mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "v", Qty: 2}}, IdempotencyKey: "v1", Actor: "shop"})
	if _, err := e.Verify(ctx); err != nil {
		t.Fatalf("clean state: %v", err)
	}
	p := e.PartitionOf("s1", "v", 0)
	f := shardField("s1", "v", 0)
	rdb.HIncrBy(ctx, e.ks.stockKey(p), f, 1)
	if _, err := e.Verify(ctx); err == nil || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("a counter changed by hand: %v", err)
	}
	rdb.HIncrBy(ctx, e.ks.stockKey(p), f, -1)
	rdb.XDel(ctx, e.ks.logKey(p), "1-0")
	if _, err := e.Verify(ctx); err == nil || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("an event removed: %v", err)
	}
}
