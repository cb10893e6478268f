package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// TestForkedRestockCountedOnce: a restock the ledger holds, lost by Redis (rolled back) and
// sent again by the vendor (so the fork makes it anew), is counted once after the repair:
// the carry-over skips a stock change whose transaction the ledger has.
func TestForkedRestockCountedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	restore := f.dumpPartition(t, p)
	restock := engine.AdjustRequest{Location: "s1", SKU: "b", Kind: engine.Restock, Qty: 20, TransactionID: "po-9", Actor: "vendor"}
	if _, err := f.e.Adjust(ctx, restock); err != nil {
		t.Fatal(err)
	}
	f.workload(t, "persist", 0)
	want, _ := f.e.Availability(ctx, "s1", "b")
	restore()
	if _, err := f.e.Adjust(ctx, restock); err != nil { // the vendor's retry, on the fork
		t.Fatal(err)
	}
	if _, err := f.p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.e.Availability(ctx, "s1", "b")
	if got.Available != want.Available {
		t.Fatalf("after the repair %d available; the restock counted once gives %d", got.Available, want.Available)
	}
	f.persistedClean(t, "after the repair")
}
