package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// TestLedgerGrowth measures how the ledger's hot paths hold up as it grows: the persister's
// append rate, a page of the events API (1,000 events after a cursor, unfiltered and for
// one vendor) and one hold's history, on an empty ledger and at FLASHHOLD_LEDGER_GROWTH
// rows (default "5000000,20000000"), each with statistics stale (analyzed while empty,
// autovacuum off) and fresh (ANALYZE). `make bench-ledger` runs it and writes
// docs/bench/ledger-growth.md (FLASHHOLD_LEDGER_GROWTH_OUT); unset, it is skipped.
func TestLedgerGrowth(t *testing.T) {
	spec := os.Getenv("FLASHHOLD_LEDGER_GROWTH")
	if spec == "" {
		t.Skip("FLASHHOLD_LEDGER_GROWTH is not set (make bench-ledger runs this)")
	}
	var sizes []int64
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			t.Fatalf("FLASHHOLD_LEDGER_GROWTH: %v", err)
		}
		sizes = append(sizes, n)
	}
	ctx := context.Background()
	pool := ledgerPool(t, 2)
	for _, q := range []string{
		`ALTER TABLE inventory_events SET (autovacuum_enabled = false)`,
		`INSERT INTO vendors (id) VALUES ('acme') ON CONFLICT DO NOTHING`,
		`INSERT INTO locations (id, vendor_id) VALUES ('s1', 'acme') ON CONFLICT DO NOTHING`,
		`INSERT INTO pools (location, sku, vendor_id, shards) VALUES ('s1', 'history', 'acme', 1), ('s1', 'bench', 'acme', 1)`,
		`ANALYZE`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s := NewStore(pool)
	next, heads := make([]int64, 16), make([]string, 16)
	for i := range heads {
		heads[i] = engine.GenesisHash
	}
	type row struct {
		rows                     int64
		stats                    string
		appendRate               float64
		page, vendorPage, holdMs float64
	}
	var out []row
	measure := func(rows int64, stats string) {
		r := row{rows: rows, stats: stats}
		for range 5 {
			start, n := time.Now(), 0
			for range 10 {
				res, err := s.Append(ctx, chainedEvents(2000, next, heads), nil, ModeCopy)
				if err != nil {
					t.Fatal(err)
				}
				n += int(res.Inserted)
			}
			r.appendRate = max(r.appendRate, float64(n)/time.Since(start).Seconds())
		}
		median := func(f func(i int) error) float64 {
			var ds []float64
			for i := range 21 {
				start := time.Now()
				if err := f(i); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, float64(time.Since(start).Microseconds())/1000)
			}
			slices.Sort(ds)
			return ds[len(ds)/2]
		}
		r.page = median(func(i int) error {
			_, err := s.Events(ctx, "", 16+i%48, rows/48/2, 1000)
			return err
		})
		r.vendorPage = median(func(i int) error {
			_, err := s.Events(ctx, "acme", 16+i%48, rows/48/2, 1000)
			return err
		})
		r.holdMs = median(func(i int) error {
			_, err := s.HoldEvents(ctx, "", []engine.PartID{{Partition: 16 + i%48, Part: fmt.Sprintf("h%d", (rows/2+int64(i)*7919)%max(rows, 1))}})
			return err
		})
		t.Logf("%d rows, statistics %s: append %.0f events/s, events page %.2f ms (vendor %.2f ms), hold history %.2f ms",
			rows, stats, r.appendRate, r.page, r.vendorPage, r.holdMs)
		out = append(out, r)
	}
	var have int64
	measure(0, "analyzed empty")
	for _, size := range sizes {
		start := time.Now()
		if _, err := pool.Exec(ctx, `INSERT INTO inventory_events (partition, seq, type, location, sku, shard, delta,
			available_after, held_delta, hold, qty, ts, prev_hash, hash)
			SELECT 16 + g % 48, g / 48 + 1, 'RESERVED', 's1', 'history', 0, -1, 0, 1, 'h' || g, 1, g, '', ''
			  FROM generate_series($1::bigint, $2::bigint - 1) AS g`, have, size); err != nil {
			t.Fatal(err)
		}
		t.Logf("ledger grown to %d rows in %v", size, time.Since(start).Round(time.Second))
		have = size
		measure(size, "stale (analyzed empty)")
		if _, err := pool.Exec(ctx, `ANALYZE inventory_events`); err != nil {
			t.Fatal(err)
		}
		measure(size, "fresh (ANALYZE)")
		// Back to the statistics of an empty table for the next size (as a superuser may).
		if _, err := pool.Exec(ctx, `UPDATE pg_class SET reltuples = 0, relpages = 0 WHERE oid = 'inventory_events'::regclass;
			DELETE FROM pg_statistic WHERE starelid = 'inventory_events'::regclass`); err != nil {
			t.Fatalf("resetting the statistics: %v", err)
		}
	}
	if dir := os.Getenv("FLASHHOLD_LEDGER_GROWTH_OUT"); dir != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "# Ledger growth\n\n`make bench-ledger` (FLASHHOLD_LEDGER_GROWTH=%s), run %s. Rows of other partitions' history are generated in Postgres (`INSERT … SELECT generate_series`), autovacuum off on `inventory_events`; \"stale\" statistics were taken while the table was empty, \"fresh\" right after an ANALYZE. Append: the persister's `Store.Append` of 10 batches of 2,000 events, best of 5 rounds. Page: `Store.Events` of 1,000 events after a cursor in the middle of a partition (what `GET /v1/inventory/events` runs), unfiltered and for one vendor; hold: `Store.HoldEvents` of one hold; medians of 21.\n\n",
			spec, time.Now().UTC().Format("2006-01-02 15:04 MST"))
		b.WriteString("| rows | statistics | append events/s | append vs empty | events page ms | vendor page ms | hold history ms |\n|---:|---|---:|---:|---:|---:|---:|\n")
		for _, r := range out {
			fmt.Fprintf(&b, "| %d | %s | %.0f | %.2f | %.2f | %.2f | %.2f |\n", r.rows, r.stats, r.appendRate, r.appendRate/out[0].appendRate, r.page, r.vendorPage, r.holdMs)
		}
		if err := os.WriteFile(filepath.Join(dir, "ledger-growth.md"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
