package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/engine"
)

// Store reads and writes the ledger tables.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore wraps a pool whose search_path holds the ledger schema.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

var eventColumns = []string{"partition", "seq", "type", "location", "sku", "shard", "delta", "available_after",
	"held_delta", "hold", "qty", "customer", "idem", "actor", "reason", "ts", "prev_hash", "hash",
	"version", "expires_at"}

func eventRow(ev *engine.Event) []any {
	return []any{ev.Partition, ev.Seq, ev.Type, ev.Location, ev.SKU, ev.Shard, ev.Delta, ev.After, ev.HeldDelta,
		ev.Hold, ev.Qty, ev.Customer, ev.Idem, ev.Actor, ev.Reason, ev.TS, ev.PrevHash, ev.Hash, eventVersion(ev), ev.ExpiresAt}
}

// eventVersion is the version an event is stored with (an event built without one is of the
// current version).
func eventVersion(ev *engine.Event) int {
	if ev.Version == 0 {
		return engine.EventVersion
	}
	return ev.Version
}

// Write modes: COPY, or multi-row INSERT … ON CONFLICT DO NOTHING.
const (
	ModeCopy   = "copy"
	ModeInsert = "insert"
)

// DeadLetter is a stream entry that could not be decoded.
type DeadLetter struct {
	Partition int
	StreamID  string
	Payload   map[string]any
	Err       string
}

// Fork is a partition whose stream contradicts the ledger: the same seq with another hash,
// or an event that does not continue (or is not continued by) the ledger's chain.
type Fork struct {
	Partition int
	Seq       int64
	Kind      string // conflict, predecessor, successor, genesis, chain
	Detail    string
}

// AppendResult is what one Append did.
type AppendResult struct {
	Inserted    int64 // new rows; events already in the ledger with the same hash are skipped
	Duplicates  int64
	Forks       []Fork
	DeadLetters int64
}

type ledgerRow struct {
	hash, prev string
}

