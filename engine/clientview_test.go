package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

// The tests in this file look at what callers are told: every answer must be true of the
// state afterwards, the same request with the same key must get the same answer, and a
// refused change must have changed nothing.

// TestRefusedAdjustChangesNothing: on a sharded pool whose units are being reserved, a
// removal answered "insufficient" wrote nothing, its message does not contradict itself, and
// an accepted one removed exactly its units once.
func TestRefusedAdjustChangesNothing(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "spoil", Shards: 8}, 400)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "spoil", Qty: int64(1 + i%3)}}, IdempotencyKey: fmt.Sprintf("r%d-%d", g, i), Actor: "shop"})
					if err == nil && i%4 != 0 {
						e.Release(ctx, h.ID, "shop")
					}
				}
			})
		}
		type outcome struct {
			tx  string
			qty int64
			err error
		}
		var outs []outcome
		for i := range 60 {
			qty := int64(5 + i%20)
			tx := fmt.Sprintf("spoil-%d", i)
			_, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "spoil", Kind: Spoilage, Qty: qty, TransactionID: tx, Actor: "vendor"})
			outs = append(outs, outcome{tx, qty, err})
		}
		close(stop)
		wg.Wait()
		spoiled := map[string]int64{}
		for _, evs := range checkInvariants(t, e) {
			for _, ev := range evs {
				if ev.Type == EventSpoiled {
					spoiled[strings.TrimPrefix(ev.Idem, "v1:")] -= ev.Delta
				}
			}
		}
		refused := 0
		for _, o := range outs {
			var ie *InsufficientError
			switch {
			case o.err == nil:
				if spoiled[o.tx] != o.qty {
					t.Errorf("%s: accepted SPOILAGE of %d removed %d units", o.tx, o.qty, spoiled[o.tx])
				}
			case errors.As(o.err, &ie):
				refused++
				if spoiled[o.tx] != 0 {
					t.Errorf("%s: SPOILAGE of %d answered %q still removed %d units", o.tx, o.qty, o.err, spoiled[o.tx])
				}
				if ie.Available >= ie.Requested {
					t.Errorf("%s: refusal contradicts itself: %q", o.tx, o.err)
				}
			case errors.Is(o.err, ErrUnavailable):
				if spoiled[o.tx] != 0 {
					t.Errorf("%s: SPOILAGE answered %q (nothing done) removed %d units", o.tx, o.err, spoiled[o.tx])
				}
			default:
				t.Errorf("%s: %v", o.tx, o.err)
			}
		}
		t.Logf("%d of %d removals refused", refused, len(outs))
	})
}

// TestReplayAfterSlowPath: once a reservation that took several calls answered with a hold,
// the same request replays that hold at once; it is never "in progress" again.
func TestReplayAfterSlowPath(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		// A limited pool with all its units on one shard: most customers' home shards are
		// empty, so their units are moved to it first and the hold ends as one part there.
		makePool(t, e, PoolConfig{Location: "s1", SKU: "lim", Shards: 8, CustomerLimit: 2}, 0)
		if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "lim", Kind: Restock, Qty: 40, TransactionID: "po", Actor: "v"}); err != nil {
			t.Fatal(err)
		}
		p, _ := e.pool(ctx, "s1", "lim")
		for s := 1; s < 8; s++ {
			if _, err := e.Transfer(ctx, "s1", "lim", s, 0, 5, fmt.Sprintf("gather-%d", s), "test"); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 12 {
			req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "lim", Qty: 1}}, Customer: fmt.Sprintf("c%d", i), IdempotencyKey: fmt.Sprintf("k%d", i), Actor: "shop"}
			first, err := e.Reserve(ctx, req)
			if err != nil {
				t.Fatalf("customer %d: %v", i, err)
			}
			again, err := e.Reserve(ctx, req)
			if err != nil || again.ID != first.ID || !again.Replayed {
				t.Fatalf("customer %d (home shard %d): retry after 201 got %+v, %v; want the replayed hold %s", i,
					homeShard(p, "", 0, req.Customer), again, err, first.ID)
			}
		}
	})
}

