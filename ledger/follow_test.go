package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/flashhold/flashhold/engine"
)

// TestFollowEvents: following a partition never passes a seq the ledger lacks — a later
// event written before an earlier one (a dead persister's batch, claimed late) is not read
// until the earlier one is there — and a vendor's cursor moves over other vendors' events.
func TestFollowEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.SyncPools(ctx, []engine.PoolConfig{{Location: "s1", SKU: "tee", Vendor: "v1", Shards: 1},
		{Location: "s1", SKU: "cap", Vendor: "v2", Shards: 1}}); err != nil {
		t.Fatal(err)
	}
	var evs []engine.Event
	for i := range 6 {
		sku := []string{"tee", "cap"}[i%2] // odd seqs tee (v1), even seqs cap (v2)
		evs = append(evs, engine.Event{Version: 2, Type: engine.EventRestocked, Location: "s1", SKU: sku, Delta: 1, After: int64(i + 1),
			Qty: 1, Idem: fmt.Sprint("tx", i), Actor: "v", TS: 1790000000000 + int64(i)})
	}
	evs = chained(3, evs)
	appendEvs := func(evs ...engine.Event) {
		t.Helper()
		if _, err := s.Append(ctx, evs, nil, ModeCopy); err != nil {
			t.Fatal(err)
		}
	}
	follow := func(vendor string, after int64, limit int, want []int64, wantNext int64) {
		t.Helper()
		got, next, err := s.FollowEvents(ctx, vendor, 3, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, ev := range got {
			seqs = append(seqs, ev.Seq)
		}
		if !slices.Equal(seqs, want) || next != wantNext {
			t.Fatalf("follow %q after %d (limit %d): seqs %v, next %d; want %v, %d", vendor, after, limit, seqs, next, want, wantNext)
		}
	}
	follow("", 0, 100, nil, 0) // nothing yet
	appendEvs(evs[1], evs[2])  // seqs 2 and 3 before 1
	follow("", 0, 100, nil, 0)
	appendEvs(evs[0], evs[4], evs[5]) // 1, 5 and 6: 4 still missing
	follow("", 0, 100, []int64{1, 2, 3}, 3)
	follow("", 3, 100, nil, 3)
	follow("", 0, 2, []int64{1, 2}, 2)
	follow("v1", 0, 100, []int64{1, 3}, 3)
	appendEvs(evs[3])
	follow("", 3, 100, []int64{4, 5, 6}, 6)
	follow("v1", 3, 100, []int64{5}, 6)
	follow("v2", 0, 100, []int64{2, 4, 6}, 6)
	follow("v2", 0, 1, []int64{2}, 2)
	if _, _, err := s.FollowEvents(ctx, "", 3, 99, 10); !errors.Is(err, ErrUnknownCursor) {
		t.Fatalf("a cursor past the ledger: %v", err)
	}
}

// TestFollowEventsPast2to31: a partition's seq is a bigint; following it past 2^31 works.
func TestFollowEventsPast2to31(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	const base = int64(3_000_000_000)
	prev := engine.GenesisHash
	var evs []engine.Event
	for i := range int64(3) {
		ev := engine.Event{Version: 2, Partition: 2, Seq: base + i, Type: engine.EventRestocked, Location: "s1", SKU: "tee", Delta: 1,
			After: i + 1, Qty: 1, Idem: fmt.Sprint("tx", i), Actor: "v", TS: 1790000000000 + i, PrevHash: prev}
		ev.Hash = ev.ComputeHash()
		prev = ev.Hash
		evs = append(evs, ev)
	}
	if _, err := s.Append(ctx, evs, nil, ModeCopy); err != nil {
		t.Fatal(err)
	}
	got, next, err := s.FollowEvents(ctx, "", 2, base, 10)
	if err != nil || len(got) != 2 || got[1].Seq != base+2 || next != base+2 {
		t.Fatalf("follow after %d: %d events, next %d, %v", base, len(got), next, err)
	}
}
