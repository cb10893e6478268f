package ledger

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testpg"
)

// TestLedgerPlanTrap: the persister's append rate on a ledger of millions of rows whose
// statistics were taken while it was empty (autovacuum off, as on a server that never
// analyzes it) is within 20% of its rate on the empty ledger. Before, the query that reads
// the rows around a batch kept the generic plan Postgres settled on while the table was
// empty — a hash join over a sequential scan — and each batch read the whole table.
// FLASHHOLD_PLANTRAP_ROWS sets the ledger's size (default 2,000,000).
func TestLedgerPlanTrap(t *testing.T) {
	rows := 2_000_000
	if n, err := strconv.Atoi(os.Getenv("FLASHHOLD_PLANTRAP_ROWS")); err == nil {
		rows = n
	}
	ctx := context.Background()
	_, schema := testpg.Schema(t)
	cfg, err := PoolConfig(testpg.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 1 // every query on the one connection that prepared it
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE inventory_events SET (autovacuum_enabled = false)`, `ANALYZE inventory_events`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s := NewStore(pool)
	next, heads := make([]int64, 16), make([]string, 16)
	for i := range heads {
		heads[i] = engine.GenesisHash
	}
	// rate appends batches of 2,000 events (the persister's default batch) and returns the
	// best events per second of five rounds.
	rate := func() float64 {
		best := 0.0
		for range 5 {
			start, n := time.Now(), 0
			for range 10 {
				res, err := s.Append(ctx, chainedEvents(2000, next, heads), nil, ModeCopy)
				if err != nil || len(res.Forks) > 0 {
					t.Fatalf("append: %+v %v", res, err)
				}
				n += int(res.Inserted)
			}
			best = max(best, float64(n)/time.Since(start).Seconds())
		}
		return best
	}
	// A fresh ledger: the first passes carry an event or two, while the table is empty or
	// one page (Postgres settles on a generic plan after five executions of a statement).
	for range 10 {
		if _, err := s.Append(ctx, chainedEvents(1, next, heads), nil, ModeCopy); err != nil {
			t.Fatal(err)
		}
	}
	empty := rate()
	// Millions of rows of other partitions' history, the statistics still those of the
	// empty table.
	start := time.Now()
	if _, err := pool.Exec(ctx, `INSERT INTO inventory_events (partition, seq, type, location, sku, shard, delta,
		available_after, held_delta, qty, ts, prev_hash, hash)
		SELECT 16 + g % 48, g / 48 + 1, 'RESERVED', 's1', 'history', 0, -1, 0, 1, 1, 0, '', ''
		  FROM generate_series(0, $1::bigint - 1) AS g`, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows written in %v", rows, time.Since(start).Round(time.Millisecond))
	full := rate()
	t.Logf("append rate: %.0f events/s on the empty ledger, %.0f with %d rows (%.2f)", empty, full, rows, full/empty)
	if full < 0.8*empty {
		t.Fatalf("the append rate fell to %.2f of the empty ledger's with %d rows (%.0f against %.0f events/s)",
			full/empty, rows, full, empty)
	}
}