// answer is what one call of Reserve told its caller, comparable across duplicates.
func answer(h *Hold, err error) string {
	var ie *InsufficientError
	switch {
	case err == nil:
		return "hold " + h.ID
	case errors.As(err, &ie):
		return "insufficient"
	default:
		return "error " + err.Error()
	}
}

// TestConcurrentDuplicatesAgree: identical requests sent at once get identical answers, and
// no part id is reserved twice.
func TestConcurrentDuplicatesAgree(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "dup", Shards: 8}, 60)
		var wg sync.WaitGroup
		var mu sync.Mutex
		disagree := 0
		var examples []string
		work := make(chan int)
		for range 16 {
			wg.Go(func() {
				for i := range work {
					req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "dup", Qty: int64(1 + i%4)}}, IdempotencyKey: fmt.Sprintf("trio-%d", i), Actor: "shop"}
					got := make([]string, 3)
					holds := make([]*Hold, 3)
					var trio sync.WaitGroup
					for j := range 3 {
						trio.Go(func() {
							h, err := e.Reserve(ctx, req)
							got[j], holds[j] = answer(h, err), h
						})
					}
					trio.Wait()
					if got[0] != got[1] || got[1] != got[2] {
						mu.Lock()
						disagree++
						if len(examples) < 5 {
							examples = append(examples, strings.Join(got, " / "))
						}
						mu.Unlock()
					}
					for _, h := range holds {
						if h != nil && i%3 == 0 {
							e.Release(ctx, h.ID, "shop")
							break
						}
					}
				}
			})
		}
		for i := range 300 {
			work <- i
		}
		close(work)
		wg.Wait()
		if disagree > 0 {
			t.Errorf("%d trios of identical requests got different answers, e.g. %v", disagree, examples)
		}
		reserved := map[string]int{}
		for _, evs := range checkInvariants(t, e) {
			for _, ev := range evs {
				if ev.Type == EventReserved {
					reserved[ev.Hold]++
				}
			}
		}
		for part, n := range reserved {
			if n > 1 {
				t.Errorf("part %s reserved %d times", part, n)
			}
		}
	})
}

// TestSameKeyOtherBody: a key names one request, whatever pool or customer another body
// with the same key names.
func TestSameKeyOtherBody(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "a", Shards: 1}, 10)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "b", Shards: 1}, 10)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "lim", Shards: 8, CustomerLimit: 3}, 80)
		mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "a", Qty: 1}}, IdempotencyKey: "k1", Actor: "shop"})
		_, err := e.Reserve(context.Background(), ReserveRequest{Items: []Item{{Location: "s1", SKU: "b", Qty: 1}}, IdempotencyKey: "k1", Actor: "shop"})
		wantErr(t, err, ErrIdempotencyMismatch)
		mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "lim", Qty: 1}}, Customer: "alice", IdempotencyKey: "k2", Actor: "shop"})
		for _, who := range []string{"bob", "carol", "dave", "erin", "frank"} {
			_, err := e.Reserve(context.Background(), ReserveRequest{Items: []Item{{Location: "s1", SKU: "lim", Qty: 1}}, Customer: who, IdempotencyKey: "k2", Actor: "shop"})
			wantErr(t, err, ErrIdempotencyMismatch)
		}
		a, _ := e.Availability(context.Background(), "s1", "b")
		l, _ := e.Availability(context.Background(), "s1", "lim")
		if a.Held != 0 || l.Held != 1 {
			t.Fatalf("refused requests hold units: b %d held, lim %d held (want 0 and 1)", a.Held, l.Held)
		}
	})
}

