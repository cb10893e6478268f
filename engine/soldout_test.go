package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSoldOutMemory: once a pool is found empty, a stampede of reserves is refused in process
// (no script runs, nothing changes), yet a retry of a reservation that succeeded earlier still
// gets its hold; after the memory lapses (or a restock) Redis is asked again.
func TestSoldOutMemory(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, nil, clock.option())
		makePool(t, e, PoolConfig{Location: "s1", SKU: "gone", Shards: 4}, 4)
		winners := make([]*Hold, 4)
		for i := range winners {
			winners[i] = mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gone", Qty: 1}}, IdempotencyKey: fmt.Sprintf("w%d", i), Actor: "shop"})
		}
		_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gone", Qty: 1}}, IdempotencyKey: "first-loser", Actor: "shop"})
		wantErr(t, err, ErrInsufficient)

		before := partitionSeqs(t, e)
		var wg sync.WaitGroup
		for i := range 500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gone", Qty: 1}}, IdempotencyKey: fmt.Sprintf("l%d", i), Actor: "shop"})
				if err == nil || !isInsufficient(err) {
					t.Errorf("stampede: %v", err)
				}
			}()
		}
		wg.Wait()
		if got := e.Stats().SoldOutFast.Load(); got != 500 {
			t.Fatalf("%d of 500 refusals came from the sold-out memory", got)
		}
		// Each refusal read its key's record and the shards' counts of rises, then recorded
		// the refusal under its key: two lookups, in round trips shared with the others (how
		// many share one depends on how the 500 callers are scheduled: on a busy machine fewer).
		st := e.Stats()
		if n, trips := st.Lookups.Load(), st.LookupBatches.Load(); n < 1000 || trips < 1 || trips >= n {
			t.Fatalf("%d lookups in %d round trips, want at least 1000 in fewer round trips", n, trips)
		}
		for i, w := range winners {
			again := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gone", Qty: 1}}, IdempotencyKey: fmt.Sprintf("w%d", i), Actor: "shop"})
			if again.ID != w.ID || !again.Replayed {
				t.Fatalf("retry of winner %d during sold-out memory got %+v", i, again)
			}
		}
		if after := partitionSeqs(t, e); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatal("the stampede changed state")
		}
		// A release gives a unit back: the next buyer gets it at once, memory or not.
		if err := e.Release(ctx, winners[0].ID, "shop"); err != nil {
			t.Fatal(err)
		}
		mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "gone", Qty: 1}}, IdempotencyKey: "late", Actor: "shop"})
		checkInvariants(t, e)
	})
}

func isInsufficient(err error) bool {
	_, ok := err.(*InsufficientError)
	return ok
}

// TestCoalescing: concurrent reserves share script calls, and the calls of one round trip
// (one per partition) share a pipeline: on one partition, and on an 8-shard pool whose
// shards sit on eight partitions. Concurrent commits and releases of one-part holds share
// end_batch calls and round trips the same way.
func TestCoalescing(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprintf("%d-shards", shards), func(t *testing.T) {
			e := newEngine(t, testredisStandalone(t), nil)
			makePool(t, e, PoolConfig{Location: "s1", SKU: "one", Shards: shards}, 10_000)
			ctx := context.Background()
			ids := make([]string, 2000)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Go(func() {
					h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "one", Qty: 1}}, IdempotencyKey: fmt.Sprintf("c%d", i), Actor: "shop"})
					if err != nil {
						t.Errorf("reserve: %v", err)
						return
					}
					ids[i] = h.ID
				})
			}
			wg.Wait()
			st := e.Stats()
			calls, trips := st.Batches.Load(), st.RoundTrips.Load()
			if st.BatchedRequests.Load() != 2000 || calls >= 2000/2 || trips > calls {
				t.Fatalf("2000 concurrent reserves went out in %d calls, %d round trips", calls, trips)
			}
			if shards > 1 && trips == calls {
				t.Fatalf("%d calls on %d partitions took %d round trips: none shared one", calls, shards, trips)
			}
			t.Logf("2000 reserves in %d calls, %d round trips", calls, trips)

			// Commits and releases of one-part holds: one call each, sharing round trips.
			for i, id := range ids {
				wg.Go(func() {
					end := e.Commit
					if i%2 == 1 {
						end = e.Release
					}
					if err := end(ctx, id, "shop"); err != nil {
						t.Errorf("end hold %s: %v", id, err)
					}
				})
			}
			wg.Wait()
			ops, endCalls, endTrips := st.Ops.Load(), st.EndCalls.Load(), st.RoundTrips.Load()-trips
			if ops != 2000 || endCalls >= 2000/2 || endTrips > endCalls {
				t.Fatalf("2000 concurrent commits and releases went out in %d calls (%d requests), %d round trips", endCalls, ops, endTrips)
			}
			t.Logf("2000 commits and releases in %d calls, %d round trips", endCalls, endTrips)
			n := countTypes(checkInvariants(t, e))
			if n[EventReserved] != 2000 || n[EventCommitted] != 1000 || n[EventReleased] != 1000 {
				t.Fatalf("events %v for 2000 reserves, 1000 commits and 1000 releases", n)
			}
		})
	}
}

