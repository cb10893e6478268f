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

// TestExpiryFakeClock: a hold is alive until its expiry and gone from that millisecond on;
// commit after expiry says gone; a short reserve reclaims expired holds inline.
func TestExpiryFakeClock(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, nil, clock.option())
		makePool(t, e, PoolConfig{Location: "s1", SKU: "e", Shards: 1}, 3)
		p, _ := e.pool(ctx, "s1", "e")

		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "e", Qty: 3}}, IdempotencyKey: "e1", TTL: 10 * time.Second, Actor: "shop"})
		if h.ExpiresAt != clock.Ms()+10_000 {
			t.Fatalf("expires %d, want %d", h.ExpiresAt, clock.Ms()+10_000)
		}
		clock.Set(h.ExpiresAt - 1)
		if r, err := e.Sweep(ctx, p.partitions[0], 100, 100); err != nil || r.Restored != 0 || r.NextExpiry != h.ExpiresAt {
			t.Fatalf("sweep 1ms early: %+v %v", r, err)
		}
		if got, _ := e.GetHold(AnyOwner(ctx), h.ID, ""); got.Status != StatusActive {
			t.Fatalf("1ms before expiry: %s", got.Status)
		}
		clock.Set(h.ExpiresAt)
		wantErr(t, e.Commit(ctx, h.ID, "shop"), ErrHoldGone)
		if got, _ := e.GetHold(AnyOwner(ctx), h.ID, ""); got.Status != StatusExpired {
			t.Fatalf("after expiry: %s", got.Status)
		}
		wantErr(t, e.Commit(ctx, h.ID, "shop"), ErrHoldGone)
		wantErr(t, e.Release(ctx, h.ID, "shop"), ErrHoldGone)
		_, err := e.Extend(ctx, h.ID, time.Minute, "shop")
		wantErr(t, err, ErrHoldGone)

		// Inline reclaim: nothing sweeps, yet the expired units serve the next buyer.
		h2 := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "e", Qty: 3}}, IdempotencyKey: "e2", TTL: 5 * time.Second, Actor: "shop"})
		clock.Advance(5 * time.Second)
		h3 := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "e", Qty: 2}}, IdempotencyKey: "e3", Actor: "shop"})
		if got, _ := e.GetHold(AnyOwner(ctx), h2.ID, ""); got.Status != StatusExpired {
			t.Fatalf("reclaimed hold: %s", got.Status)
		}
		// Extend moves expiry later, never earlier.
		exp, err := e.Extend(ctx, h3.ID, 10*time.Minute, "shop")
		if err != nil || exp != clock.Ms()+600_000 {
			t.Fatalf("extend: %d %v", exp, err)
		}
		if exp2, _ := e.Extend(ctx, h3.ID, time.Minute, "shop"); exp2 != exp {
			t.Fatalf("extend shortened the hold to %d", exp2)
		}
		n := countTypes(checkInvariants(t, e))
		if n[EventExpired] != 2 || n[EventExtended] != 1 {
			t.Fatalf("events %v", n)
		}
	})
}