// TestFencedHomeShardKeepsKey: with the partition of a reservation's first part fenced, a
// retry of that reservation still gets its one hold (or is refused for now), never a second.
func TestFencedHomeShardKeepsKey(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "f", Shards: 8}, 80)
		var held int64
		for i, qty := range []int64{3, 15} { // on the home shard; gathered onto another
			req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "f", Qty: qty}}, IdempotencyKey: fmt.Sprint("k", i), Actor: "shop"}
			first := mustReserve(t, e, req)
			held += qty
			parts, _ := e.HoldParts(first.ID)
			if err := e.Fence(ctx, parts[0].Partition, "test"); err != nil {
				t.Fatal(err)
			}
			again, err := e.Reserve(ctx, req)
			if err == nil && again.ID != first.ID {
				t.Fatalf("retry with the first part's partition fenced placed a second hold %s (first %s)", again.ID, first.ID)
			}
			if err != nil && !errors.Is(err, ErrFenced) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("retry: %v", err)
			}
			e.Unfence(ctx, parts[0].Partition)
			a, _ := e.Availability(ctx, "s1", "f")
			if a.Held != held {
				t.Fatalf("%d units held, want %d", a.Held, held)
			}
		}
	})
}

// TestMultiPartCommitAllOrNothing: a commit racing a release of the same multi-part hold
// ends it one way: every part sold or every part given back.
func TestMultiPartCommitAllOrNothing(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "m", Shards: 4}, 0)
		mixed := 0
		for i := range 400 {
			if _, err := e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "m", Kind: Restock, Qty: 100, TransactionID: fmt.Sprint("po-", i), Actor: "v"}); err != nil {
				t.Fatal(err)
			}
			// A hold of several parts: ask for more than any one shard has.
			h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 100}}, IdempotencyKey: fmt.Sprintf("big-%d", i), Actor: "shop"})
			if len(h.Parts) < 2 {
				continue
			}
			var wg sync.WaitGroup
			wg.Go(func() { e.Commit(ctx, h.ID, "shop") })
			wg.Go(func() { e.Release(ctx, h.ID, "shop") })
			wg.Wait()
			got, err := e.GetHold(AnyOwner(ctx), h.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status == StatusMixed {
				mixed++
			}
		}
		if mixed > 0 {
			t.Fatalf("%d multi-part holds ended partly sold, partly released", mixed)
		}
	})
}

// TestSoldOutForgottenWhenUnitsReturn: a pool found empty is not refused from memory once a
// unit came back, whichever instance gave it back.
func TestSoldOutForgottenWhenUnitsReturn(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		a := newEngine(t, rdb, func(c *Config) { c.SoldOutMemory, c.MinTTL = 10*time.Second, 10*time.Second })
		cfg := a.Config()
		b, err := New(ctx, rdb, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		makePool(t, a, PoolConfig{Location: "s1", SKU: "one", Shards: 1}, 1)
		h := mustReserve(t, a, ReserveRequest{Items: []Item{{Location: "s1", SKU: "one", Qty: 1}}, IdempotencyKey: "first", Actor: "shop"})
		_, err = a.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "one", Qty: 1}}, IdempotencyKey: "second", Actor: "shop"})
		var ie *InsufficientError
		if !errors.As(err, &ie) {
			t.Fatalf("second reserve: %v, want insufficient", err)
		}
		if err := b.Release(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "one", Qty: 1}}, IdempotencyKey: "third", Actor: "shop"}); err != nil {
			t.Fatalf("a unit is free again, yet: %v", err)
		}
	})
}

