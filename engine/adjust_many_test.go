package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestAdjustMany: a batch of changes gives each change the answer Adjust gives it alone, in
// order per pool (single-shard and sharded pools, several changes of one pool, a SET to the
// count it has, refusals of every kind), with one event per change of the count; sent again,
// every change is replayed and nothing changes; the streams replay to the counters.
func TestAdjustMany(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		e := newEngine(t, rdb, nil)
		ctx := context.Background()
		for i := range 6 {
			makePool(t, e, PoolConfig{Location: "s", SKU: fmt.Sprint("p", i), Vendor: "acme", Shards: 1}, 10)
		}
		makePool(t, e, PoolConfig{Location: "s", SKU: "wide", Vendor: "acme", Shards: 4}, 40)
		makePool(t, e, PoolConfig{Location: "s", SKU: "theirs", Vendor: "other", Shards: 1}, 10)
		req := func(sku, kind string, qty int64, tx string) AdjustRequest {
			return AdjustRequest{Location: "s", SKU: sku, Kind: kind, Qty: qty, TransactionID: tx, Actor: "importer"}
		}
		reqs := []AdjustRequest{
			req("p0", Set, 100, "r1"),           // 10 -> 100
			req("p0", Restock, 2, "r2"),         // 100 -> 102
			req("p0", Spoilage, 1, "r3"),        // 102 -> 101
			req("p1", Set, 10, "r4"),            // unchanged, no event
			req("p2", Spoilage, 50, "r5"),       // refused: 10 available
			req("p3", Adjustment, -4, "r6"),     // 10 -> 6
			req("nothing", Restock, 1, "r7"),    // no such pool
			req("theirs", Restock, 1, "r8"),     // another vendor's
			req("p4", Restock, 0, "r9"),         // invalid
			req("wide", Spoilage, 25, "r10"),    // sharded: 40 -> 15
			req("wide", Restock, 5, "r11"),      // 15 -> 20
			req("p5", Restock, 1, "initial-p5"), // the id of another change (the seed's RESTOCK 10)
			req("p4", Set, MaxAvailable+1, "r13"),
		}
		want := []string{"10>100", "100>102", "102>101", "10>10", "insufficient", "10>6", "unknown_pool", "unknown_pool",
			"invalid", "40>15", "15>20", "mismatch", "invalid"}
		describe := func(o AdjustOutcome) string {
			switch {
			case o.Err == nil:
				return fmt.Sprintf("%d>%d", o.Result.Before, o.Result.After)
			case errors.Is(o.Err, ErrInsufficient):
				return "insufficient"
			case errors.Is(o.Err, ErrUnknownPool):
				return "unknown_pool"
			case errors.Is(o.Err, ErrInvalid):
				return "invalid"
			case errors.Is(o.Err, ErrIdempotencyMismatch):
				return "mismatch"
			}
			return o.Err.Error()
		}
		check := func(replayed bool) {
			t.Helper()
			out := e.AdjustMany(ctx, "acme", append([]AdjustRequest(nil), reqs...))
			for i, o := range out {
				if got := describe(o); got != want[i] {
					t.Errorf("change %d (%s %s %d): %s, want %s", i, reqs[i].SKU, reqs[i].Kind, reqs[i].Qty, got, want[i])
				}
				if o.Err == nil && o.Result.Replayed != replayed {
					t.Errorf("change %d replayed %v, want %v", i, o.Result.Replayed, replayed)
				}
			}
		}
		check(false)
		check(true)
		for sku, n := range map[string]int64{"p0": 101, "p1": 10, "p2": 10, "p3": 6, "wide": 20, "theirs": 10} {
			a, err := e.Availability(ctx, "s", sku)
			if err != nil || a.Available != n {
				t.Fatalf("%s: %v available (%v), want %d", sku, a, err, n)
			}
		}
		// Exactly one event for each change of a count, none for the others, after both batches.
		perTx := map[string]int{}
		for _, evs := range checkInvariants(t, e) {
			for _, ev := range evs {
				perTx[ev.Idem]++
			}
		}
		for i, r := range reqs {
			n := 0
			if w := want[i]; w != "10>10" && (w[0] >= '0' && w[0] <= '9') {
				n = 1
			}
			tx := "acme:" + r.TransactionID
			if r.SKU == "theirs" {
				tx = "other:" + r.TransactionID
			}
			if r.TransactionID == "initial-p5" {
				n = 1 // the seed's own event
			}
			if perTx[tx] != n {
				t.Errorf("change %d (%s): %d events, want %d", i, tx, perTx[tx], n)
			}
		}
	})
}

// TestPoolsPaged: Pools reads every pool, in pages (no single HGETALL of them all), each once
// and in order; PoolsVersion moves with every pool made.
func TestPoolsPaged(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	var configs []PoolConfig
	for i := range 2*poolsPage + 100 {
		configs = append(configs, PoolConfig{Location: "s", SKU: fmt.Sprintf("p%05d", i), Vendor: "v", Shards: 1})
	}
	v0, _ := e.PoolsVersion(ctx)
	if err := e.RestorePools(ctx, configs); err != nil {
		t.Fatal(err)
	}
	got, err := e.Pools(ctx)
	if err != nil || len(got) != len(configs) {
		t.Fatalf("%d pools (%v), want %d", len(got), err, len(configs))
	}
	for i, c := range got {
		if c.SKU != configs[i].SKU {
			t.Fatalf("pool %d is %s, want %s", i, c.SKU, configs[i].SKU)
		}
	}
	if v1, _ := e.PoolsVersion(ctx); v1 != v0+int64(len(configs)) {
		t.Fatalf("pools version %d, then %d after %d pools", v0, v1, len(configs))
	}
}

