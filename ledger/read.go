package ledger

// The ledger's reads: what is persisted, and events by vendor, hold and partition.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/flashhold/flashhold/engine"
	"github.com/jackc/pgx/v5"
)

// Persisted returns the highest seq the ledger holds of each partition in parts (0 when it
// holds none): one index probe per partition, all in one query. Unlike Watermark it does not
// look for gaps below, which takes a scan of the partition's rows.
func (s *Store) Persisted(ctx context.Context, parts []int) (map[int]int64, error) {
	ps := make([]int32, len(parts))
	for i, p := range parts {
		ps[i] = int32(p)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT p, COALESCE((SELECT seq FROM inventory_events WHERE partition = p ORDER BY seq DESC LIMIT 1), 0)
		  FROM unnest($1::int[]) AS p`, ps)
	if err != nil {
		return nil, fmt.Errorf("ledger: persisted seqs: %w", err)
	}
	defer rows.Close()
	out := make(map[int]int64, len(parts))
	for rows.Next() {
		var p int32
		var seq int64
		if err := rows.Scan(&p, &seq); err != nil {
			return nil, fmt.Errorf("ledger: persisted seqs: %w", err)
		}
		out[int(p)] = seq
	}
	return out, rows.Err()
}

// Watermark returns the highest seq of partition p such that the ledger holds every event
// from 1 to it (0 when it lacks seq 1). It looks for the first gap from the partition's
// reconciliation checkpoint when the ledger row there is still the one verified (a clean run
// replayed every event up to it), else from seq 1: a scan of the rows after that point
// (about a second per million rows here). The persister asks once per partition it trims,
// and keeps the answer up to date itself afterwards.
func (s *Store) Watermark(ctx context.Context, p int) (int64, error) {
	var w int64
	err := s.pool.QueryRow(ctx, `
		WITH floor AS (
			SELECT COALESCE((SELECT c.seq FROM checkpoints c
			                   JOIN inventory_events v ON v.partition = c.partition AND v.seq = c.seq AND v.hash = c.hash
			                  WHERE c.partition = $1 AND c.seq > 0), 1) AS seq)
		SELECT COALESCE((
			SELECT e.seq FROM inventory_events e
			 WHERE e.partition = $1 AND e.seq >= (SELECT seq FROM floor)
			   AND NOT EXISTS (SELECT 1 FROM inventory_events n WHERE n.partition = $1 AND n.seq = e.seq + 1)
			 ORDER BY e.seq LIMIT 1), 0)
		 WHERE EXISTS (SELECT 1 FROM inventory_events x WHERE x.partition = $1 AND x.seq = (SELECT seq FROM floor))`, p).Scan(&w)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: watermark of partition %d: %w", p, err)
	}
	return w, nil
}

// Events reads up to limit events after (afterPartition, afterSeq) in (partition, seq) order;
// with a vendor, only that vendor's pools.
func (s *Store) Events(ctx context.Context, vendor string, afterPartition int, afterSeq int64, limit int) ([]engine.Event, error) {
	q := `SELECT ` + eventSelect + ` FROM inventory_events e`
	args := []any{afterPartition, afterSeq, limit}
	if vendor == "" {
		q += ` WHERE (e.partition, e.seq) > ($1, $2) ORDER BY e.partition, e.seq LIMIT $3`
		return s.queryEvents(ctx, s.pool, q, args...)
	}
	q += ` JOIN pools p ON p.location = e.location AND p.sku = e.sku AND p.vendor_id = $4
		WHERE (e.partition, e.seq) > ($1, $2) ORDER BY e.partition, e.seq LIMIT $3`
	args = append(args, vendor)
	// Walk the primary key in order, filtering by vendor, and never sort: without
	// statistics the join with pools is estimated at one row, and the planner sorted a
	// sequential scan of the whole ledger instead (TestVendorPageStaleStatistics).
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("ledger: events: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SET LOCAL enable_sort = off`); err != nil {
		return nil, fmt.Errorf("ledger: events: %w", err)
	}
	return s.queryEvents(ctx, tx, q, args...)
}