// TestTransferAppliedOnce: a transfer whose source was never settled is not credited again
// once the destination's record of it is old.
func TestTransferAppliedOnce(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		clock := newFakeClock()
		e := newEngine(t, rdb, nil, clock.option())
		makePool(t, e, PoolConfig{Location: "s1", SKU: "x", Shards: 2}, 20)
		p, _ := e.pool(ctx, "s1", "x")
		if r, err := e.run(ctx, "transfer_out", p.partitions[0], clock.Ms(), "s1", "x", 0, 5, "xf", p.partitions[1], 1, "test"); err != nil || r.code() != "OK" {
			t.Fatalf("transfer_out: %v %v", r, err)
		}
		if r, err := e.run(ctx, "transfer_in", p.partitions[1], clock.Ms(), "s1", "x", 1, 5, "xf", p.partitions[0], 0, "test", e.cfg.IdempotencyTTL.Milliseconds()); err != nil || r.code() != "OK" {
			t.Fatalf("transfer_in: %v %v", r, err)
		}
		// The settle never ran; a long time passes and the sweeper forgets old records.
		clock.Advance(2 * e.cfg.IdempotencyTTL)
		for s := range p.partitions {
			if _, err := e.Sweep(ctx, p.partitions[s], 100, 10000); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.CompleteTransfers(ctx, p.partitions[0], "test"); err != nil {
			t.Fatal(err)
		}
		a, _ := e.Availability(ctx, "s1", "x")
		if a.Available != 20 {
			t.Fatalf("pool has %d units after one transfer, want 20", a.Available)
		}
	})
}

// TestGiveBacksMarked: a refused cart that had placed parts gives them back with events a
// consumer can tell from a customer's release.
func TestGiveBacksMarked(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "plenty", Shards: 1}, 100)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "none", Shards: 1}, 0)
		_, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "plenty", Qty: 1}, {Location: "s1", SKU: "none", Qty: 1}}, IdempotencyKey: "cart", Actor: "shop"})
		var ie *InsufficientError
		if !errors.As(err, &ie) {
			t.Fatalf("cart: %v", err)
		}
		n := countTypes(checkInvariants(t, e))
		if n[EventReleased] != 0 || n[EventReserved] != n[EventVoided] {
			t.Fatalf("a refused cart wrote %v: give-backs must be VOIDED, never RELEASED", n)
		}
	})
}

// faultyEngine builds an engine whose Redis connections go through a fault net (rules set by
// the test), with short deadlines so that lost replies are noticed quickly.
func faultyEngine(t *testing.T, rdb redis.UniversalClient, mod func(*Config)) (*Engine, *faultproxy.Net) {
	t.Helper()
	fc, n := testredis.Faulty(t, rdb, 300*time.Millisecond)
	e := newEngine(t, fc, func(c *Config) {
		c.RedisTimeout, c.IdempotencyLease = 300*time.Millisecond, time.Second
		if mod != nil {
			mod(c)
		}
	})
	testredis.CleanUpWith(t, rdb, e.Config().Prefix) // the proxy may be cut by then
	return e, n
}

// heldUnits sums the units held on a pool.
func heldUnits(t *testing.T, e *Engine, loc, sku string) int64 {
	t.Helper()
	a, err := e.Availability(context.Background(), loc, sku)
	if err != nil {
		t.Fatal(err)
	}
	return a.Held
}

// retryReserve sends req until it gets an answer other than "unavailable" or "in progress",
// as a client would, for up to 10 s.
func retryReserve(t *testing.T, e *Engine, req ReserveRequest) (*Hold, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := e.Reserve(context.Background(), req)
		if (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInProgress)) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return h, err
	}
}

// checkHoldStands fails unless every part of h is active and the pools hold exactly want.
func checkHoldStands(t *testing.T, e *Engine, h *Hold, loc string, want map[string]int64) {
	t.Helper()
	got, err := e.GetHold(AnyOwner(context.Background()), h.ID, "")
	if err != nil {
		t.Fatalf("hold %s: %v", h.ID, err)
	}
	if got.Status != StatusActive {
		t.Fatalf("hold %s the caller was given is %s: %+v", h.ID, got.Status, got.Parts)
	}
	for sku, n := range want {
		if held := heldUnits(t, e, loc, sku); held != n {
			t.Fatalf("%s: %d units held, want %d (the one hold's)", sku, held, n)
		}
	}
}

