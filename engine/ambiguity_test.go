package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/testredis"
)

// ambiguityCase is one mutating operation: setup prepares its state (pools, a hold to act
// on), op makes the request the way a client would (it is sent again, with the same key,
// after an answer that says nothing), and check looks at the result.
type ambiguityCase struct {
	name  string
	setup func(t *testing.T, e *Engine) any
	op    func(e *Engine, state any) (any, error)
	// check is given the first definite answer; it checks the client's view of it.
	check func(t *testing.T, e *Engine, state, answer any)
	// units is what every pool must add up to (available + held + committed) at the end.
	units map[string]int64
}

func ambiguityCases() []ambiguityCase {
	ctx := context.Background()
	pools := func(t *testing.T, e *Engine) {
		makePool(t, e, PoolConfig{Location: "s1", SKU: "one", Shards: 1}, 20)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "hot", Shards: 4}, 40)
		makePool(t, e, PoolConfig{Location: "s1", SKU: "lim", Shards: 4, CustomerLimit: 5}, 40)
	}
	units := map[string]int64{"one": 20, "hot": 40, "lim": 40}
	reserve := func(items ...Item) func(*Engine, any) (any, error) {
		return func(e *Engine, _ any) (any, error) {
			return e.Reserve(ctx, ReserveRequest{Items: items, IdempotencyKey: "amb", Actor: "shop", Customer: "cu", TTL: time.Minute})
		}
	}
	holdStands := func(want map[string]int64) func(*testing.T, *Engine, any, any) {
		return func(t *testing.T, e *Engine, _, answer any) {
			h := answer.(*Hold)
			got, err := e.GetHold(ctx, h.ID, "shop")
			if err != nil || got.Status != StatusActive {
				t.Fatalf("the hold %s the client got: %v %+v", h.ID, err, got)
			}
			for sku, n := range want {
				if held := heldUnits(t, e, "s1", sku); held != n {
					t.Fatalf("%s: %d units held, the client's hold has %d", sku, held, n)
				}
			}
		}
	}
	placed := func(items ...Item) func(*testing.T, *Engine) any {
		return func(t *testing.T, e *Engine) any {
			pools(t, e)
			return mustReserve(t, e, ReserveRequest{Items: items, IdempotencyKey: "placed", Actor: "shop", Customer: "cu", TTL: time.Minute})
		}
	}
	ended := func(status string) func(*testing.T, *Engine, any, any) {
		return func(t *testing.T, e *Engine, state, _ any) {
			h := state.(*Hold)
			got, err := e.GetHold(ctx, h.ID, "shop")
			if err != nil || got.Status != status {
				t.Fatalf("hold %s after its %s was answered: %v %+v", h.ID, strings.ToLower(status), err, got)
			}
		}
	}
	cart := []Item{{Location: "s1", SKU: "one", Qty: 2}, {Location: "s1", SKU: "hot", Qty: 15}}
	return []ambiguityCase{
		{name: "reserve one shard", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: reserve(Item{Location: "s1", SKU: "one", Qty: 3}), check: holdStands(map[string]int64{"one": 3}), units: units},
		{name: "reserve gathered from shards", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: reserve(Item{Location: "s1", SKU: "hot", Qty: 25}), check: holdStands(map[string]int64{"hot": 25}), units: units},
		{name: "reserve limited", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: reserve(Item{Location: "s1", SKU: "lim", Qty: 4}), check: holdStands(map[string]int64{"lim": 4}), units: units},
		{name: "reserve cart", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: reserve(cart...), check: holdStands(map[string]int64{"one": 2, "hot": 15}), units: units},
		{name: "commit", setup: placed(Item{Location: "s1", SKU: "one", Qty: 3}),
			op: func(e *Engine, s any) (any, error) { return nil, e.Commit(ctx, s.(*Hold).ID, "shop") }, check: ended(StatusCommitted), units: units},
		{name: "commit cart", setup: placed(cart...),
			op: func(e *Engine, s any) (any, error) { return nil, e.Commit(ctx, s.(*Hold).ID, "shop") }, check: ended(StatusCommitted), units: units},
		{name: "release", setup: placed(Item{Location: "s1", SKU: "hot", Qty: 2}),
			op: func(e *Engine, s any) (any, error) { return nil, e.Release(ctx, s.(*Hold).ID, "shop") }, check: ended(StatusReleased), units: units},
		{name: "release cart", setup: placed(cart...),
			op: func(e *Engine, s any) (any, error) { return nil, e.Release(ctx, s.(*Hold).ID, "shop") }, check: ended(StatusReleased), units: units},
		{name: "extend", setup: placed(Item{Location: "s1", SKU: "one", Qty: 1}),
			op: func(e *Engine, s any) (any, error) { return e.Extend(ctx, s.(*Hold).ID, 10*time.Minute, "shop") },
			check: func(t *testing.T, e *Engine, s, answer any) {
				got, _ := e.GetHold(ctx, s.(*Hold).ID, "shop")
				if got.ExpiresAt != answer.(int64) || got.Status != StatusActive {
					t.Fatalf("extended to %d, the hold reads %+v", answer, got)
				}
			}, units: units},
		{name: "spoilage gathered from shards", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: func(e *Engine, _ any) (any, error) {
				return e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "hot", Kind: Spoilage, Qty: 25, TransactionID: "spoil", Actor: "v"})
			},
			check: func(t *testing.T, e *Engine, _, answer any) {
				if r := answer.(*AdjustResult); r.After != 15 || r.Before != 40 {
					t.Fatalf("answered %+v, want 40 -> 15", r)
				}
			}, units: map[string]int64{"one": 20, "hot": 15, "lim": 40}},
		{name: "restock", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: func(e *Engine, _ any) (any, error) {
				return e.Adjust(ctx, AdjustRequest{Location: "s1", SKU: "one", Kind: Restock, Qty: 5, TransactionID: "po", Actor: "v"})
			},
			check: func(t *testing.T, e *Engine, _, answer any) {
				if r := answer.(*AdjustResult); r.After != 25 {
					t.Fatalf("answered %+v, want 20 -> 25", r)
				}
			}, units: map[string]int64{"one": 25, "hot": 40, "lim": 40}},
		{name: "transfer", setup: func(t *testing.T, e *Engine) any { pools(t, e); return nil },
			op: func(e *Engine, _ any) (any, error) { return e.Transfer(ctx, "s1", "hot", 0, 1, 4, "xf-amb", "test") },
			check: func(t *testing.T, e *Engine, _, answer any) {
				if answer.(int64) != 4 {
					t.Fatalf("moved %v, want 4", answer)
				}
			}, units: units},
	}
}