// TestCommitRacesSweep: 300 holds with spread expiries; the clock moves forward while
// commits and two sweepers run concurrently. Every hold ends exactly once, and how it ended
// agrees with what Commit answered.
func TestCommitRacesSweep(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, nil, clock.option())
		makePool(t, e, PoolConfig{Location: "s1", SKU: "r", Shards: 4}, 1000)
		start := clock.Ms()
		holds := make([]*Hold, 300)
		for i := range holds {
			holds[i] = mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "r", Qty: 1}},
				IdempotencyKey: fmt.Sprintf("r%d", i), TTL: time.Second + time.Duration(i)*time.Millisecond, Actor: "shop"})
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					for p := range e.Partitions() {
						if _, err := e.Sweep(ctx, p, 10, 10); err != nil {
							t.Errorf("sweep: %v", err)
							return
						}
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for clock.Ms() < start+1400 {
				clock.Advance(time.Millisecond)
				time.Sleep(50 * time.Microsecond)
			}
		}()
		results := make([]error, len(holds))
		var cw sync.WaitGroup
		for i, h := range holds {
			cw.Add(1)
			go func() {
				defer cw.Done()
				results[i] = e.Commit(ctx, h.ID, "shop")
			}()
		}
		cw.Wait()
		for clock.Ms() < start+1400 {
			time.Sleep(time.Millisecond)
		}
		close(stop)
		wg.Wait()
		for p := range e.Partitions() { // restore whatever is left
			if _, err := e.Sweep(ctx, p, 1000, 0); err != nil {
				t.Fatal(err)
			}
		}
		events := checkInvariants(t, e)
		ends := map[string][]string{}
		for _, evs := range events {
			for _, ev := range evs {
				if ev.Type == EventCommitted || ev.Type == EventExpired || ev.Type == EventReleased {
					ends[ev.Hold] = append(ends[ev.Hold], ev.Type)
				}
			}
		}
		var committed, expired int
		for i, h := range holds {
			hk, refs, _ := parseHoldID(h.ID, e.Partitions())
			got := ends[hk.part(refs[0])]
			if len(got) != 1 {
				t.Fatalf("hold %d ended %v", i, got)
			}
			switch {
			case results[i] == nil && got[0] == EventCommitted:
				committed++
			case errors.Is(results[i], ErrHoldGone) && got[0] == EventExpired:
				expired++
			default:
				t.Fatalf("hold %d: commit said %v, ledger says %s", i, results[i], got[0])
			}
		}
		t.Logf("%d committed, %d expired", committed, expired)
	})
}

// TestMultiPartAndCart: a reservation larger than any one shard gets its units gathered onto
// one shard; a cart is a hold of several parts, all or nothing.
func TestMultiPartAndCart(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "m", Shards: 4}, 8) // 2 units per shard
		makePool(t, e, PoolConfig{Location: "s1", SKU: "n", Shards: 1}, 1)

		// More than any one shard has: the units are gathered onto one shard first.
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 7}}, IdempotencyKey: "big", Actor: "shop"})
		if len(h.Parts) != 1 || h.Parts[0].Qty != 7 {
			t.Fatalf("a line larger than every shard: %+v", h.Parts)
		}
		if again := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 7}}, IdempotencyKey: "big", Actor: "shop"}); again.ID != h.ID {
			t.Fatalf("retry of a multi-part hold: %s, want %s", again.ID, h.ID)
		}
		if err := e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		got, _ := e.GetHold(AnyOwner(ctx), h.ID, "")
		if got.Status != StatusCommitted {
			t.Fatalf("multi-part hold after commit: %+v", got)
		}

		// Cart: the second line cannot be served, so the first is given back.
		_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 1}, {Location: "s1", SKU: "n", Qty: 2}}, IdempotencyKey: "cart-1", Actor: "shop"})
		wantErr(t, err, ErrInsufficient)
		a, _ := e.Availability(ctx, "s1", "m")
		if a.Available != 1 || a.Held != 0 {
			t.Fatalf("after a failed cart: %+v", a)
		}
		// Once the cart can be served, the same request with the same key is still refused the
		// same (for FLASHHOLD_REFUSAL_TTL); with a new key it is served.
		if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "n", Kind: Restock, Qty: 1, TransactionID: "n-more", Actor: "v"}); err != nil {
			t.Fatal(err)
		}
		_, err = e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 1}, {Location: "s1", SKU: "n", Qty: 2}}, IdempotencyKey: "cart-1", Actor: "shop"})
		if !errors.As(err, new(*InsufficientError)) || !strings.Contains(err.Error(), "for n at s1") {
			t.Fatalf("the refused cart sent again: %v, want the same refusal naming line n", err)
		}
		cart := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 1}, {Location: "s1", SKU: "n", Qty: 2}}, IdempotencyKey: "cart-2", Actor: "shop"})
		if len(cart.Parts) != 2 || cart.Parts[0].SKU != "m" || cart.Parts[1].SKU != "n" {
			t.Fatalf("cart parts %+v", cart.Parts)
		}
		if err := e.Release(ctx, cart.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		// Not enough anywhere: insufficient, with the pool's count.
		_, err = e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 5}}, IdempotencyKey: "too-big", Actor: "shop"})
		var ie *InsufficientError
		if !errors.As(err, &ie) || ie.Available != 1 {
			t.Fatalf("want insufficient with 1 available, got %v", err)
		}
		n := countTypes(checkInvariants(t, e))
		if n[EventCommitted] != 1 {
			t.Fatalf("events %v", n)
		}
	})
}
