package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestPoolSyncOnlyWhenChanged: the persister copies the pools into Postgres when they changed
// (a pool made or changed), not every interval: with 100,000 pools an unchanged copy was three
// statements a pool every 30 s, and one HGETALL of every pool that held Redis up meanwhile.
func TestPoolSyncOnlyWhenChanged(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	ctx := context.Background()
	cfg := persistConfig()
	cfg.SyncPoolsEvery = time.Millisecond
	p := NewPersister(e, s, cfg)
	makePool(t, e, "a", 1, 10)
	updated := func(sku string) time.Time {
		t.Helper()
		var at time.Time
		if err := s.pool.QueryRow(ctx, `SELECT updated_at FROM pools WHERE sku = $1`, sku).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	sync := func() {
		t.Helper()
		time.Sleep(2 * time.Millisecond) // past SyncPoolsEvery
		if err := p.syncPools(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	first := updated("a")
	sync()
	if again := updated("a"); !again.Equal(first) {
		t.Fatalf("an unchanged pool set was copied again (updated_at %s, then %s)", first, again)
	}
	makePool(t, e, "b", 1, 10)
	sync()
	if updated("b").IsZero() {
		t.Fatal("a new pool was not copied")
	}
}
