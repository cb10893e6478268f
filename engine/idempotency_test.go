package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestIdempotentRetries: a retried call answers the same and changes nothing, also when the
// duplicates run concurrently; the same key with another body is refused.
func TestIdempotentRetries(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "a", Shards: 1}, 50)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "hot", Shards: 8}, 16)

		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "a", Qty: 2}}, IdempotencyKey: "retry-1", Actor: "shop", Customer: "c1"}
		first := mustReserve(t, e, req)
		again := mustReserve(t, e, req)
		if again.ID != first.ID || again.ExpiresAt != first.ExpiresAt || !again.Replayed {
			t.Fatalf("retry answered %+v, first %+v", again, first)
		}
		other := req
		other.Items = []Item{{Location: "s1", SKU: "a", Qty: 3}}
		_, err := e.Reserve(ctx, other)
		wantErr(t, err, ErrIdempotencyMismatch)
		// The same key from another caller is another request.
		req2 := req
		req2.Actor = "shop-2"
		if h := mustReserve(t, e, req2); h.ID == first.ID {
			t.Fatal("keys must be scoped to their caller")
		}

		// 40 concurrent duplicates of one multi-part cart: each gets the one hold, or is told
		// the request is in progress; none changes anything.
		cart := ReserveRequest{Items: []Item{{Location: "s1", SKU: "a", Qty: 1}, {Location: "s1", SKU: "hot", Qty: 5}}, IdempotencyKey: "cart-dup", Actor: "shop"}
		ids := make(chan string, 40)
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := e.Reserve(ctx, cart)
				if errors.Is(err, ErrInProgress) {
					return
				}
				if err != nil {
					ids <- "error: " + err.Error()
					return
				}
				ids <- h.ID
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[string]int{}
		for id := range ids {
			seen[id]++
		}
		var holdIDs []string
		for id := range seen {
			holdIDs = append(holdIDs, id)
		}
		if len(holdIDs) != 1 || strings.HasPrefix(holdIDs[0], "error") {
			t.Fatalf("concurrent duplicates got %v", seen)
		}
		replayed := mustReserve(t, e, cart)
		if replayed.ID != holdIDs[0] {
			t.Fatalf("retry after the race got %s, want %s", replayed.ID, holdIDs[0])
		}
		a, _ := e.Availability(ctx, "s1", "hot")
		if a.Held != 5 {
			var open []string
			for p := range e.Partitions() {
				snap, _ := e.Snapshot(ctx, p)
				for _, h := range snap.Holds {
					open = append(open, fmt.Sprintf("p%d:%s/%s:%d", p, h.Part, h.SKU, h.Qty))
				}
			}
			evs := allEvents(t, e)
			var trail []string
			for p, es := range evs {
				for _, ev := range es {
					if ev.SKU == "hot" && ev.Hold != "" {
						trail = append(trail, fmt.Sprintf("p%d#%d %s %s q%d %s", p, ev.Seq, ev.Type, ev.Hold, ev.Qty, ev.Reason))
					}
				}
			}
			t.Fatalf("duplicates held %d units of hot, want 5; answers %v\nopen %v\n%s", a.Held, seen, open, strings.Join(trail, "\n"))
		}

		// Commit and release retries.
		if err := e.Commit(ctx, first.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		if err := e.Commit(ctx, first.ID, "shop"); err != nil {
			t.Fatalf("second commit: %v", err)
		}
		wantErr(t, e.Release(ctx, first.ID, "shop"), ErrHoldCommitted)
		// After the hold ended, a retried reserve still gets the first answer and changes nothing.
		seqs := partitionSeqs(t, e)
		if late := mustReserve(t, e, req); late.ID != first.ID || late.ExpiresAt != first.ExpiresAt || !late.Replayed {
			t.Fatalf("retry after commit answered %+v, first %+v", late, first)
		}
		_, err = e.Reserve(ctx, other)
		wantErr(t, err, ErrIdempotencyMismatch)
		if after := partitionSeqs(t, e); fmt.Sprint(after) != fmt.Sprint(seqs) {
			t.Fatal("a replayed reserve wrote events")
		}
		if err := e.Release(ctx, replayed.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		if err := e.Release(ctx, replayed.ID, "shop"); err != nil {
			t.Fatalf("second release: %v", err)
		}
		wantErr(t, e.Commit(ctx, replayed.ID, "shop"), ErrHoldGone)

		// Vendor transactions.
		adj := AdjustRequest{Location: "s1", SKU: "hot", Kind: Restock, Qty: 9, TransactionID: "po-77", Actor: "vendor"}
		r1, err := e.Adjust(ctx, adj)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := e.Adjust(ctx, adj)
		if err != nil || !r2.Replayed || r2.After != r1.After {
			t.Fatalf("adjust retry: %+v %v (first %+v)", r2, err, r1)
		}
		adj.Qty = 10
		_, err = e.Adjust(ctx, adj)
		wantErr(t, err, ErrIdempotencyMismatch)

		n := countTypes(checkInvariants(t, e))
		if n[EventCommitted] != 1 || n[EventRestocked] != 3 {
			// one restock of a, hot's initial 16 and its 9: each one atomic change on one shard
			t.Fatalf("events %v", n)
		}
	})
}

