package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestCustomerLimitWindow: a per-customer limit over a window counts units held now and units
// sold in the last window — a sale stops counting the millisecond its window has passed, a
// partial commit counts only what it sold — and a replay of the partition's events agrees
// with what Redis keeps of the customer (what a rebuild writes).
func TestCustomerLimitWindow(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, nil, clock.option())
		const window = 24 * time.Hour
		cfg := PoolConfig{Location: "s1", SKU: "w", Vendor: "v", Shards: 4, CustomerLimit: 2, CustomerWindow: window.Milliseconds()}
		makePool(t, e, cfg, 100)
		n := 0
		hold := func(qty int64) (*Hold, error) {
			n++
			return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "w", Qty: qty}}, Customer: "alice",
				IdempotencyKey: fmt.Sprint("k", n), TTL: time.Minute, Actor: "shop"})
		}
		refused := func(when string) {
			t.Helper()
			if _, err := hold(1); !errors.Is(err, ErrCustomerLimit) {
				t.Fatalf("%s: %v, want the customer's limit", when, err)
			}
		}
		h, err := hold(2)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		refused("2 bought now")
		clock.Advance(window - time.Millisecond)
		refused("2 bought a window less 1 ms ago")
		clock.Advance(time.Millisecond)
		h, err = hold(2)
		if err != nil {
			t.Fatalf("2 bought a window ago: %v", err)
		}
		// Two held, one of them sold: one more may be held, not two.
		if err := e.CommitPart(ctx, h.ID, 1, "shop"); err != nil {
			t.Fatal(err)
		}
		h, err = hold(1)
		if err != nil {
			t.Fatalf("1 bought, 0 held: %v", err)
		}
		refused("1 bought, 1 held")
		if err := e.Release(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(window / 2)
		if _, err := hold(1); err != nil {
			t.Fatalf("1 bought half a window ago, 0 held: %v", err)
		}
		refused("1 bought half a window ago, 1 held")

		// A sale made under the window stops counting when it has passed, even after the
		// pool's window is removed (sales made from then on count for good).
		carol := func(key string, qty int64) (*Hold, error) {
			return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "w", Qty: qty}}, Customer: "carol",
				IdempotencyKey: key, TTL: time.Minute, Actor: "shop"})
		}
		if h, err := carol("c1", 2); err != nil {
			t.Fatal(err)
		} else if err := e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		forGood := cfg
		forGood.CustomerWindow = 0
		if err := e.CreatePool(ctx, forGood, "test"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(window)
		if _, err := carol("c2", 2); err != nil {
			t.Fatalf("2 bought under a window that has passed, the pool's window since removed: %v", err)
		}
		if err := e.CreatePool(ctx, cfg, "test"); err != nil {
			t.Fatal(err)
		}

		// What Redis keeps of alice against what the events add up to.
		p, _ := e.pool(ctx, "s1", "w")
		part := p.partitions[homeShard(p, "", 0, "alice")]
		evs, err := e.ReadEvents(ctx, part, 0, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		r := NewReplay(ReplayOptions{Limited: func(PoolKey) bool { return true }, Window: func(PoolKey) int64 { return cfg.CustomerWindow }})
		for i := range evs {
			r.Apply(&evs[i])
		}
		kept, err := rdb.HGetAll(ctx, e.ks.parts[part][6]).Result()
		if err != nil {
			t.Fatal(err)
		}
		f := "s1|w|alice"
		got, want := counting(t, kept[f], kept[f+"|w"], clock.Ms()), counting(t, strconv.FormatInt(r.Customers[f], 10), sales(r.Sales[f]), clock.Ms())
		if got != want || got == "" {
			t.Fatalf("alice in Redis: %q, by the events: %q", got, want)
		}
	})
}

// counting is a customer's count and window list as they count at now: the count less the
// sales whose window has passed, and the sales still counting, in order.
func counting(t *testing.T, count, list string, now int64) string {
	t.Helper()
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil {
		t.Fatalf("count %q", count)
	}
	var keep []string
	for _, s := range strings.Fields(list) {
		at, qty, _ := strings.Cut(s, ":")
		until, _ := strconv.ParseInt(at, 10, 64)
		q, _ := strconv.ParseInt(qty, 10, 64)
		if until <= now {
			n -= q
		} else {
			keep = append(keep, s)
		}
	}
	slices.Sort(keep)
	return fmt.Sprint(n, keep)
}

func sales(s []Sale) string {
	var out []string
	for _, x := range s {
		out = append(out, fmt.Sprintf("%d:%d", x.Until, x.Qty))
	}
	return strings.Join(out, " ")
}

// TestCarrySoldCountsUnderWindow: carrying over a sale of a part no longer open (HoldSold)
// raises the customer's count and records the sale under the window, so it stops counting
// when the window has passed.
func TestCarrySoldCountsUnderWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb, nil, clock.option())
	makePool(t, e, PoolConfig{Location: "s1", SKU: "w", Shards: 1, CustomerLimit: 2, CustomerWindow: 60_000}, 10)
	p := e.PartitionOf("s1", "w", 0)
	if err := e.Fence(ctx, p, "test"); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := e.Carry(ctx, p, Carried{ID: "c1", Type: EventCommitted, Location: "s1", SKU: "w", Hold: "h.0.0.0", Qty: 2,
		Customer: "alice", Token: "h", Available: -2, Committed: 2, CustomerDelta: 2, Op: HoldSold,
		Record: HoldRecord{Location: "s1", SKU: "w", Customer: "alice", Limited: true, Window: 60_000}, Actor: "test", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := rdb.HGetAll(ctx, e.ks.parts[p][6]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if kept["s1|w|alice"] != "2" || kept["s1|w|alice|w"] != fmt.Sprintf("%d:2", clock.Ms()+60_000) {
		t.Fatalf("alice after the carried sale: %v", kept)
	}
}