// querier runs a query: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// eventSelect is the column list queryEvents scans.
const eventSelect = `e.partition, e.seq, e.type, e.location, e.sku, e.shard, e.delta, e.available_after, e.held_delta,
	e.hold, e.qty, e.customer, e.idem, e.actor, e.reason, e.ts, e.prev_hash, e.hash, e.version, e.expires_at`

// queryEvents runs a query selecting eventSelect and scans its rows.
func (s *Store) queryEvents(ctx context.Context, db querier, q string, args ...any) ([]engine.Event, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: events: %w", err)
	}
	defer rows.Close()
	var out []engine.Event
	for rows.Next() {
		var ev engine.Event
		if err := rows.Scan(&ev.Partition, &ev.Seq, &ev.Type, &ev.Location, &ev.SKU, &ev.Shard, &ev.Delta, &ev.After,
			&ev.HeldDelta, &ev.Hold, &ev.Qty, &ev.Customer, &ev.Idem, &ev.Actor, &ev.Reason, &ev.TS, &ev.PrevHash, &ev.Hash,
			&ev.Version, &ev.ExpiresAt); err != nil {
			return nil, err
		}
		ev.LiftV1Expiry()
		out = append(out, ev)
	}
	return out, rows.Err()
}

// HoldEvents reads the events of a hold's parts in (partition, seq) order; with a vendor,
// only that vendor's pools.
func (s *Store) HoldEvents(ctx context.Context, vendor string, parts []engine.PartID) ([]engine.Event, error) {
	ids := make([]string, len(parts))
	want := make(map[engine.PartID]bool, len(parts))
	for i, hp := range parts {
		ids[i] = hp.Part
		want[hp] = true
	}
	// Only the hold index answers this (hold <> '' matches its predicate): with the
	// partitions in the query too, statistics taken on an empty ledger led the planner to
	// walk those partitions' whole range of the primary key (95 ms at 20M rows, against
	// 0.3 ms on the index). The partitions are checked here instead.
	q := `SELECT ` + eventSelect + ` FROM inventory_events e`
	args := []any{ids}
	if vendor != "" {
		q += ` JOIN pools p ON p.location = e.location AND p.sku = e.sku AND p.vendor_id = $2`
		args = append(args, vendor)
	}
	q += ` WHERE e.hold = ANY($1) AND e.hold <> '' ORDER BY e.partition, e.seq`
	evs, err := s.queryEvents(ctx, s.pool, q, args...)
	if err != nil {
		return nil, err
	}
	kept := evs[:0]
	for _, ev := range evs {
		if want[engine.PartID{Partition: ev.Partition, Part: ev.Hold}] {
			kept = append(kept, ev)
		}
	}
	return kept, nil
}

// TransfersWith reads the transfer events of other partitions than p whose other side is
// partition p (their reason starts "<p>/"), on the transfers' partial index.
func (s *Store) TransfersWith(ctx context.Context, p int) ([]engine.Event, error) {
	return s.queryEvents(ctx, s.pool, `SELECT `+eventSelect+` FROM inventory_events e
		WHERE e.type IN ('TRANSFER_OUT', 'TRANSFER_IN') AND e.reason LIKE $1 AND e.partition <> $2
		ORDER BY e.partition, e.seq`, strconv.Itoa(p)+"/%", p)
}