// TestCoalescedReplies: holds placed by concurrent reserves that share reserve_batch calls
// (whose reply for a part placed now carries only the available count) come back with the
// quantity and expiry each request asked for, the same as GetHold reads and as a retry with
// the same key answers from Redis.
func TestCoalescedReplies(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEngine(t, testredisStandalone(t), nil, clock.option())
	makePool(t, e, PoolConfig{Location: "s1", SKU: "many", Shards: 8}, 100_000)
	ctx := context.Background()
	req := func(i int) ReserveRequest {
		return ReserveRequest{Items: []Item{{Location: "s1", SKU: "many", Qty: int64(1 + i%3)}}, IdempotencyKey: fmt.Sprintf("r%d", i),
			TTL: time.Duration(10+i%5) * time.Minute, Actor: "shop"}
	}
	check := func(i int, h *Hold) {
		t.Helper()
		want := clock.Ms() + req(i).TTL.Milliseconds()
		var qty int64
		for _, p := range h.Parts {
			qty += p.Qty
		}
		if h.ExpiresAt != want || qty != req(i).Items[0].Qty {
			t.Errorf("request %d: hold expires at %d with %d units, want %d and %d", i, h.ExpiresAt, qty, want, req(i).Items[0].Qty)
		}
	}
	holds := make([]*Hold, 400)
	var wg sync.WaitGroup
	for i := range holds {
		wg.Go(func() {
			h, err := e.Reserve(ctx, req(i))
			if err != nil {
				t.Errorf("reserve %d: %v", i, err)
				return
			}
			holds[i] = h
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if st := e.Stats(); st.BatchedRequests.Load() <= st.Batches.Load() {
		t.Fatalf("%d reserves in %d calls: no call carried several", st.BatchedRequests.Load(), st.Batches.Load())
	}
	for i, h := range holds {
		check(i, h)
		again, err := e.Reserve(ctx, req(i))
		if err != nil || again.ID != h.ID {
			t.Fatalf("retry %d: %v, %v (first %s)", i, again, err, h.ID)
		}
		check(i, again)
		got, err := e.GetHold(AnyOwner(ctx), h.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		check(i, got)
	}
}

// TestBatchWriteBack: reserve_batch keeps counters and new hold records in the script and
// writes them once at its end. Within one call a retry of a part placed earlier answers
// "existing" from what the call holds, an unknown shard leaves no counter behind, a short
// shard changes nothing, and what is written at the end adds up.
func TestBatchWriteBack(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "one", Shards: 1}, 10)
	p := e.PartitionOf("s1", "one", 0)
	now := e.nowMs()
	exp := now + 60_000
	req := func(part, sku string, qty int, token string) []any {
		return []any{part, "s1", sku, 0, qty, exp, "", 0, token, "fp-" + token, modePart, "shop", 8, 60_000, 30_000, 0, 0, "0"}
	}
	if _, err := e.run(ctx, "reserve_batch", p, now, append(req("a.0.0", "one", 4, "a"), "b.0.0", "s1")...); err == nil {
		t.Fatal("a batch with a truncated request was accepted")
	}
	var args []any
	args = append(args, req("a.0.0", "one", 4, "a")...)
	args = append(args, req("a.0.0", "one", 4, "a")...)  // the same request again
	args = append(args, req("b.0.0", "nope", 1, "b")...) // no such pool
	args = append(args, req("c.0.0", "one", 7, "c")...)  // more than is left
	args = append(args, req("d.0.0", "one", 6, "d")...)  // exactly what is left
	r, err := e.run(ctx, "reserve_batch", p, now, args...)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(r)
	// A part placed now is answered with its shard's available count alone.
	// A short shard reports its count, its rises (the restock), nothing in flight and no expiry
	// yet (the parts of this call are written at its end).
	want := fmt.Sprintf("[6 [OK 4 %d 6 existing] [UNKNOWN_POOL] [INSUFFICIENT 6 1 0 -1] 0]", exp)
	if got != want {
		t.Fatalf("replies\n got %s\nwant %s", got, want)
	}
	snap, err := e.Snapshot(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := snap.Shards[ShardKey{"s1", "one", 0}]; c.Available != 0 || c.Held != 10 || c.Committed != 0 {
		t.Fatalf("counters %+v, want 0 available, 10 held", c)
	}
	if len(snap.Shards) != 1 {
		t.Fatalf("shards %v: the unknown pool left a counter behind", snap.Shards)
	}
	if len(snap.Holds) != 2 {
		t.Fatalf("%d open holds, want 2", len(snap.Holds))
	}
	if n, _ := e.rdb.ZCard(ctx, e.ks.partition(p)[2]).Result(); n != 2 {
		t.Fatalf("%d expiry entries, want 2", n)
	}
	if n := countTypes(checkInvariants(t, e)); n[EventReserved] != 2 {
		t.Fatalf("%d RESERVED events, want 2", n[EventReserved])
	}
}

// TestEndBatch: end_batch answers each commit or release exactly as commit or release would
// alone, in order (a repeat within the call sees the first one's tombstone; an expired part
// is restored as EXPIRED), writes the counters once at its end, and refuses a malformed batch
// whole before changing anything.
func TestEndBatch(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "one", Shards: 1}, 10)
	p := e.PartitionOf("s1", "one", 0)
	now := e.nowMs()
	place := func(part string, qty int, exp int64) {
		t.Helper()
		r, err := e.run(ctx, "reserve", p, now, part, "s1", "one", 0, qty, exp, "", 0, part, "fp-"+part, modePart, "shop", 8, 60_000, 30_000, 0, 0, "0")
		if err != nil || r.code() != "OK" {
			t.Fatalf("place %s: %v %v", part, r, err)
		}
	}
	place("a.0.0", 2, now+60_000)
	place("b.0.0", 3, now+60_000)
	place("c.0.0", 1, now+1)
	now += 2 // c.0.0 is past its expiry
	place("d.0.0", 1, now+60_000)
	end := func(outcome, part string, keep int) []any {
		return []any{outcome, part, "shop", keep, "", "shop"}
	}
	before := seqOf(t, e, p)
	if _, err := e.run(ctx, "end_batch", p, now, append(end("COMMITTED", "a.0.0", 60_000), end("SOLD", "b.0.0", 60_000)...)...); err == nil {
		t.Fatal("a batch with an unknown outcome was accepted")
	}
	if _, err := e.run(ctx, "end_batch", p, now, append(end("COMMITTED", "a.0.0", 60_000), "RELEASED", "b.0.0")...); err == nil {
		t.Fatal("a batch with a truncated request was accepted")
	}
	if seqOf(t, e, p) != before {
		t.Fatal("a refused batch wrote events")
	}
	var args []any
	args = append(args, end("COMMITTED", "a.0.0", 60_000)...)
	args = append(args, end("COMMITTED", "a.0.0", 60_000)...) // the same commit again
	args = append(args, end("RELEASED", "b.0.0", 60_000)...)
	args = append(args, end("COMMITTED", "b.0.0", 60_000)...) // released just before
	args = append(args, end("COMMITTED", "c.0.0", 60_000)...) // past its expiry
	args = append(args, end("RELEASED", "d.0.0", 60_000)...)
	args = append(args, end("RELEASED", "d.0.0", 60_000)...)
	args = append(args, end("RELEASED", "x.0.0", 60_000)...) // never placed
	r, err := e.run(ctx, "end_batch", p, now, args...)
	if err != nil {
		t.Fatal(err)
	}
	want := "[[OK] [ENDED COMMITTED] [OK] [ENDED RELEASED] [ENDED EXPIRED] [OK] [ENDED RELEASED] [NOT_FOUND]]"
	if got := fmt.Sprint(r); got != want {
		t.Fatalf("replies\n got %s\nwant %s", got, want)
	}
	snap, err := e.Snapshot(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := snap.Shards[ShardKey{"s1", "one", 0}]; c.Available != 8 || c.Held != 0 || c.Committed != 2 {
		t.Fatalf("counters %+v, want 8 available, 0 held, 2 committed", c)
	}
	if len(snap.Holds) != 0 {
		t.Fatalf("%d open holds, want none", len(snap.Holds))
	}
	n := countTypes(checkInvariants(t, e))
	if n[EventCommitted] != 1 || n[EventReleased] != 2 || n[EventExpired] != 1 {
		t.Fatalf("events %v: want 1 COMMITTED, 2 RELEASED, 1 EXPIRED", n)
	}
}
