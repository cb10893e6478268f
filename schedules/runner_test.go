package schedules

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/ledger"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestRunnerAppliesOnce: two instances run one schedule; each occurrence changes the stock
// once, as an ordinary event whose reason names the schedule; after downtime only the latest
// missed occurrence is applied; every occurrence dealt with is recorded.
func TestRunnerAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := testengine.New(t, testredis.Standalone(t), nil)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "cap", Vendor: "v1", Shards: 2}, 10)
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st := NewStore(pool)
	s, err := st.Create(ctx, Schedule{Vendor: "v1", Location: "s1", SKU: "cap", Kind: engine.Restock, Qty: 5,
		Timing: Timing{Cron: "0 6 * * *", TimeZone: "Europe/Berlin"}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: s.Created.Add(-time.Minute)}
	cfg := Config{Interval: time.Second}
	one := NewRunner(e, st, cfg, zerolog.Nop(), WithClock(clk.Now), WithOwner("one"))
	two := NewRunner(e, st, cfg, zerolog.Nop(), WithClock(clk.Now), WithOwner("two"))
	available := func() int64 {
		a, err := e.Availability(ctx, "s1", "cap")
		if err != nil {
			t.Fatal(err)
		}
		return a.Available
	}
	pass := func(r *Runner) int {
		n, err := r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := pass(one) + pass(two); n != 0 || available() != 10 {
		t.Fatalf("before any occurrence: %d applied, %d available", n, available())
	}
	clk.Add(3 * 24 * time.Hour) // three occurrences missed
	if n := pass(one) + pass(two); n != 1 || available() != 15 {
		t.Fatalf("after three days: %d dealt with, %d available; want the latest occurrence once", n, available())
	}
	// An instance with a stale view (the lease lapsed mid-pass) applies the same occurrence:
	// its transaction id is the same, so nothing changes.
	stale := s
	if done, err := two.apply(ctx, &stale); err != nil || !done || available() != 15 {
		t.Fatalf("the same occurrence again: %v %v, %d available", done, err, available())
	}
	clk.Add(24 * time.Hour)
	pass(one)
	if available() != 20 {
		t.Fatalf("next day: %d available", available())
	}
	runs, err := st.Runs(ctx, "v1", s.ID, 10)
	if err != nil || len(runs) != 2 || runs[0].Result != Applied || runs[1].Result != Applied {
		t.Fatalf("runs %+v, %v", runs, err)
	}
	got, err := st.Get(ctx, "v1", s.ID)
	if err != nil || got.LastRun == nil || !got.LastRun.Equal(runs[0].OccurredAt) || got.LastResult != Applied {
		t.Fatalf("schedule after its runs: %+v, %v", got, err)
	}
	if _, err := st.Get(ctx, "v2", s.ID); err != ErrNotFound {
		t.Fatalf("another vendor's schedule: %v", err)
	}
}