// TestAdjustManyStopsAPoolAtItsFirstFailure: when a change cannot be made now (its shard's
// partition fenced), the later changes of the same pool in the batch are not made either, so
// that sending the batch again applies them in order; other pools go on.
func TestAdjustManyStopsAPoolAtItsFirstFailure(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s", SKU: "wide", Vendor: "acme", Shards: 4}, 100)
	makePool(t, e, PoolConfig{Location: "s", SKU: "other", Vendor: "acme", Shards: 1}, 10)
	p, err := e.pool(ctx, "s", "wide")
	if err != nil {
		t.Fatal(err)
	}
	// Two transaction ids whose changes land on different shards; the first one's is fenced.
	first, second := "acme:f0", ""
	for i := 1; second == ""; i++ {
		if id := fmt.Sprint("acme:f", i); txShard(p, id) != txShard(p, first) {
			second = id
		}
	}
	if err := e.Fence(ctx, p.partitions[txShard(p, first)], "test"); err != nil {
		t.Fatal(err)
	}
	out := e.AdjustMany(ctx, "acme", []AdjustRequest{
		{Location: "s", SKU: "wide", Kind: Spoilage, Qty: 30, TransactionID: first[len("acme:"):], Actor: "imp"},
		{Location: "s", SKU: "wide", Kind: Set, Qty: 50, TransactionID: second[len("acme:"):], Actor: "imp"},
		{Location: "s", SKU: "other", Kind: Restock, Qty: 1, TransactionID: "o1", Actor: "imp"},
	})
	if out[0].Err == nil || out[2].Err != nil || !errors.Is(out[1].Err, ErrUnavailable) || !strings.Contains(out[1].Err.Error(), "an earlier change") {
		t.Fatalf("outcomes %v / %v / %v: want the fenced change refused, the one after it not tried, the other pool's made",
			out[0].Err, out[1].Err, out[2].Err)
	}
}

// TestAdjustManyRetryKeepsRefusals: a batch sent again (as an import sends a batch again when
// part of it could not be made) refuses again the changes it refused the first time, although
// later changes of the batch added the units they lacked: the pools end as the changes applied
// once in order leave them, on single-shard and sharded pools.
func TestAdjustManyRetryKeepsRefusals(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel()
		e := newEngine(t, rdb, nil)
		ctx := context.Background()
		makePool(t, e, PoolConfig{Location: "s", SKU: "one", Vendor: "acme", Shards: 1}, 10)
		makePool(t, e, PoolConfig{Location: "s", SKU: "wide", Vendor: "acme", Shards: 4}, 40)
		reqs := []AdjustRequest{
			{Location: "s", SKU: "one", Kind: Spoilage, Qty: 50, TransactionID: "k1", Actor: "imp"},  // refused: 10
			{Location: "s", SKU: "one", Kind: Restock, Qty: 100, TransactionID: "k2", Actor: "imp"},  // 10 -> 110
			{Location: "s", SKU: "wide", Kind: Spoilage, Qty: 90, TransactionID: "k3", Actor: "imp"}, // refused: 40
			{Location: "s", SKU: "wide", Kind: Restock, Qty: 100, TransactionID: "k4", Actor: "imp"}, // 40 -> 140
		}
		for attempt := range 2 {
			out := e.AdjustMany(ctx, "acme", append([]AdjustRequest(nil), reqs...))
			for _, i := range []int{0, 2} {
				var ie *InsufficientError
				if !errors.As(out[i].Err, &ie) || ie.Requested != reqs[i].Qty || ie.Available != []int64{10, 0, 40}[i] {
					t.Fatalf("attempt %d, change %d: %+v %v, want refused with %d available", attempt, i, out[i].Result, out[i].Err, []int64{10, 0, 40}[i])
				}
			}
		}
		for sku, n := range map[string]int64{"one": 110, "wide": 140} {
			if a, err := e.Availability(ctx, "s", sku); err != nil || a.Available != n {
				t.Fatalf("%s: %+v (%v), want %d available", sku, a, err, n)
			}
		}
		checkInvariants(t, e)
	})
}

// TestShardShareRefusalNotRecorded: a sharded pool's change applied on its home shard and
// refused there (racing reservations took the units gathered for it) is not recorded as the
// change's refusal: read again, the change is made.
func TestShardShareRefusalNotRecorded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s", SKU: "wide", Vendor: "acme", Shards: 4}, 40) // 10 a shard
	p, err := e.pool(ctx, "s", "wide")
	if err != nil {
		t.Fatal(err)
	}
	req := AdjustRequest{Location: "s", SKU: "wide", Kind: Spoilage, Qty: 25, TransactionID: "sp", Actor: "imp"}
	tx, fp := "acme:"+req.TransactionID, req.fingerprint()
	home := txShard(p, tx)
	// The home shard has 10 of the 25 (as if reservations took what was gathered there).
	_, err = e.adjustShard(ctx, p, home, Spoilage, 25, tx, fp, req, &poolChange{before: 40, delta: -25})
	if !errors.Is(err, ErrInsufficient) {
		t.Fatalf("the home shard's share: %v, want insufficient", err)
	}
	res, err := e.Adjust(ctx, req)
	if err != nil || res.Before != 40 || res.After != 15 {
		t.Fatalf("the change read again: %+v %v, want 40 -> 15", res, err)
	}
}
