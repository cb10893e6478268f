package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

// partitionSeqs reads every partition's seq: if none moved, nothing changed.
func partitionSeqs(t testing.TB, e *Engine) []int64 {
	t.Helper()
	out := make([]int64, e.Partitions())
	for p := range out {
		out[p] = seqOf(t, e, p)
	}
	return out
}

// TestBadInput: every malformed or out-of-range request gets a typed error and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "ok", Shards: 2}, 10)
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "ok", Qty: 1}}, IdempotencyKey: "valid", Actor: "shop"})
		before := partitionSeqs(t, e)
		one := func(qty int64) []Item { return []Item{{Location: "s1", SKU: "ok", Qty: qty}} }

		reserves := []struct {
			name string
			req  ReserveRequest
			want error
		}{
			{"unknown pool", ReserveRequest{Items: []Item{{Location: "s1", SKU: "nope", Qty: 1}}, IdempotencyKey: "k"}, ErrUnknownPool},
			{"qty zero", ReserveRequest{Items: one(0), IdempotencyKey: "k"}, ErrInvalid},
			{"qty negative", ReserveRequest{Items: one(-3), IdempotencyKey: "k"}, ErrInvalid},
			{"qty above max", ReserveRequest{Items: one(101), IdempotencyKey: "k"}, ErrInvalid},
			{"no items", ReserveRequest{IdempotencyKey: "k"}, ErrInvalid},
			{"too many items", ReserveRequest{Items: make([]Item, 21), IdempotencyKey: "k"}, ErrInvalid},
			{"duplicate line", ReserveRequest{Items: []Item{{Location: "s1", SKU: "ok", Qty: 1}, {Location: "s1", SKU: "ok", Qty: 1}}, IdempotencyKey: "k"}, ErrInvalid},
			{"bad sku", ReserveRequest{Items: []Item{{Location: "s1", SKU: "a|b", Qty: 1}}, IdempotencyKey: "k"}, ErrInvalid},
			{"empty location", ReserveRequest{Items: []Item{{Location: "", SKU: "ok", Qty: 1}}, IdempotencyKey: "k"}, ErrInvalid},
			{"long sku", ReserveRequest{Items: []Item{{Location: "s1", SKU: strings.Repeat("x", 65), Qty: 1}}, IdempotencyKey: "k"}, ErrInvalid},
			{"missing key", ReserveRequest{Items: one(1)}, ErrInvalid},
			{"bad key", ReserveRequest{Items: one(1), IdempotencyKey: "has space"}, ErrInvalid},
			{"bad customer", ReserveRequest{Items: one(1), IdempotencyKey: "k", Customer: "a/b"}, ErrInvalid},
			{"ttl too short", ReserveRequest{Items: one(1), IdempotencyKey: "k", TTL: time.Millisecond}, ErrInvalid},
			{"ttl too long", ReserveRequest{Items: one(1), IdempotencyKey: "k", TTL: time.Hour}, ErrInvalid},
			{"more than stock", ReserveRequest{Items: one(50), IdempotencyKey: "k"}, ErrInsufficient},
		}
		for _, tc := range reserves {
			_, err := e.Reserve(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		var ve *ValidationError
		if _, err := e.Reserve(ctx, ReserveRequest{Items: one(0), IdempotencyKey: "k"}); !errors.As(err, &ve) || ve.Field != "items[0].qty" {
			t.Errorf("validation error should name the field: %v", err)
		}

		for _, id := range []string{"", "nope", h.ID + "_", strings.ToUpper(h.ID), "0123456789abcdef0123_99999.0.0", h.ID[:20]} {
			wantErr(t, e.Commit(ctx, id, "shop"), ErrInvalid)
			wantErr(t, e.Release(ctx, id, "shop"), ErrInvalid)
			_, err := e.GetHold(AnyOwner(ctx), id, "")
			wantErr(t, err, ErrInvalid)
		}
		wantErr(t, e.Commit(ctx, "0123456789abcdef0123.0_1.0.0", "shop"), ErrHoldNotFound)
		_, err := e.Extend(ctx, h.ID, time.Hour, "shop")
		wantErr(t, err, ErrInvalid)

		adjusts := []AdjustRequest{
			{Location: "s1", SKU: "ok", Kind: "STEAL", Qty: 1, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Restock, Qty: 0, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Spoilage, Qty: -1, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Adjustment, Qty: 0, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Set, Qty: -1, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Restock, Qty: 2e9, TransactionID: "t"},
			{Location: "s1", SKU: "ok", Kind: Restock, Qty: 1},
			{Location: "s1", SKU: "ok", Kind: Restock, Qty: 1, TransactionID: "t", Reason: "a|b"},
		}
		for _, a := range adjusts {
			_, err := e.Adjust(ctx, a)
			wantErr(t, err, ErrInvalid)
		}
		_, err = e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "ok", Kind: Spoilage, Qty: 50, TransactionID: "t"})
		wantErr(t, err, ErrInsufficient)
		_, err = e.Adjust(ctx, AdjustRequest{Location: "s9", SKU: "ok", Kind: Restock, Qty: 1, TransactionID: "t"})
		wantErr(t, err, ErrUnknownPool)
		for _, c := range []PoolConfig{
			{Location: "s1", SKU: "ok", Vendor: "v1", Shards: 4},  // shard count cannot change
			{Location: "s1", SKU: "ok", Vendor: "v2", Shards: 2},  // nor the vendor
			{Location: "s1", SKU: "new", Vendor: "v1", Shards: 0}, // shards out of range
			{Location: "s1", SKU: "new", Vendor: "v1", Shards: 65},
			{Location: "s1", SKU: "new", Vendor: "", Shards: 1},
			{Location: "s1", SKU: "new", Vendor: "v1", Shards: 1, LowStock: -1},
		} {
			wantErr(t, e.CreatePool(ctx, c, "admin"), ErrInvalid)
		}

		after := partitionSeqs(t, e)
		for p := range before {
			if before[p] != after[p] {
				t.Fatalf("partition %d changed (seq %d -> %d) on bad input", p, before[p], after[p])
			}
		}
		a, _ := e.Availability(ctx, "s1", "ok")
		if a.Available != 9 || a.Held != 1 {
			t.Fatalf("stock changed: %+v", a)
		}
		checkInvariants(t, e)
	})
}