// TestLostReplies: every mutating operation, with each Redis reply it gets lost in turn (the
// command ran; the engine never hears back). The client sends the request again with the
// same key until it gets an answer; that answer must be true, every pool must add up, every
// change must have written one event, and once every hold's time is up nothing is held
// but what was committed.
func TestLostReplies(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Parallel() // the backends' cases run side by side too
		for _, c := range ambiguityCases() {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel() // each case has its own engine, key prefix and proxy
				// How many Redis requests the operation makes when nothing is lost.
				n := lostReply(t, rdb, c, 0)
				if n == 0 {
					t.Fatal("the operation made no Redis request")
				}
				for i := 1; i <= n; i++ {
					lostReply(t, rdb, c, i)
				}
				t.Logf("%d replies lost in turn", n)
			})
		}
	})
}

// lostReply runs case c with the reply to the operation's i-th Redis request lost (0: none)
// and checks the outcome; it returns how many requests the first send of the operation made.
func lostReply(t *testing.T, rdb redis.UniversalClient, c ambiguityCase, i int) int {
	t.Helper()
	clock := newFakeClock()
	fc, n := testredis.Faulty(t, rdb, 300*time.Millisecond)
	cfg := testConfig(testredis.Prefix(t, fc))
	cfg.RedisTimeout, cfg.IdempotencyLease, cfg.SoldOutMemory = 300*time.Millisecond, 300*time.Millisecond, 0
	// A commit sent again waits (in real time) up to CommitGrace for the lost one; the fake
	// clock moves by less between sends, so the parts the commit extended stay held.
	cfg.CommitGrace = 1500 * time.Millisecond
	testredis.CleanUpWith(t, rdb, cfg.Prefix) // the proxy may be cut by then
	// Starting the engine is not under test: on a loaded machine its first round trips may
	// take longer than the short timeout the lost replies need, so it is tried again.
	var e *Engine
	for try := 1; ; try++ {
		var err error
		if e, err = New(context.Background(), fc, cfg, clock.option()); err == nil {
			break
		} else if try == 5 {
			t.Fatalf("new engine: %v", err)
		}
	}
	t.Cleanup(e.Close)
	state := c.setup(t, e)
	var count atomic.Int64
	n.Add(&faultproxy.Rule{Match: func(string) bool { return true }, Action: faultproxy.DropReply, Times: 1,
		Args: func([]string) bool { return count.Add(1) == int64(i) }})
	answer, err := c.op(e, state)
	requests := int(count.Load())
	n.Clear()
	for tries := 0; err != nil && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInProgress)); tries++ {
		if tries > 20 {
			t.Fatalf("lost reply %d: no answer after 20 sends: %v", i, err)
		}
		clock.Advance(time.Second) // the lost call's lease lapses: its request is taken over
		answer, err = c.op(e, state)
	}
	if err != nil {
		t.Fatalf("lost reply %d of %d: the request sent again answered %v", i, requests, err)
	}
	c.check(t, e, state, answer)
	// What follows reads and repairs through an engine of the same keyspace on the client
	// without the proxy and with the usual timeout: the checks must not hinge on the
	// 300 ms that makes a lost reply show quickly, on a machine busy with other tests.
	cfg = e.Config()
	cfg.RedisTimeout, cfg.IdempotencyLease = 5*time.Second, 5*time.Second
	e, err = New(context.Background(), rdb, cfg, clock.option())
	if err != nil {
		t.Fatalf("checking engine: %v", err)
	}
	t.Cleanup(e.Close)
	// A transfer cut off half-way is completed by the sweeper (after FLASHHOLD_TRANSFER_GRACE).
	for p := range e.Partitions() {
		if _, err := e.CompleteTransfers(context.Background(), p, "sweeper"); err != nil {
			t.Fatalf("lost reply %d: completing transfers: %v", i, err)
		}
	}
	events := checkInvariants(t, e) // chains, seqs, replay = counters, conservation
	reserved := map[string]int{}
	for _, evs := range events {
		for _, ev := range evs {
			if ev.Type == EventReserved {
				reserved[ev.Hold]++
			}
		}
	}
	for part, k := range reserved {
		if k != 1 {
			t.Fatalf("lost reply %d: part %s reserved %d times", i, part, k)
		}
	}
	// Once every hold's time is up, nothing is held; every pool adds up.
	clock.Advance(time.Hour)
	for p := range e.Partitions() {
		if _, err := e.Sweep(context.Background(), p, 1000, 0); err != nil {
			t.Fatal(err)
		}
	}
	for sku, want := range c.units {
		a, err := e.Availability(context.Background(), "s1", sku)
		if err != nil {
			t.Fatal(err)
		}
		if a.Held != 0 || a.Available+a.Committed != want {
			t.Fatalf("lost reply %d: %s ends %d available, %d held, %d sold; want %d in all, none held",
				i, sku, a.Available, a.Held, a.Committed, want)
		}
	}
	return requests
}