// TestLostAnswerNotCompensated: when the reply to the call that stores a reservation's
// answer is lost, the engine does not give the parts back behind the stored answer: the
// retry gets a hold that stands.
func TestLostAnswerNotCompensated(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		e, n := faultyEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "a", Shards: 1}, 10)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "b", Shards: 4}, 40)
		storing := func(c string) bool { return strings.HasSuffix(c, "_remember") || strings.HasSuffix(c, "_settle") }
		rule := n.Add(&faultproxy.Rule{Match: storing, Action: faultproxy.DropReply, Times: 1})
		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "a", Qty: 2}, {Location: "s1", SKU: "b", Qty: 15}}, IdempotencyKey: "cart", Actor: "shop"}
		_, err := e.Reserve(context.Background(), req)
		if rule.Hits() != 1 || err == nil {
			t.Fatalf("the answer's reply was not lost (hits %d, err %v)", rule.Hits(), err)
		}
		h, err := retryReserve(t, e, req)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		checkHoldStands(t, e, h, "s1", map[string]int64{"a": 2, "b": 15})
	})
}

// TestLibraryRetriesOff: a reserve whose reply is lost is not run again by the Redis client
// library (which would resend it after a network error), and the caller's retry gets one hold.
func TestLibraryRetriesOff(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		e, n := faultyEngine(t, rdb, nil)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "m", Shards: 4}, 40)
		reserving := func(c string) bool { return strings.HasSuffix(c, "_reserve") || strings.HasSuffix(c, "_reserve_batch") }
		n.Add(&faultproxy.Rule{Match: reserving, Action: faultproxy.DropReply, Times: 1})
		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 15}}, IdempotencyKey: "lost", Actor: "shop"}
		_, err := e.Reserve(context.Background(), req)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a lost reply must answer unavailable, got %v", err)
		}
		h, err := retryReserve(t, e, req)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		checkHoldStands(t, e, h, "s1", map[string]int64{"m": 15})
	})
}

// TestCrashedReservationTakenOver: a process that stops half-way through a reservation
// leaves no units held behind the retry's answer: the retry takes the request over once its
// lease lapses and answers with one hold.
func TestCrashedReservationTakenOver(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		dead, n := faultyEngine(t, rdb, nil)
		makePool(t, dead, PoolConfig{Location: "s1", SKU: "m", Shards: 4}, 40)
		reserving := func(c string) bool { return strings.HasSuffix(c, "_reserve") || strings.HasSuffix(c, "_reserve_batch") }
		// The second placement runs in Redis, then the process is gone: nothing it sends
		// after that arrives.
		var count int
		n.Add(&faultproxy.Rule{Match: reserving, Action: faultproxy.DropReply, Args: func([]string) bool { count++; return count == 2 },
			Times: 1, OnHit: n.Cut})
		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "m", Qty: 15}}, IdempotencyKey: "crash", Actor: "shop"}
		if _, err := dead.Reserve(context.Background(), req); err == nil {
			t.Fatal("the dying process answered")
		}
		alive, err := New(context.Background(), rdb, dead.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer alive.Close()
		h, err := retryReserve(t, alive, req)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		checkHoldStands(t, alive, h, "s1", map[string]int64{"m": 15})
	})
}