// TestScriptsSafeToRunTwice runs every writing script twice with the same arguments, as a
// go-redis retry after a network error would, and checks only one event was written.
func TestScriptsSafeToRunTwice(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, func(c *Config) { c.Coalesce = false }, clock.option())
		makePool(t, e, PoolConfig{Location: "s1", SKU: "x", Shards: 2}, 10)
		p, _ := e.pool(ctx, "s1", "x")
		part, now, keep := p.partitions[0], clock.Ms(), int64(3600_000)
		twice := func(name string, args ...any) reply {
			t.Helper()
			r1, err := e.run(ctx, name, part, now, args...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			before := seqOf(t, e, part)
			r2, err := e.run(ctx, name, part, now, args...)
			if err != nil {
				t.Fatalf("%s again: %v", name, err)
			}
			if after := seqOf(t, e, part); after != before {
				t.Fatalf("%s run twice wrote %d more events (replies %v, %v)", name, after-before, r1, r2)
			}
			return r2
		}
		exp := now + 60_000
		for _, mode := range []string{modeFinal, modeSlow, modePart} {
			twice("reserve", "tok.0."+mode, "s1", "x", 0, 2, exp, "", 0, "tok", "fp", mode, "shop", 8, keep, 30_000, 0, 0, "0")
			twice("reserve", "big.0."+mode, "s1", "x", 0, 100, exp, "", 0, "big", "fp", mode, "shop", 8, keep, 30_000, 0, 0, "0")
		}
		twice("extend", "tok.0.F", exp+1000, "shop", keep, "shop")
		twice("commit", "tok.0.F", "shop", keep, "shop")
		twice("release", "tok.0.S", "shop", keep, "", "shop")
		twice("void", "shop", keep, "test", "tok.0.P", "never.0.0")
		twice("adjust", "s1", "x", 0, "RESTOCK", 5, "tx-1", "fp", "v", "", keep, MaxAvailable, "", "")
		twice("transfer_out", "s1", "x", 0, 2, "xf-1", p.partitions[1], 1, "rebalancer")
		r := twice("sweep", 100, 100, keep)
		if r.int(0) != 0 {
			t.Fatalf("sweep restored %d", r.int(0))
		}
		part = p.partitions[1]
		twice("transfer_in", "s1", "x", 1, 2, "xf-1", p.partitions[0], 0, "rebalancer")
		twice("transfer_done", "xf-1", keep)
		part = p.partitions[0]
		twice("transfer_settle", "xf-1", keep)

		// The key record operations answer their second run as the first, the lease path
		// included: a claim run twice by one attempt starts it twice, never "in progress".
		record := e.ks.recordKey(part, "tok9")
		onRecord := func(name string, args ...any) (reply, reply) {
			t.Helper()
			var out [2]reply
			for i := range out {
				res, errs := e.runAll(ctx, now, []opCall{{name: name, p: part, record: record, args: [][]any{args}}})
				if errs[0] != nil {
					t.Fatalf("%s: %v", name, errs[0])
				}
				out[i] = res[0]
			}
			return out[0], out[1]
		}
		if a, b := onRecord("claim", "fp", "att00001", 10_000, keep); a.code() != "START" || b.code() != "START" {
			t.Fatalf("claim twice: %v then %v", a, b)
		}
		if a, b := onRecord("settle", "att00001", "fp|A|answer", keep); a.code() != "OK" || b.code() != "OK" {
			t.Fatalf("settle twice: %v then %v", a, b)
		}
		end := e.ks.endKey(part, holdKey{"tok9", "att00001"})
		record = end
		for _, op := range []string{"commit", "decided", "committed"} {
			a, b := onRecord("hold_end", op, "c1", 5000, keep)
			if a.code() != b.code() && !(op == "commit" && b.code() == "START") {
				t.Fatalf("hold_end %s twice: %v then %v", op, a, b)
			}
		}
		checkInvariants(t, e)
	})
}

