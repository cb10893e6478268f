package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

// TestQueuedPastExpiry: under load a reserve can wait in the coalescer past the expiry it
// was given when it arrived. It is answered ErrUnavailable without being sent, and the
// requests that share its round trip are served. Before, reserve_batch refused the whole
// call as malformed, and every request in it was answered 500.
func TestQueuedPastExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	direct := testredis.Standalone(t)
	fc, n := testredis.Faulty(t, direct, 5*time.Second)
	e := newEngine(t, fc, func(c *Config) { c.CoalesceWorkers, c.SoldOutMemory = 1, 0 }, clock.option())
	testredis.CleanUpWith(t, direct, e.Config().Prefix)
	makePool(t, e, PoolConfig{Location: "s1", SKU: "busy", Shards: 1}, 100)
	ctx := context.Background()
	reserve := func(key string) (*Hold, error) {
		return e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "busy", Qty: 1}}, IdempotencyKey: key, Actor: "shop", TTL: time.Second})
	}
	// The first round trip is held up, so the next requests queue behind it.
	slow := n.Add(&faultproxy.Rule{Match: faultproxy.Contains("_reserve"), Action: faultproxy.Delay, Delay: 500 * time.Millisecond, Times: 1})
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := reserve("first"); err != nil {
			t.Errorf("first: %v", err)
		}
	})
	waitUntil(t, func() bool { return slow.Hits() == 1 })
	var staleErr, freshErr error
	wg.Go(func() { _, staleErr = reserve("stale") })
	waitUntil(t, func() bool { return len(e.batchers.queue) == 1 })
	clock.Advance(2 * time.Second) // "stale" expired while it waited
	wg.Go(func() { _, freshErr = reserve("fresh") })
	waitUntil(t, func() bool { return len(e.batchers.queue) == 2 })
	wg.Wait()
	if freshErr != nil {
		t.Errorf("a request queued beside one past its expiry failed: %v", freshErr)
	}
	if !errors.Is(staleErr, ErrUnavailable) {
		t.Errorf("a request that waited past its expiry answered %v; want ErrUnavailable", staleErr)
	}
	for _, evs := range checkInvariants(t, e) {
		for _, ev := range evs {
			if ev.Type == EventReserved && ev.Idem == e.token("shop", "stale") {
				t.Errorf("the request past its expiry was placed: %+v", ev)
			}
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.Until(t, 5*time.Second, "the condition holds", cond)
}