// TransfersIn reports which of the transfers ids partition p's ledger holds the
// TRANSFER_IN of (read on the partition's primary key).
func (s *Store) TransfersIn(ctx context.Context, p int, ids []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT idem FROM inventory_events WHERE partition = $1 AND type = 'TRANSFER_IN' AND idem = ANY($2)`, p, ids)
	if err != nil {
		return nil, fmt.Errorf("ledger: transfers into partition %d: %w", p, err)
	}
	in, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("ledger: transfers into partition %d: %w", p, err)
	}
	out := make(map[string]bool, len(in))
	for _, id := range in {
		out[id] = true
	}
	return out, nil
}

// PartitionEvents reads partition p's events with seq > after, up to limit, in seq order.
func (s *Store) PartitionEvents(ctx context.Context, p int, after int64, limit int) ([]engine.Event, error) {
	evs, err := s.Events(ctx, "", p, after, limit)
	if err != nil {
		return nil, err
	}
	for i, ev := range evs {
		if ev.Partition != p {
			return evs[:i], nil
		}
	}
	return evs, nil
}

// recentWindow bounds how far back PoolChanges looks in each partition: its last this many
// events (the ledger has no index by pool; the primary key is walked backwards).
const recentWindow = 50_000

// PoolChanges reads the latest events of a pool, newest first, at most limit, from the
// partitions its shards live in (parts), among each partition's last recentWindow events.
func (s *Store) PoolChanges(ctx context.Context, location, sku string, parts []int, limit int) ([]engine.Event, error) {
	var all []engine.Event
	for _, p := range parts {
		evs, err := s.queryEvents(ctx, s.pool, `SELECT `+eventSelect+` FROM inventory_events e
			WHERE e.partition = $1 AND e.location = $2 AND e.sku = $3
			AND e.seq > (SELECT coalesce(max(seq), 0) FROM inventory_events WHERE partition = $1) - $5
			ORDER BY e.seq DESC LIMIT $4`, p, location, sku, limit, recentWindow)
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].TS > all[j].TS })
	return all[:min(limit, len(all))], nil
}

// followSpan bounds how far past its cursor one FollowEvents call for a vendor looks for
// the first missing seq, so that a consumer far behind costs each page a bounded scan.
const followSpan = 10_000

// FollowEvents reads up to limit events of partition p after seq after, never past a seq the
// ledger lacks: a persister that died leaves its batch pending until another claims it,
// and meanwhile later events of the partition may be in the ledger already. A consumer that
// keeps the returned cursor (next) therefore never passes an event that arrives late. With
// a vendor, only that vendor's pools; next then also moves over other vendors' events.
// after must be 0 or the seq of an event the ledger holds. A seq the ledger lacks for good
// (reconciliation reports it as a gap) holds the cursor until it is repaired.
func (s *Store) FollowEvents(ctx context.Context, vendor string, p int, after int64, limit int) ([]engine.Event, int64, error) {
	// The last seq of the run of seqs with none missing that starts at after (at seq 1 from 0),
	// looked for as far as one page can reach: limit seqs, or followSpan for a vendor (whose
	// events may be few among others').
	span := int64(limit)
	if vendor != "" {
		span = followSpan
	}
	var upTo int64
	err := s.pool.QueryRow(ctx, `
		SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM inventory_events WHERE partition = $1 AND seq = GREATEST($2::bigint, 1)) THEN $2::bigint
		ELSE COALESCE((
			SELECT e.seq FROM inventory_events e
			 WHERE e.partition = $1 AND e.seq >= GREATEST($2::bigint, 1) AND e.seq < $2::bigint + $3::bigint
			   AND NOT EXISTS (SELECT 1 FROM inventory_events n WHERE n.partition = $1 AND n.seq = e.seq + 1)
			 ORDER BY e.seq LIMIT 1), $2::bigint + $3::bigint) END`, p, after, span).Scan(&upTo)
	if err != nil {
		return nil, after, fmt.Errorf("ledger: follow partition %d: %w", p, err)
	}
	if after > 0 && upTo == after {
		var known bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inventory_events WHERE partition = $1 AND seq = $2)`,
			p, after).Scan(&known); err != nil {
			return nil, after, fmt.Errorf("ledger: follow partition %d: %w", p, err)
		}
		if !known {
			return nil, after, ErrUnknownCursor
		}
	}
	if upTo <= after {
		return nil, after, nil
	}
	q := `SELECT ` + eventSelect + ` FROM inventory_events e`
	args := []any{p, after, upTo, limit}
	if vendor != "" {
		q += ` JOIN pools pl ON pl.location = e.location AND pl.sku = e.sku AND pl.vendor_id = $5`
		args = append(args, vendor)
	}
	q += ` WHERE e.partition = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4`
	evs, err := s.queryEvents(ctx, s.pool, q, args...)
	if err != nil {
		return nil, after, err
	}
	if len(evs) == limit {
		return evs, evs[len(evs)-1].Seq, nil
	}
	return evs, upTo, nil // every event up to upTo was read (or is another vendor's)
}

// ErrUnknownCursor: a follow cursor names a seq the ledger does not hold.
var ErrUnknownCursor = errors.New("no event at the cursor's seq")