func seqOf(t testing.TB, e *Engine, p int) int64 {
	t.Helper()
	s, err := e.Snapshot(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return s.Seq
}

// TestTransferInterrupted: a transfer stopped between its two halves is found and completed.
func TestTransferInterrupted(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "y", Shards: 4}, 40)
		p, _ := e.pool(ctx, "s1", "y")
		r, err := e.run(ctx, "transfer_out", p.partitions[0], e.nowMs(), "s1", "y", 0, 7, "half-1", p.partitions[2], 2, "test")
		if err != nil || r.code() != "OK" {
			t.Fatalf("transfer_out: %v %v", r, err)
		}
		snap, _ := e.Snapshot(ctx, p.partitions[0])
		if len(snap.Transfers) != 1 || snap.Transfers[0].Qty != 7 {
			t.Fatalf("pending transfers %+v", snap.Transfers)
		}
		n, err := e.CompleteTransfers(ctx, p.partitions[0], "test")
		if err != nil || n != 1 {
			t.Fatalf("complete: %d %v", n, err)
		}
		if moved, err := e.Transfer(ctx, "s1", "y", 0, 2, 7, "half-1", "test"); err != nil || moved != 7 {
			t.Fatalf("retrying a settled transfer: %d %v", moved, err)
		}
		a, _ := e.Availability(ctx, "s1", "y")
		if a.Shards[0].Available != 3 || a.Shards[2].Available != 17 || a.Available != 40 {
			t.Fatalf("shards after transfer %+v", a.Shards)
		}
		checkInvariants(t, e)
	})
}

var _ = time.Second

// TestAdjustRetryAfterSales: a retried vendor change answers with the change its first
// attempt made, even after sales moved the counts: a completed SET replays without changing
// anything (single-shard and sharded pools), also when the first attempt's reply was lost.
func TestAdjustRetryAfterSales(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		sell := func(sku, key string) {
			t.Helper()
			h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: sku, Qty: 1}}, IdempotencyKey: key, Actor: "shop"})
			if err := e.Commit(ctx, h.ID, "shop"); err != nil {
				t.Fatal(err)
			}
		}
		available := func(sku string) int64 {
			t.Helper()
			a, err := e.Availability(ctx, "s1", sku)
			if err != nil {
				t.Fatal(err)
			}
			return a.Available
		}
		for _, shards := range []int{1, 4} {
			sku := fmt.Sprintf("set-%d", shards)
			makePool(t, e, PoolConfig{Location: "s1", SKU: sku, Shards: shards}, 0)
			set := AdjustRequest{Location: "s1", SKU: sku, Kind: Set, Qty: 100, TransactionID: "load-" + sku, Actor: "vendor"}
			if _, err := e.Adjust(ctx, set); err != nil {
				t.Fatal(err)
			}
			sell(sku, "buy-"+sku)
			before := partitionSeqs(t, e)
			r, err := e.Adjust(ctx, set)
			if err != nil || !r.Replayed || r.Before != 0 || r.After != 100 {
				t.Fatalf("%d shards: retry of a completed SET after a sale: %+v, %v; want the first answer, 0 -> 100", shards, r, err)
			}
			if fmt.Sprint(partitionSeqs(t, e)) != fmt.Sprint(before) || available(sku) != 99 {
				t.Fatalf("%d shards: the retry changed the pool (available %d, want 99)", shards, available(sku))
			}
		}

		// A sharded SET whose first attempt was applied (on its transaction's shard, in one
		// call) and whose reply was lost: after a sale, the retry answers the first change.
		makePool(t, e, PoolConfig{Location: "s1", SKU: "cut", Shards: 4}, 0)
		p, err := e.pool(ctx, "s1", "cut")
		if err != nil {
			t.Fatal(err)
		}
		fp := fingerprint("s1", "cut", Set, "100", "")
		tx := p.Vendor + ":load-2"
		share := AdjustRequest{Location: "s1", SKU: "cut", Kind: Set, Qty: 100, TransactionID: "load-2", Actor: "vendor", Reason: "SET 100"}
		if _, err := e.adjustShard(ctx, p, txShard(p, tx), Adjustment, 100, tx, fp, share, &poolChange{before: 0, delta: 100}); err != nil {
			t.Fatal(err)
		}
		sell("cut", "buy-cut")
		before := partitionSeqs(t, e)
		r, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "cut", Kind: Set, Qty: 100, TransactionID: "load-2", Actor: "vendor"})
		if err != nil || !r.Replayed || r.Before != 0 || r.After != 100 {
			t.Fatalf("retrying an applied SET: %+v, %v; want the replayed 0 -> 100", r, err)
		}
		if got := available("cut"); got != 99 || fmt.Sprint(partitionSeqs(t, e)) != fmt.Sprint(before) {
			t.Fatalf("after the retry: %d available, want 99 and nothing written", got)
		}
		checkInvariants(t, e)
	})
}