// TestCommitReleaseRace: a release that arrives while a multi-part commit is half-way
// leaves the hold all sold or all given back.
func TestCommitReleaseRace(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e, n := faultyEngine(t, rdb, func(c *Config) { c.RedisTimeout = 2 * time.Second; c.IdempotencyLease = 2 * time.Second })
		for _, sku := range []string{"m1", "m2", "m3"} {
			makePool(t, e, PoolConfig{Location: "s1", SKU: sku, Shards: 2}, 100)
		}
		h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m1", Qty: 5}, {Location: "s1", SKU: "m2", Qty: 5}, {Location: "s1", SKU: "m3", Qty: 5}}, IdempotencyKey: "cart", Actor: "shop"})
		parts, _ := e.HoldParts(h.ID)
		if len(parts) < 3 {
			t.Fatalf("hold %s has %d parts, want several", h.ID, len(parts))
		}
		late := parts[len(parts)-1].Part
		n.Add(&faultproxy.Rule{Match: faultproxy.Suffix("_commit"), Action: faultproxy.Stall, Delay: 150 * time.Millisecond, Times: 1,
			Args: func(a []string) bool { return strings.Contains(strings.Join(a, " "), late) }})
		var wg sync.WaitGroup
		var commitErr, releaseErr error
		wg.Go(func() { commitErr = e.Commit(ctx, h.ID, "shop") })
		time.Sleep(100 * time.Millisecond)
		wg.Go(func() { releaseErr = e.Release(ctx, h.ID, "shop") })
		wg.Wait()
		got, err := e.GetHold(AnyOwner(ctx), h.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusCommitted && got.Status != StatusReleased {
			t.Fatalf("commit (%v) racing release (%v) left the hold %s: %+v", commitErr, releaseErr, got.Status, got.Parts)
		}
		// An answer other than "unavailable" is true of the hold.
		if !errors.Is(commitErr, ErrUnavailable) && (commitErr == nil) != (got.Status == StatusCommitted) {
			t.Fatalf("commit answered %v, the hold is %s", commitErr, got.Status)
		}
		if !errors.Is(releaseErr, ErrUnavailable) && (releaseErr == nil) != (got.Status == StatusReleased) {
			t.Fatalf("release answered %v, the hold is %s", releaseErr, got.Status)
		}
	})
}

// TestWaitForReplicas: with FLASHHOLD_REDIS_WAIT_REPLICAS, a reservation is answered only
// once a replica has it; with the replica gone it is answered unavailable, and its retry,
// once the replica is back, gets the hold the primary kept.
func TestWaitForReplicas(t *testing.T) {
	t.Parallel()
	primary := testredis.StartServer(t)
	replica := testredis.StartReplica(t, primary)
	e := newEngine(t, primary.Client(t), func(c *Config) {
		c.RedisWaitReplicas, c.RedisWaitTimeout, c.RedisTimeout = 1, 200*time.Millisecond, time.Second
	})
	makeReplicatedPool(t, e, PoolConfig{Location: "s1", SKU: "w", Shards: 2, Vendor: "v1"}, 100)
	if _, err := retryReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "w", Qty: 1}}, IdempotencyKey: "while-replicated", Actor: "shop"}); err != nil {
		t.Fatalf("reserve while replicated: %v", err)
	}
	replica.Kill()
	req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "w", Qty: 60}}, IdempotencyKey: "unreplicated", Actor: "shop"}
	if _, err := e.Reserve(context.Background(), req); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with no replica: %v, want unavailable", err)
	}
	replica.Start()
	h, err := retryReserve(t, e, req)
	if err != nil {
		t.Fatalf("retry once the replica is back: %v", err)
	}
	checkHoldStands(t, e, h, "s1", map[string]int64{"w": 61})
}

// makeReplicatedPool makes a pool with stock on an engine that waits for replicas. Setting up
// is not under test: a replica just started, or on a loaded machine, may take longer than the
// wait to acknowledge, so the pool is made again (idempotent) until it is.
func makeReplicatedPool(t *testing.T, e *Engine, c PoolConfig, stock int64) {
	t.Helper()
	ctx := context.Background()
	var err error
	for try := 0; try < 20; try++ {
		if err = e.CreatePool(ctx, c, "test"); err == nil {
			_, err = e.Adjust(ctx, AdjustRequest{Location: c.Location, SKU: c.SKU, Kind: Restock, Qty: stock,
				TransactionID: "initial-" + c.SKU, Actor: "test"})
		}
		if !errors.Is(err, ErrUnavailable) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("make pool %s: %v", c.SKU, err)
	}
}

