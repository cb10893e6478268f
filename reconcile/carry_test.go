package reconcile

import (
	"testing"

	"github.com/flashhold/flashhold/engine"
)

// TestForkOnlySaleCounts: a sale made on the fork of a hold the ledger ended otherwise (the
// customer was told sold) counts against the customer's limit when carried over — for good,
// or for the window of a limit over one — and a later replay of the ledger counts it alike.
func TestForkOnlySaleCounts(t *testing.T) {
	for _, window := range []int64{0, 3_600_000} {
		opts := engine.ReplayOptions{History: true, Limited: func(engine.PoolKey) bool { return true },
			Window: func(engine.PoolKey) int64 { return window }}
		st := engine.NewReplay(opts)
		ev := func(seq int64, typ string, ts int64) engine.Event {
			return engine.Event{Partition: 1, Seq: seq, Type: typ, Location: "s1", SKU: "lim", Hold: "h.0.0.0", Qty: 2,
				Customer: "alice", Idem: "h", TS: ts}
		}
		reserved, expired := ev(1, engine.EventReserved, 1000), ev(2, engine.EventExpired, 2000)
		st.Apply(&reserved)
		st.Apply(&expired)
		sold := ev(2, engine.EventCommitted, 1500) // on the fork, the same seq
		sold.HeldDelta = -2                        // its units were held (a backordered sale's were not)
		c, skip := carryOf(&sold, st, nil, opts)
		if skip != "" || c.CustomerDelta != 2 {
			t.Fatalf("window %d: carried %+v (skip %q), want the customer's count up by 2", window, c, skip)
		}
		if window > 0 && (c.Op != engine.HoldSold || c.Record.Window != window || c.Record.Customer != "alice") {
			t.Fatalf("window %d: carried %+v, want the sale recorded under the window", window, c)
		}
		// The carried event, as the ledger then holds it, replayed.
		carried := ev(3, engine.EventCommitted, 5000)
		st.Apply(&carried)
		f := "s1|lim|alice"
		if st.Customers[f] != 2 {
			t.Fatalf("window %d: the replay counts %d for alice, want 2", window, st.Customers[f])
		}
		if window > 0 && (len(st.Sales[f]) != 1 || st.Sales[f][0] != engine.Sale{Until: 5000 + window, Qty: 2}) {
			t.Fatalf("window %d: the replay's sales %+v", window, st.Sales[f])
		}
	}
}

// TestForkBackordersNotCarried: what the fork did with backorders (placed, filled, or a
// backordered hold sold or given back) is not carried over, so it never takes units in an
// order the ledger's queue does not have; extending a backordered hold is.
func TestForkBackordersNotCarried(t *testing.T) {
	opts := engine.ReplayOptions{History: true, Limited: func(engine.PoolKey) bool { return false },
		Window: func(engine.PoolKey) int64 { return 0 }}
	st := engine.NewReplay(opts)
	ev := func(seq int64, typ string) engine.Event {
		return engine.Event{Partition: 1, Seq: seq, Type: typ, Location: "s1", SKU: "bo", Hold: "b.0.0.0", Qty: 2, Idem: "b", TS: 1000,
			ExpiresAt: 60_000}
	}
	placed := ev(1, engine.EventBackordered)
	st.Apply(&placed)
	if q := st.Queues[engine.ShardKey{Location: "s1", SKU: "bo"}]; len(q) != 1 || !st.Open["b.0.0.0"].Backordered {
		t.Fatalf("replay of a BACKORDERED event: queue %v, open %+v", q, st.Open)
	}
	for _, typ := range []string{engine.EventBackordered, engine.EventFilled, engine.EventCommitted, engine.EventReleased, engine.EventExpired} {
		e := ev(2, typ)
		if _, skip := carryOf(&e, st, nil, opts); skip == "" {
			t.Errorf("%s of a backordered hold on the fork was carried", typ)
		}
	}
	ext := ev(2, engine.EventExtended)
	ext.ExpiresAt = 90_000
	if c, skip := carryOf(&ext, st, nil, opts); skip != "" || c.ExpiresAt != 90_000 {
		t.Errorf("extension of a backordered hold: %+v, skipped %q", c, skip)
	}
}
