package guardrails

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound: no such quarantined change (for this vendor).
var ErrNotFound = errors.New("quarantined change not found")

// ErrDecided: the quarantined change was approved, rejected or found stale before.
var ErrDecided = errors.New("quarantined change already decided")

// Store keeps vendors' limits and their quarantined changes in Postgres (migration 00014).
type Store struct {
	pool     *pgxpool.Pool
	defaults Limits
}

// NewStore returns a store over pool; vendors without limits of their own get defaults.
func NewStore(pool *pgxpool.Pool, defaults Limits) *Store {
	return &Store{pool: pool, defaults: defaults}
}

// Limits reads vendor's limits, and whether they are its own (not the defaults).
func (s *Store) Limits(ctx context.Context, vendor string) (Limits, bool, error) {
	var l Limits
	err := s.pool.QueryRow(ctx, `SELECT max_change, max_relative, ceiling, file_max_share, file_factor FROM vendor_guardrails
		WHERE vendor_id = $1`, vendor).Scan(&l.MaxChange, &l.MaxRelative, &l.Ceiling, &l.FileMaxShare, &l.FileFactor)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.defaults, false, nil
	}
	if err != nil {
		return Limits{}, false, fmt.Errorf("guardrails of %s: %w", vendor, err)
	}
	return l, true, nil
}

// SetLimits stores vendor's own limits.
func (s *Store) SetLimits(ctx context.Context, vendor string, l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO vendor_guardrails (vendor_id, max_change, max_relative, ceiling, file_max_share, file_factor)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (vendor_id) DO UPDATE SET max_change = $2, max_relative = $3, ceiling = $4,
		file_max_share = $5, file_factor = $6, updated_at = now()`,
		vendor, l.MaxChange, l.MaxRelative, l.Ceiling, l.FileMaxShare, l.FileFactor)
	if err != nil {
		return fmt.Errorf("guardrails of %s: %w", vendor, err)
	}
	return nil
}

const itemCols = `id, vendor_id, location, sku, kind, qty, transaction_id, actor, reason, available_before, rule, status,
	created_at, decided_at, decided_by, new_available`

func scanItem(row pgx.Row) (Item, error) {
	var it Item
	err := row.Scan(&it.ID, &it.Vendor, &it.Location, &it.SKU, &it.Kind, &it.Qty, &it.TransactionID, &it.Actor, &it.Reason,
		&it.Before, &it.Rule, &it.Status, &it.Created, &it.Decided, &it.DecidedBy, &it.NewAvailable)
	return it, err
}

// Quarantine holds a change back. A change with the same transaction id quarantined before is
// returned as it stands (a retry gets the same answer).
func (s *Store) Quarantine(ctx context.Context, it Item) (Item, error) {
	out, err := scanItem(s.pool.QueryRow(ctx, `INSERT INTO quarantine
		(vendor_id, location, sku, kind, qty, transaction_id, actor, reason, available_before, rule)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (vendor_id, transaction_id) DO NOTHING
		RETURNING `+itemCols, it.Vendor, it.Location, it.SKU, it.Kind, it.Qty, it.TransactionID, it.Actor, it.Reason, it.Before, it.Rule))
	if errors.Is(err, pgx.ErrNoRows) {
		if prior, err := s.Find(ctx, it.Vendor, it.TransactionID); err != nil || prior != nil {
			return derefOr(prior), err
		}
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: %w", err)
	}
	return out, nil
}

func derefOr(it *Item) Item {
	if it == nil {
		return Item{}
	}
	return *it
}

// Find reads the quarantined change of vendor's transaction id, or nil.
func (s *Store) Find(ctx context.Context, vendor, tx string) (*Item, error) {
	it, err := scanItem(s.pool.QueryRow(ctx, `SELECT `+itemCols+` FROM quarantine WHERE vendor_id = $1 AND transaction_id = $2`, vendor, tx))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return &it, nil
}

// Get reads one of vendor's quarantined changes.
func (s *Store) Get(ctx context.Context, vendor string, id int64) (Item, error) {
	it, err := scanItem(s.pool.QueryRow(ctx, `SELECT `+itemCols+` FROM quarantine WHERE vendor_id = $1 AND id = $2`, vendor, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Item{}, ErrNotFound
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: %w", err)
	}
	return it, nil
}

// List reads vendor's quarantined changes with status (all when empty), newest first.
func (s *Store) List(ctx context.Context, vendor, status string, limit int) ([]Item, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+itemCols+` FROM quarantine WHERE vendor_id = $1 AND ($2 = '' OR status = $2)
		ORDER BY id DESC LIMIT $3`, vendor, status, limit)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) { return scanItem(r) })
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return out, nil
}

// Decide moves a pending change to status (approved, rejected or stale), by whom, with the
// pool's available count after an approval; ErrDecided when it was not pending any more.
func (s *Store) Decide(ctx context.Context, vendor string, id int64, status, by string, after *int64) (Item, error) {
	it, err := scanItem(s.pool.QueryRow(ctx, `UPDATE quarantine SET status = $3, decided_at = now(), decided_by = $4, new_available = $5
		WHERE vendor_id = $1 AND id = $2 AND status = 'pending' RETURNING `+itemCols, vendor, id, status, by, after))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.Get(ctx, vendor, id); err != nil {
			return Item{}, err
		}
		return Item{}, ErrDecided
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: %w", err)
	}
	return it, nil
}
