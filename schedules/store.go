package schedules

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound: no such schedule (for this vendor), or it was deleted.
var ErrNotFound = errors.New("schedule not found")

// Store keeps schedules and their runs in Postgres (migration 00012).
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const scheduleCols = `id, vendor_id, location, sku, kind, qty, cron, time_zone, ends_at, created_at, last_occurrence, last_result`

func scanSchedule(row pgx.Row) (Schedule, error) {
	var s Schedule
	err := row.Scan(&s.ID, &s.Vendor, &s.Location, &s.SKU, &s.Kind, &s.Qty, &s.Cron, &s.TimeZone, &s.EndsAt, &s.Created,
		&s.LastRun, &s.LastResult)
	return s, err
}

// Create stores a new schedule and returns it with its id and creation time.
func (st *Store) Create(ctx context.Context, s Schedule) (Schedule, error) {
	out, err := scanSchedule(st.pool.QueryRow(ctx, `INSERT INTO stock_schedules
		(vendor_id, location, sku, kind, qty, cron, time_zone, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		RETURNING `+scheduleCols, s.Vendor, s.Location, s.SKU, s.Kind, s.Qty, s.Cron, s.TimeZone, s.EndsAt))
	if err != nil {
		return Schedule{}, fmt.Errorf("schedules: create: %w", err)
	}
	return out, nil
}

// Get reads one of vendor's schedules.
func (st *Store) Get(ctx context.Context, vendor string, id int64) (Schedule, error) {
	s, err := scanSchedule(st.pool.QueryRow(ctx, `SELECT `+scheduleCols+` FROM stock_schedules
		WHERE id = $1 AND vendor_id = $2 AND deleted_at IS NULL`, id, vendor))
	if errors.Is(err, pgx.ErrNoRows) {
		return Schedule{}, ErrNotFound
	}
	if err != nil {
		return Schedule{}, fmt.Errorf("schedules: get %d: %w", id, err)
	}
	return s, nil
}

// List reads vendor's schedules (every vendor's when vendor is empty), oldest first.
func (st *Store) List(ctx context.Context, vendor string) ([]Schedule, error) {
	rows, err := st.pool.Query(ctx, `SELECT `+scheduleCols+` FROM stock_schedules
		WHERE deleted_at IS NULL AND ($1 = '' OR vendor_id = $1) ORDER BY id`, vendor)
	if err != nil {
		return nil, fmt.Errorf("schedules: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Schedule, error) { return scanSchedule(r) })
	if err != nil {
		return nil, fmt.Errorf("schedules: list: %w", err)
	}
	return out, nil
}

// Delete removes one of vendor's schedules: it runs no more; its runs are kept.
func (st *Store) Delete(ctx context.Context, vendor string, id int64) error {
	tag, err := st.pool.Exec(ctx, `UPDATE stock_schedules SET deleted_at = now()
		WHERE id = $1 AND vendor_id = $2 AND deleted_at IS NULL`, id, vendor)
	if err != nil {
		return fmt.Errorf("schedules: delete %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Record stores what came of an occurrence and moves the schedule past it. An occurrence
// recorded before (another instance, or the repeated hour when clocks go back) keeps its
// first record.
func (st *Store) Record(ctx context.Context, r Run) error {
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("schedules: record: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `INSERT INTO stock_schedule_runs
		(schedule_id, occurrence, occurred_at, transaction_id, result, previous_available, new_available, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (schedule_id, occurrence) DO NOTHING`,
		r.Schedule, r.Occurrence, r.OccurredAt, r.TransactionID, r.Result, r.Previous, r.New, r.Error); err != nil {
		return fmt.Errorf("schedules: record: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE stock_schedules SET last_occurrence = $2, last_result = $3
		WHERE id = $1 AND (last_occurrence IS NULL OR last_occurrence < $2)`, r.Schedule, r.OccurredAt, r.Result); err != nil {
		return fmt.Errorf("schedules: record: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("schedules: record: %w", err)
	}
	return nil
}

// Runs reads the latest runs of one of vendor's schedules, newest first, up to limit.
func (st *Store) Runs(ctx context.Context, vendor string, id int64, limit int) ([]Run, error) {
	if _, err := st.Get(ctx, vendor, id); err != nil {
		return nil, err
	}
	rows, err := st.pool.Query(ctx, `SELECT schedule_id, occurrence, occurred_at, ran_at, transaction_id, result,
		previous_available, new_available, error FROM stock_schedule_runs WHERE schedule_id = $1
		ORDER BY occurred_at DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("schedules: runs of %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) {
		var run Run
		err := r.Scan(&run.Schedule, &run.Occurrence, &run.OccurredAt, &run.RanAt, &run.TransactionID, &run.Result,
			&run.Previous, &run.New, &run.Error)
		return run, err
	})
	if err != nil {
		return nil, fmt.Errorf("schedules: runs of %d: %w", id, err)
	}
	return out, nil
}