// TestWaitForReplicasOnCluster: on a Redis Cluster, WAIT counts the writes of its own
// connection only, so it must follow the writes to their node. With one master's replica
// gone, every reservation written to that master is answered unavailable, while another
// master's go on; once the replica is back, a refused reservation's retry gets the hold.
func TestWaitForReplicasOnCluster(t *testing.T) {
	t.Parallel()
	cl := testredis.StartReplicatedCluster(t, 3, 2*time.Second)
	e := newEngine(t, cl.Client(t), func(c *Config) {
		c.RedisWaitReplicas, c.RedisWaitTimeout, c.RedisTimeout = 1, 200*time.Millisecond, time.Second
	})
	ctx := context.Background()
	master := func(p int) *testredis.Server {
		m, err := cl.MasterOf(ctx, e.ks.parts[p][0])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mk := func(c PoolConfig) { makeReplicatedPool(t, e, c, 100) }
	mk(PoolConfig{Location: "s1", SKU: "victim", Shards: 1, Vendor: "v1"})
	victimPool, _ := e.pool(ctx, "s1", "victim")
	victim := master(victimPool.partitions[0])
	other := ""
	for i := 0; other == ""; i++ {
		sku := fmt.Sprint("other-", i)
		mk(PoolConfig{Location: "s1", SKU: sku, Shards: 1, Vendor: "v1"})
		if p, _ := e.pool(ctx, "s1", sku); master(p.partitions[0]) != victim {
			other = sku
		}
	}
	// A reservation also writes its key's record, on the record's partition: keys whose
	// record lives on the victim are refused whatever pool they name.
	keys := func(n int, onVictim bool) []string {
		var out []string
		for i := 0; len(out) < n; i++ {
			k := fmt.Sprint(onVictim, "-", i)
			if (master(e.keyPartition(e.token("shop", k))) == victim) == onVictim {
				out = append(out, k)
			}
		}
		return out
	}
	replica, err := cl.ReplicaOf(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := retryReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "victim", Qty: 1}}, IdempotencyKey: "while-replicated", Actor: "shop"}); err != nil {
		t.Fatalf("reserve while replicated: %v", err)
	}
	replica.Kill()
	var refused []ReserveRequest
	elsewhere := keys(12, false)
	for _, k := range elsewhere[:8] {
		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "victim", Qty: 2}}, IdempotencyKey: k, Actor: "shop"}
		if _, err := e.Reserve(ctx, req); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("reserve %s on the master without its replica: %v, want unavailable", k, err)
		}
		refused = append(refused, req)
	}
	for _, k := range elsewhere[8:] {
		if _, err := retryReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: other, Qty: 1}}, IdempotencyKey: k, Actor: "shop"}); err != nil {
			t.Fatalf("reserve %s on a master with its replica: %v", k, err)
		}
	}
	for _, k := range keys(2, true) {
		req := ReserveRequest{Items: []Item{{Location: "s1", SKU: other, Qty: 1}}, IdempotencyKey: k, Actor: "shop"}
		if _, err := e.Reserve(ctx, req); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("reserve %s, whose key record is on the master without its replica: %v, want unavailable", k, err)
		}
	}
	replica.Start()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.WaitReplicated(wctx, 3); err != nil {
		t.Fatal(err)
	}
	h, err := retryReserve(t, e, refused[0])
	if err != nil {
		t.Fatalf("retry once the replica is back: %v", err)
	}
	checkHoldStands(t, e, h, "s1", map[string]int64{"victim": 1 + 2*int64(len(refused))})
}