// Append writes events (each partition's in seq order) and dead letters in one transaction.
// First it reads, inside the transaction, the ledger rows around the batch (per partition,
// from one before its first event to one after its last) and checks every event against them:
// the same seq with another hash, a prev_hash that is not the ledger's previous hash, or a
// ledger successor that does not point back at it. A partition with any contradiction is left
// out whole and reported in Forks: never written, never overwriting. Events the ledger
// already holds with the same hash are skipped; the rest are written by COPY or by multi-row
// INSERT … ON CONFLICT DO NOTHING, straight into inventory_events.
//
// Another transaction may hold rows of the batch uncommitted while Append reads (a commit
// its writer stopped waiting for, still finishing in Postgres): COPY then waits for it and
// fails on the primary key once it commits. Append then runs once more, and its reads see
// those rows.
func (s *Store) Append(ctx context.Context, events []engine.Event, dead []DeadLetter, mode string) (AppendResult, error) {
	res, err := s.append(ctx, events, dead, mode)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == uniqueViolation {
		return s.append(ctx, events, dead, mode)
	}
	return res, err
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

func (s *Store) append(ctx context.Context, events []engine.Event, dead []DeadLetter, mode string) (AppendResult, error) {
	var res AppendResult
	if mode != ModeCopy && mode != ModeInsert {
		return res, fmt.Errorf("ledger: unknown write mode %q (want copy or insert)", mode)
	}
	forked := map[int]Fork{}
	checkBatch(events, forked)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("ledger: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	have, err := neighbours(ctx, tx, events)
	if err != nil {
		return res, err
	}
	fresh := make([]engine.Event, 0, len(events))
	for i := range events {
		ev := &events[i]
		if _, bad := forked[ev.Partition]; bad {
			continue
		}
		if f, ok := contradiction(ev, have); ok {
			forked[ev.Partition] = f
			continue
		}
		if _, dup := have[key{ev.Partition, ev.Seq}]; !dup {
			fresh = append(fresh, *ev)
		}
	}
	if len(forked) > 0 { // drop what a forked partition had before its contradiction was seen
		kept := fresh[:0]
		for _, ev := range fresh {
			if _, bad := forked[ev.Partition]; !bad {
				kept = append(kept, ev)
			}
		}
		fresh = kept
	}
	if res.Inserted, err = write(ctx, tx, fresh, mode); err != nil {
		return res, err
	}
	if res.Inserted < int64(len(fresh)) {
		// Another writer got some rows in first (INSERT skipped them): they must be the same.
		again, err := neighbours(ctx, tx, fresh)
		if err != nil {
			return res, err
		}
		for i := range fresh {
			if r, ok := again[key{fresh[i].Partition, fresh[i].Seq}]; ok && r.hash != fresh[i].Hash {
				forked[fresh[i].Partition] = Fork{fresh[i].Partition, fresh[i].Seq, "conflict", "ledger has hash " + r.hash + ", stream has " + fresh[i].Hash}
			}
		}
		if len(forked) > 0 {
			return res, fmt.Errorf("ledger: a concurrent writer stored different events; retrying")
		}
	}
	for _, f := range forked {
		res.Forks = append(res.Forks, f)
		if _, err := tx.Exec(ctx, `INSERT INTO integrity_alarms (partition, seq, kind, detail) VALUES ($1, $2, $3, $4)`,
			f.Partition, f.Seq, f.Kind, f.Detail); err != nil {
			return res, fmt.Errorf("ledger: record alarm: %w", err)
		}
	}
	for _, d := range dead {
		payload, _ := json.Marshal(d.Payload)
		tag, err := tx.Exec(ctx, `INSERT INTO dead_letters (partition, stream_id, payload, error) VALUES ($1, $2, $3, $4)
			ON CONFLICT (partition, stream_id) DO NOTHING`, d.Partition, d.StreamID, payload, d.Err)
		if err != nil {
			return res, fmt.Errorf("ledger: dead letter: %w", err)
		}
		res.DeadLetters += tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("ledger: commit: %w", err)
	}
	for i := range events {
		if _, bad := forked[events[i].Partition]; !bad {
			res.Duplicates++
		}
	}
	res.Duplicates -= res.Inserted
	return res, nil
}

type key struct {
	partition int
	seq       int64
}

// neighbours reads the ledger rows in each partition's range around the events: one range
// query per partition, all in one round trip. A query on one partition's seq range can only
// be answered well by the primary key's index, and the planner sees that whatever the
// table's statistics say; one join of all the ranges let fresh statistics of a large ledger
// pick a hash join over a sequential scan (under a fifth of the append rate at 400,000 rows,
// TestLedgerGrowth), and stale ones the same once the plan was cached (TestLedgerPlanTrap).
func neighbours(ctx context.Context, tx pgx.Tx, events []engine.Event) (map[key]ledgerRow, error) {
	lo, hi := map[int]int64{}, map[int]int64{}
	var order []int
	for _, ev := range events {
		l, ok := lo[ev.Partition]
		if !ok {
			order = append(order, ev.Partition)
		}
		if !ok || ev.Seq-1 < l {
			lo[ev.Partition] = ev.Seq - 1
		}
		hi[ev.Partition] = max(hi[ev.Partition], ev.Seq+1)
	}
	have := map[key]ledgerRow{}
	if len(order) == 0 {
		return have, nil
	}
	var b pgx.Batch
	for _, p := range order {
		b.Queue(`SELECT seq, hash, prev_hash FROM inventory_events WHERE partition = $1 AND seq BETWEEN $2 AND $3`,
			int32(p), lo[p], hi[p])
	}
	br := tx.SendBatch(ctx, &b)
	defer br.Close()
	for _, p := range order {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("ledger: read neighbours: %w", err)
		}
		for rows.Next() {
			k := key{partition: p}
			var r ledgerRow
			if err := rows.Scan(&k.seq, &r.hash, &r.prev); err != nil {
				rows.Close()
				return nil, err
			}
			have[k] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("ledger: read neighbours: %w", err)
		}
	}
	return have, br.Close()
}

// contradiction checks one event against the ledger rows next to it.
func contradiction(ev *engine.Event, have map[key]ledgerRow) (Fork, bool) {
	if r, ok := have[key{ev.Partition, ev.Seq}]; ok && r.hash != ev.Hash {
		return Fork{ev.Partition, ev.Seq, "conflict", "ledger has hash " + r.hash + ", stream has " + ev.Hash}, true
	}
	if r, ok := have[key{ev.Partition, ev.Seq - 1}]; ok && r.hash != ev.PrevHash {
		return Fork{ev.Partition, ev.Seq, "predecessor", fmt.Sprintf("prev_hash %s is not the ledger's hash %s of seq %d", ev.PrevHash, r.hash, ev.Seq-1)}, true
	}
	if r, ok := have[key{ev.Partition, ev.Seq + 1}]; ok && r.prev != ev.Hash {
		return Fork{ev.Partition, ev.Seq, "successor", fmt.Sprintf("ledger seq %d has prev_hash %s, not this event's hash %s", ev.Seq+1, r.prev, ev.Hash)}, true
	}
	return Fork{}, false
}

// checkBatch checks links inside the batch: the first event of a partition is genesis-linked
// when it is seq 1, and consecutive events link hash to prev_hash.
func checkBatch(events []engine.Event, forked map[int]Fork) {
	last := map[int]*engine.Event{}
	for i := range events {
		ev := &events[i]
		if ev.Seq == 1 && ev.PrevHash != engine.GenesisHash {
			forked[ev.Partition] = Fork{ev.Partition, ev.Seq, "genesis", "seq 1 does not start from the genesis hash"}
		}
		if prev := last[ev.Partition]; prev != nil && prev.Seq+1 == ev.Seq && ev.PrevHash != prev.Hash {
			if _, ok := forked[ev.Partition]; !ok {
				forked[ev.Partition] = Fork{ev.Partition, ev.Seq, "chain", "prev_hash does not match the previous event in the stream"}
			}
		}
		last[ev.Partition] = ev
	}
}

// maxParams is Postgres's limit on bind parameters in one statement.
const maxParams = 65535

// write stores events that are not in the ledger yet. COPY fails as a whole on a primary-key
// clash (another writer got there first; the batch is retried and then skips those rows);
// INSERT skips clashing rows and reports how many it wrote.
func write(ctx context.Context, tx pgx.Tx, events []engine.Event, mode string) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if mode == ModeCopy {
		return copyEvents(ctx, tx, events)
	}
	var total int64
	per := maxParams / len(eventColumns)
	for start := 0; start < len(events); start += per {
		chunk := events[start:min(start+per, len(events))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO inventory_events (" + strings.Join(eventColumns, ", ") + ") VALUES ")
		args := make([]any, 0, len(chunk)*len(eventColumns))
		for i := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for c := range eventColumns {
				if c > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, "$%d", len(args)+c+1)
			}
			sb.WriteByte(')')
			args = append(args, eventRow(&chunk[i])...)
		}
		sb.WriteString(" ON CONFLICT (partition, seq) DO NOTHING")
		tag, err := tx.Exec(ctx, sb.String(), args...)
		if err != nil {
			return total, fmt.Errorf("ledger: insert: %w", err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// RestoreRows writes events back into the ledger where a row is missing or was altered
// (reconciliation's repair, from the stream's verified copies). Each event must hash to its
// hash; rows are replaced whole.
func (s *Store) RestoreRows(ctx context.Context, events []engine.Event) error {
	for i := range events {
		if events[i].ComputeHash() != events[i].Hash {
			return fmt.Errorf("ledger: restore %d/%d: the event does not match its hash", events[i].Partition, events[i].Seq)
		}
	}
	batch := &pgx.Batch{}
	sets := make([]string, 0, len(eventColumns))
	for _, c := range eventColumns[2:] {
		sets = append(sets, c+" = EXCLUDED."+c)
	}
	ph := make([]string, len(eventColumns))
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	q := `INSERT INTO inventory_events (` + strings.Join(eventColumns, ", ") + `) VALUES (` + strings.Join(ph, ", ") + `)
		ON CONFLICT (partition, seq) DO UPDATE SET ` + strings.Join(sets, ", ")
	for i := range events {
		batch.Queue(q, eventRow(&events[i])...)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("ledger: restore rows: %w", err)
	}
	return nil
}

// SyncRegions writes the regions read reads (from Redis) into the ledger's copy. It removes
// none: a Redis that lost its data has no regions, and its copy must survive that
// (DeleteRegion marks one deleted). A region deleted after read began is not brought back:
// the time is taken from Postgres before read runs.
func (s *Store) SyncRegions(ctx context.Context, read func(context.Context) ([]engine.Region, error)) error {
	var at time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&at); err != nil {
		return fmt.Errorf("ledger: sync regions: %w", err)
	}
	regions, err := read(ctx)
	if err != nil || len(regions) == 0 {
		return err
	}
	batch := &pgx.Batch{}
	for _, r := range regions {
		doc, _ := json.Marshal(r)
		batch.Queue(`INSERT INTO regions (name, doc) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc, deleted_at = NULL, updated_at = now()
			WHERE (regions.deleted_at IS NULL AND regions.doc IS DISTINCT FROM EXCLUDED.doc) OR regions.deleted_at < $3`,
			r.Name, doc, at)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("ledger: sync regions: %w", err)
	}
	return nil
}

// DeleteRegion marks a region deleted in the ledger's copy.
func (s *Store) DeleteRegion(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE regions SET deleted_at = clock_timestamp() WHERE name = $1`, name); err != nil {
		return fmt.Errorf("ledger: delete region: %w", err)
	}
	return nil
}

// Regions lists the regions the ledger holds.
func (s *Store) Regions(ctx context.Context) ([]engine.Region, error) {
	rows, err := s.pool.Query(ctx, `SELECT doc FROM regions WHERE deleted_at IS NULL ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("ledger: read regions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (engine.Region, error) {
		var r engine.Region
		err := row.Scan(&r)
		return r, err
	})
}

// SyncPools copies pool configuration (and its vendors and locations) into Postgres.
func (s *Store) SyncPools(ctx context.Context, pools []engine.PoolConfig) error {
	if len(pools) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	vendors, locations := map[string]bool{}, map[[2]string]bool{}
	for _, p := range pools {
		if !vendors[p.Vendor] {
			vendors[p.Vendor] = true
			batch.Queue(`INSERT INTO vendors (id) VALUES ($1) ON CONFLICT DO NOTHING`, p.Vendor)
		}
		if l := [2]string{p.Location, p.Vendor}; !locations[l] {
			locations[l] = true
			batch.Queue(`INSERT INTO locations (id, vendor_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.Location, p.Vendor)
		}
		batch.Queue(`INSERT INTO pools (location, sku, vendor_id, shards, low_stock, customer_limit, best_before, substitutes, safety_stock,
			  customer_window_ms, inventory_policy, backorder_limit, release_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (location, sku) DO UPDATE SET vendor_id = EXCLUDED.vendor_id, shards = EXCLUDED.shards,
			  low_stock = EXCLUDED.low_stock, customer_limit = EXCLUDED.customer_limit,
			  best_before = EXCLUDED.best_before, substitutes = EXCLUDED.substitutes,
			  safety_stock = EXCLUDED.safety_stock, customer_window_ms = EXCLUDED.customer_window_ms,
			  inventory_policy = EXCLUDED.inventory_policy, backorder_limit = EXCLUDED.backorder_limit,
			  release_at = EXCLUDED.release_at, updated_at = now()`,
			p.Location, p.SKU, p.Vendor, p.Shards, p.LowStock, p.CustomerLimit, p.BestBefore, append([]string{}, p.Substitutes...),
			p.SafetyStock, p.CustomerWindow, p.Policy, p.BackorderLimit, p.ReleaseAt)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("ledger: sync pools: %w", err)
	}
	return nil
}
