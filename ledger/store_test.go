package ledger

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testwait"
)

// TestAppendModes: events written by COPY (the binary stream encodeCopy builds) and by
// multi-row INSERT read back exactly as they were, with values at the edges of their columns'
// types: negative and extreme integers, empty and non-ASCII text, a backslash.
func TestAppendModes(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{ModeCopy, ModeInsert} {
		t.Run(mode, func(t *testing.T) {
			s, _ := newStore(t)
			evs := chained(2147483647, []engine.Event{
				{Version: 2, Type: engine.EventReserved, Location: "s1", SKU: "tee", Shard: 63, Delta: -1, After: 1_000_000_000_000,
					HeldDelta: 1, Hold: "0123456789abcdef0123.0.63", Qty: 1, Idem: "tok", Actor: "shop", ExpiresAt: 1790000060000, TS: 1790000000000},
				// Version 1 kept the expiry in the reason: read back, it is in ExpiresAt too.
				{Version: 1, Type: engine.EventExtended, Location: "s1", SKU: "tee", Shard: 63, After: 1_000_000_000_000,
					Hold: "0123456789abcdef0123.0.63", Qty: 1, Idem: "tok", Actor: "shop", Reason: "1790000090000", TS: 1790000000001},
				{Version: 1, Type: engine.EventAdjusted, Location: "warehouse-9", SKU: "sku:a.b_c-d", Delta: math.MinInt64 + 1,
					After: 0, Qty: math.MaxInt64, Idem: "tx-1", Actor: "vendor", Reason: `recount \ après l'inventaire`, TS: 1},
				{Version: 2, Type: engine.EventReleased, Location: "s1", SKU: "tee", Delta: 5, After: 5, HeldDelta: -5,
					Hold: "h.0.0", Qty: 5, Customer: "c-42", Reason: "", TS: math.MaxInt64},
			})
			res, err := s.Append(ctx, evs, nil, mode)
			if err != nil || res.Inserted != int64(len(evs)) {
				t.Fatalf("append: %+v, %v", res, err)
			}
			got, err := s.PartitionEvents(ctx, 2147483647, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(evs) {
				t.Fatalf("read back %d events, want %d", len(got), len(evs))
			}
			evs[1].ExpiresAt = 1790000090000
			for i := range evs {
				if got[i] != evs[i] {
					t.Errorf("event %d read back as\n%+v\nwant\n%+v", i, got[i], evs[i])
				}
			}
			// Appending the same events again inserts nothing and reports them as duplicates.
			if res, err := s.Append(ctx, evs, nil, mode); err != nil || res.Inserted != 0 || res.Duplicates != int64(len(evs)) {
				t.Fatalf("append again: %+v, %v", res, err)
			}
		})
	}
}

// TestSeqRanges: the ranges persisted past a watermark merge as seqs arrive in any order,
// and the watermark moves over them only where nothing is missing.
func TestSeqRanges(t *testing.T) {
	var s seqRanges
	for _, seq := range []int64{5, 6, 9, 7, 12, 11, 10, 3} {
		s.add(seq)
	}
	if got := fmt.Sprint(s.r); got != "[[3 3] [5 7] [9 12]]" {
		t.Fatalf("ranges %s", got)
	}
	if w := s.advance(1); w != 1 {
		t.Fatalf("advance past a gap at 2: %d", w)
	}
	s.add(2)
	if w := s.advance(1); w != 3 || fmt.Sprint(s.r) != "[[5 7] [9 12]]" {
		t.Fatalf("advance to %d, left %v", w, s.r)
	}
	s.add(4)
	s.add(8)
	if w := s.advance(3); w != 12 || len(s.r) != 0 {
		t.Fatalf("advance to %d, left %v", w, s.r)
	}
}

// TestAppendWaitsOutAnotherWriter: another transaction (a commit the persister gave up on when
// its context ended, still finishing in Postgres) holds rows of the batch uncommitted while
// Append runs: Append waits on them and, once they are committed, counts them as duplicates
// rather than failing on the primary key, in both modes.
func TestAppendWaitsOutAnotherWriter(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{ModeCopy, ModeInsert} {
		t.Run(mode, func(t *testing.T) {
			s, _ := newStore(t)
			var evs []engine.Event
			for i := range 4 {
				evs = append(evs, engine.Event{Type: engine.EventRestocked, Location: "s1", SKU: "tee", Delta: 1, After: int64(i + 1),
					Qty: 1, Idem: fmt.Sprint("tx-", i), TS: 1790000000000})
			}
			evs = chained(3, evs)
			other, err := s.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback(ctx)
			if _, err := copyEvents(ctx, other, evs[:2]); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			var res AppendResult
			go func() {
				var err error
				res, err = s.Append(ctx, evs, nil, mode)
				done <- err
			}()
			testwait.Until(t, 10*time.Second, "Append waits on the other writer's rows", func() bool {
				var waiting int
				s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`).Scan(&waiting)
				return waiting > 0
			})
			if err := other.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("append: %v", err)
			}
			if res.Inserted != 2 || res.Duplicates != 2 || len(res.Forks) != 0 {
				t.Fatalf("append: %+v; want 2 inserted, 2 duplicates", res)
			}
			if got, err := s.PartitionEvents(ctx, 3, 0, 10); err != nil || len(got) != 4 {
				t.Fatalf("ledger holds %d events, %v", len(got), err)
			}
		})
	}
}

// chained numbers events 1, 2, ... in partition p and links each to the one before by hash.
func chained(p int, evs []engine.Event) []engine.Event {
	prev := engine.GenesisHash
	for i := range evs {
		evs[i].Partition, evs[i].Seq, evs[i].PrevHash = p, int64(i+1), prev
		evs[i].Hash = evs[i].ComputeHash()
		prev = evs[i].Hash
	}
	return evs
}