// TestClusterFailoverServes: once a cluster has promoted a dead master's replica, the
// engine finds it at once: its commands are never resent by the client (see once), so
// nothing else would make the client ask the cluster where its slots went until its next
// periodic reload (a minute).
func TestClusterFailoverServes(t *testing.T) {
	t.Parallel()
	cl := testredis.StartReplicatedCluster(t, 3, time.Second)
	e := newEngine(t, cl.Client(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "f", Shards: 1}, 100)
	p, _ := e.pool(ctx, "s1", "f")
	victim, err := cl.MasterOf(ctx, e.ks.parts[p.partitions[0]][0])
	if err != nil {
		t.Fatal(err)
	}
	mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "f", Qty: 1}}, IdempotencyKey: "before", Actor: "shop"})
	// What is under test is finding the promoted replica, not losing writes it never got
	// (replication is asynchronous here): the replica catches up before its master dies.
	replica, err := cl.ReplicaOf(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the replica has its master's writes", func() bool {
		return replOffset(ctx, victim.Addr) <= replOffset(ctx, replica.Addr)
	})
	victim.Kill()
	testwait.Until(t, 20*time.Second, "the cluster promotes the replica", func() bool { return cl.Promoted(ctx, victim) })
	promoted := time.Now()
	req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "f", Qty: 1}}, IdempotencyKey: "after", Actor: "shop"}
	for {
		_, err := e.Reserve(ctx, req)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Since(promoted) > 10*time.Second {
			t.Fatalf("%s after the promotion: %v", time.Since(promoted).Round(time.Millisecond), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("served %s after the promotion", time.Since(promoted).Round(time.Millisecond))
}

// replOffset is the replication offset a Redis node has reached (-1 when it cannot say).
func replOffset(ctx context.Context, addr string) int64 {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// TestCommitPastGraceNamesWhatWasSold: a commit decided, then cut off after its first part
// (the process stopped) and retried only after the other parts expired, cannot sell them
// any more; its answer names exactly which parts were sold, as the hold's state shows.
func TestCommitPastGraceNamesWhatWasSold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	e := newEngine(t, testredisStandalone(t), nil, clock.option())
	for _, sku := range []string{"m1", "m2", "m3"} {
		makePool(t, e, PoolConfig{Location: "s1", SKU: sku, Shards: 2}, 40)
	}
	h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "m1", Qty: 5}, {Location: "s1", SKU: "m2", Qty: 5}, {Location: "s1", SKU: "m3", Qty: 5}}, IdempotencyKey: "cart",
		Actor: "shop", TTL: time.Minute})
	hr, err := e.parseHold(ctx, h.ID, "shop")
	if err != nil || len(hr.refs) < 3 {
		t.Fatalf("hold %s: %v", h.ID, err)
	}
	// The first attempt: decided, first part committed, then nothing more.
	if r, err := e.holdEnd(ctx, hr, "commit", "first"); err != nil || r.code() != "START" {
		t.Fatalf("commit: %v %v", r, err)
	}
	if r, err := e.holdEnd(ctx, hr, "decided", "first"); err != nil || r.code() != "OK" {
		t.Fatalf("decided: %v %v", r, err)
	}
	first := hr.key.part(hr.refs[0])
	if r, err := e.run(ctx, "commit", hr.refs[0].Partition, e.nowMs(), first, "shop", int64(3600_000), "shop"); err != nil || r.code() != "OK" {
		t.Fatalf("commit of %s: %v %v", first, r, err)
	}
	clock.Advance(2 * time.Minute) // the other parts expire
	err = e.Commit(ctx, h.ID, "shop")
	if !errors.Is(err, ErrPartialCommit) {
		t.Fatalf("retry past the expiry: %v, want a partial commit", err)
	}
	_, said, _ := strings.Cut(err.Error(), "sold ")
	said, _, _ = strings.Cut(said, ";") // the parts the answer names as sold
	got, _ := e.GetHold(AnyOwner(ctx), h.ID, "")
	for i, p := range got.Parts {
		part := hr.key.part(hr.refs[i])
		if (p.Status == StatusCommitted) != (i == 0) || (p.Status == StatusCommitted) != strings.Contains(said, part) {
			t.Fatalf("part %s is %s; the answer said: %v", part, p.Status, err)
		}
	}
	if got.Status != StatusMixed {
		t.Fatalf("hold %s, want MIXED", got.Status)
	}
	t.Log(err)
}