// TestFence: a fenced partition refuses every write; a sharded pool keeps selling from its
// other shards; lifting the fence restores service.
func TestFence(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		// The single-shard pool's partition must not be one of the sharded pool's (partitions
		// depend on the key prefix): fencing it would fence a second shard of that pool.
		single := "single"
		for i := 0; slices.Contains([]int{e.PartitionOf("s1", "multi", 0), e.PartitionOf("s1", "multi", 1), e.PartitionOf("s1", "multi", 2),
			e.PartitionOf("s1", "multi", 3)}, e.PartitionOf("s1", single, 0)); i++ {
			single = fmt.Sprint("single-", i)
		}
		makePool(t, e, PoolConfig{Location: "s1", SKU: single, Shards: 1}, 10)
		// 15 units a shard: 45 beside the fenced one, of which the 20 reserves below take at
		// most 20, and a hold of 16 (more than one shard has) must be split.
		makePool(t, e, PoolConfig{Location: "s1", SKU: "multi", Shards: 4}, 60)
		one, _ := e.pool(ctx, "s1", single)
		multi, _ := e.pool(ctx, "s1", "multi")
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: single, Qty: 1}}, IdempotencyKey: "before", Actor: "shop"})

		if err := e.Fence(ctx, one.partitions[0], "lost writes suspected"); err != nil {
			t.Fatal(err)
		}
		if err := e.Fence(ctx, multi.partitions[1], "lost writes suspected"); err != nil {
			t.Fatal(err)
		}
		before := partitionSeqs(t, e)
		_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: single, Qty: 1}}, IdempotencyKey: "during", Actor: "shop"})
		wantErr(t, err, ErrFenced)
		wantErr(t, e.Commit(ctx, h.ID, "shop"), ErrFenced)
		_, err = e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: single, Kind: Restock, Qty: 1, TransactionID: "t1"})
		wantErr(t, err, ErrFenced)
		_, err = e.Sweep(ctx, one.partitions[0], 10, 10)
		wantErr(t, err, ErrFenced)
		if after := partitionSeqs(t, e); after[one.partitions[0]] != before[one.partitions[0]] {
			t.Fatal("a fenced partition changed")
		}
		// 20 single-unit reserves on the sharded pool: those whose home shard is the fenced
		// one are refused for now (their key's answer may be there); the others land on
		// unfenced shards, and so do multi-part holds.
		// Which ones is known beforehand: a key is refused when its home shard or the
		// partition of its idempotency record is fenced.
		fenced := []int{one.partitions[0], multi.partitions[1]}
		served, want := 0, 0
		for i := range 20 {
			key := "m" + string(rune('a'+i))
			token := e.token("shop", key)
			if homeShard(multi, token, 0, "") != 1 && !slices.Contains(fenced, e.keyPartition(token)) {
				want++
			}
			h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "multi", Qty: 1}}, IdempotencyKey: key, Actor: "shop"})
			if errors.Is(err, ErrFenced) {
				continue
			}
			if err != nil {
				t.Fatalf("sharded pool with one fenced shard: %v", err)
			}
			served++
			for _, p := range h.Parts {
				if p.Shard == 1 {
					t.Fatal("a part was placed on the fenced shard")
				}
			}
		}
		var big *Hold
		for i := 0; big == nil; i++ {
			h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "multi", Qty: 16}}, IdempotencyKey: fmt.Sprint("big-", i), Actor: "shop"})
			if err != nil && (!errors.Is(err, ErrFenced) || i > 20) {
				t.Fatalf("multi-part hold beside a fenced shard: %v", err)
			}
			big = h
		}
		for _, p := range big.Parts {
			if p.Shard == 1 {
				t.Fatal("a part of a multi-part hold was placed on the fenced shard")
			}
		}
		if served != want || want == 0 {
			t.Fatalf("%d of 20 reserves served with one of four shards fenced, want %d (those whose home shard and record are not fenced)", served, want)
		}
		if reason, err := e.Unfence(ctx, one.partitions[0]); err != nil || reason != "lost writes suspected" {
			t.Fatalf("unfence: %q %v", reason, err)
		}
		if err := e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		e.Unfence(ctx, multi.partitions[1])
		checkInvariants(t, e)
	})
}

