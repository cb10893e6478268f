package reconcile

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// repairThenClean runs with --repair, expects exactly one finding of kind, repaired, and then
// a clean second run.
func (f *fixture) repairThenClean(t *testing.T, kind string) Finding {
	t.Helper()
	rep, err := f.r.Run(context.Background(), Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	got := only(t, rep, kind)
	if !got.Repaired {
		t.Fatalf("not repaired: %+v", got)
	}
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after repair: %+v", again.Findings)
	}
	var repaired bool
	f.store.Pool().QueryRow(context.Background(), `SELECT repaired FROM reconcile_findings WHERE run_id = $1`, rep.RunID).Scan(&repaired)
	if !repaired {
		t.Fatal("the repair is not recorded")
	}
	return got
}

func TestRepairDrift(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "a", 3)
	f.rdb.HIncrBy(ctx, f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|a|3", -6)
	f.repairThenClean(t, KindDrift)
	// The correction is itself an event, naming the run, and the engine's own checks agree.
	v, err := f.e.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := v.Events[p][len(v.Events[p])-1]
	if last.Type != "ADJUSTED" || last.Delta != 0 || last.Qty != 6 || last.Actor != "reconcile" {
		t.Fatalf("repair event %+v", last)
	}
	f.workload(t, "after", 5) // the persister takes the repair event like any other
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after more traffic: %+v", again.Findings)
	}
}

func TestRepairLedgerRows(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	f.store.Pool().Exec(ctx, `DELETE FROM inventory_events WHERE partition = $1 AND seq BETWEEN 4 AND 6`, p)
	if got := f.repairThenClean(t, KindGap); got.SeqFrom != 4 || got.SeqTo != 6 {
		t.Fatalf("gap %+v", got)
	}
	f.store.Pool().Exec(ctx, `UPDATE inventory_events SET qty = qty + 1 WHERE partition = $1 AND seq = 10`, p)
	f.repairThenClean(t, KindChainBreak)
}

func TestRepairHalfTransfer(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	if err := f.e.BeginTransfer(ctx, "s1", "a", 0, 2, 5, "stuck-1", "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // older than the transfer grace
	f.workload(t, "x", 1)               // persist the TRANSFER_OUT
	got := f.repairThenClean(t, KindHalfTransfer)
	if got.Amount != 5 || got.Shard != 0 {
		t.Fatalf("finding %+v", got)
	}
	if _, err := f.e.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