// TestScriptsReloadAfterFlush: the function library is loaded on every cluster node at start,
// and a node that lost it (restart, FUNCTION FLUSH) gets it again on the next call.
// Runs on the test-owned cluster only: its functions are this test binary's alone.
func TestScriptsReloadAfterFlush(t *testing.T) {
	t.Parallel()
	rdb := testredisCluster(t)
	ctx := context.Background()
	e := newEngine(t, rdb, nil)
	cc := rdb.(*redis.ClusterClient)
	var loaded atomic.Int32 // ForEachMaster calls back concurrently
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		libs, err := node.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: e.lib}).Result()
		if err == nil && len(libs) == 1 && len(libs[0].Functions) == len(e.fns) {
			loaded.Add(1)
		}
		return err
	})
	if err != nil || loaded.Load() != 3 {
		t.Fatalf("function library on %d of 3 masters (%v)", loaded.Load(), err)
	}
	makePool(t, e, PoolConfig{Location: "s1", SKU: "f", Shards: 4}, 400)
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		return node.FunctionFlush(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	// Concurrent reserves, the first calls after the flush: the coalescer's pipelines find
	// the functions of reserve and reserve_batch missing alike, load the library and send
	// those calls again.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "f", Qty: 2}}, IdempotencyKey: fmt.Sprintf("after-flush-%d", i), Actor: "shop"}); err != nil {
				t.Errorf("reserve after the flush: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := countTypes(checkInvariants(t, e))[EventReserved]; n != 40 {
		t.Fatalf("%d RESERVED events for 40 reserves", n)
	}
	// A single call through run after another flush.
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		return node.FunctionFlush(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "f", Kind: Restock, Qty: 4, TransactionID: "after-flush", Actor: "v1"}); err != nil {
		t.Fatalf("restock after the flush: %v", err)
	}
	checkInvariants(t, e)
}

// TestNamePattern: the hand-written name check agrees with the regular expression it stands for.
func TestNamePattern(t *testing.T) {
	t.Parallel()
	for _, max := range []int{64, 128} {
		p := namePattern{max: max}
		re := regexp.MustCompile(p.String())
		cases := []string{"", "a", "A-z_0.9:", strings.Repeat("x", max), strings.Repeat("x", max+1), "a b", "a/b",
			"ü", "a\n", "\x00", "sku|1", "{p1}", "a*", "[]", "~", "é"}
		for c := 0; c < 256; c++ {
			cases = append(cases, "k"+string(rune(c)), string([]byte{byte(c)}))
		}
		for _, s := range cases {
			if p.MatchString(s) != re.MatchString(s) {
				t.Errorf("max %d, %q: hand-written %v, regexp %v", max, s, p.MatchString(s), re.MatchString(s))
			}
		}
	}
}

// TestAvailableCeiling: no change may lift a pool above MaxAvailable (beyond it Lua would
// print counters and event numbers inexactly); the refusal names the field and changes nothing.
func TestAvailableCeiling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngine(t, testredis.Standalone(t), nil)
	for _, shards := range []int{1, 4} {
		sku := fmt.Sprintf("big%d", shards)
		makePool(t, e, PoolConfig{Location: "s1", SKU: sku, Shards: shards}, 0)
		for i := range MaxAvailable / maxAdjust {
			if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: sku, Kind: Restock, Qty: maxAdjust,
				TransactionID: fmt.Sprintf("fill-%s-%d", sku, i)}); err != nil {
				t.Fatalf("%d shards: restock %d: %v", shards, i, err)
			}
		}
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: sku, Qty: 1}}, IdempotencyKey: "one-" + sku})
		before := partitionSeqs(t, e)
		for _, a := range []AdjustRequest{
			{Location: "s1", SKU: sku, Kind: Restock, Qty: 2, TransactionID: "over-" + sku},
			{Location: "s1", SKU: sku, Kind: Adjustment, Qty: 2, TransactionID: "over-2-" + sku},
		} {
			_, err := e.Adjust(ctx, a)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "quantity" {
				t.Fatalf("%d shards: %s above the ceiling: got %v, want a quantity error", shards, a.Kind, err)
			}
		}
		if after := partitionSeqs(t, e); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("%d shards: a refused change wrote events", shards)
		}
		if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: sku, Kind: Restock, Qty: 1, TransactionID: "to-the-top-" + sku}); err != nil {
			t.Fatalf("%d shards: restock up to the ceiling: %v", shards, err)
		}
		if err := e.Commit(ctx, h.ID, ""); err != nil {
			t.Fatal(err)
		}
		a, err := e.Availability(ctx, "s1", sku)
		if err != nil || a.Available != MaxAvailable {
			t.Fatalf("%d shards: availability %+v, %v; want %d", shards, a, err, int64(MaxAvailable))
		}
	}
	checkInvariants(t, e)
}

// TestScriptsCheckArguments: a script called with a number that is not an integer in range
// (or text that would break a record) refuses before it changes anything.
func TestScriptsCheckArguments(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), func(c *Config) { c.Coalesce = false })
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "x", Shards: 1}, 10)
	p := e.PartitionOf("s1", "x", 0)
	now := e.nowMs()
	exp := fmt.Sprint(now + 60_000)
	reserve := func(qty, expiry, limit string) []any {
		return []any{"tok.0.0.0", "s1", "x", "0", qty, expiry, "", limit, "tok", "fp", modeFinal, "shop", "8", "3600000", "30000", "0", "0", "0"}
	}
	before := seqOf(t, e, p)
	for _, c := range []struct {
		name string
		args []any
	}{
		{"reserve", reserve("1.5", exp, "0")},
		{"reserve", reserve("1e3", exp, "0")},
		{"reserve", reserve("-1", exp, "0")},
		{"reserve", reserve("0x10", exp, "0")},
		{"reserve", reserve("2", "soon", "0")},
		{"reserve", reserve("2", exp, "0.5")},
		{"reserve", append(reserve("2", exp, "0")[:1], "s|1", "x", "0", "2", exp, "", "0", "tok", "fp", modeFinal, "shop", "8", "3600000", "30000", "0", "0", "0")},
		{"reserve", reserve("2", exp, "0")[:17]},
		{"reserve", append(reserve("2", exp, "0")[:17], "-1")},
		{"reserve", append(reserve("2", exp, "0")[:17], "x")},
		{"reserve_batch", append(reserve("1", exp, "0"), reserve("1.5", exp, "0")...)},
		{"adjust", []any{"s1", "x", "0", "RESTOCK", "1.5", "tx", "fp", "v", "", "3600000", fmt.Sprint(MaxAvailable), "", ""}},
		{"adjust", []any{"s1", "x", "0", "SPOILAGE", "2", "tx", "fp", "v", "", "1h", fmt.Sprint(MaxAvailable), "", ""}},
		{"sweep", []any{"ten", "100", "3600000"}},
		{"transfer_out", []any{"s1", "x", "0", "2.5", "xf", fmt.Sprint(p), "0", "t"}},
		{"end_batch", []any{"RELEASED", "tok.0.0.0", "shop", "1.5", "", "shop"}},
		{"extend", []any{"tok.0.0.0", "later", "shop", "3600000", "shop"}},
		{"repair", []any{"s1", "x", "0", "0.5", "r1", "t", "", "3600000", ""}},
	} {
		r, err := e.run(ctx, c.name, p, now, c.args...)
		if err == nil || !strings.Contains(err.Error(), "bad") && !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%s %v: answered %v, %v; want an error naming the bad argument", c.name, c.args, r, err)
		}
	}
	if seqOf(t, e, p) != before {
		t.Fatal("a call with a bad argument wrote events")
	}
	a, _ := e.Availability(ctx, "s1", "x")
	if a.Available != 10 || a.Held != 0 {
		t.Fatalf("counters changed: %+v", a)
	}
}
