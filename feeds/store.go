package feeds

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps feeds and their runs in Postgres (migration 00016).
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const feedCols = `id, vendor_id, url, format, mode, cron, time_zone, ends_at, actor, etag, last_modified, created_at,
	last_occurrence, last_result, last_import`

func scanFeed(row pgx.Row) (Feed, error) {
	var f Feed
	err := row.Scan(&f.ID, &f.Vendor, &f.URL, &f.Format, &f.Mode, &f.Cron, &f.TimeZone, &f.EndsAt, &f.Actor, &f.ETag,
		&f.LastModified, &f.Created, &f.LastRun, &f.LastResult, &f.LastImport)
	return f, err
}

// Create stores a new feed and returns it with its id and creation time.
func (s *Store) Create(ctx context.Context, f Feed) (Feed, error) {
	out, err := scanFeed(s.pool.QueryRow(ctx, `INSERT INTO feeds (vendor_id, url, format, mode, cron, time_zone, ends_at, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+feedCols,
		f.Vendor, f.URL, f.Format, f.Mode, f.Cron, f.TimeZone, f.EndsAt, f.Actor))
	if err != nil {
		return Feed{}, fmt.Errorf("feeds: create: %w", err)
	}
	return out, nil
}

// Get reads one of vendor's feeds.
func (s *Store) Get(ctx context.Context, vendor string, id int64) (Feed, error) {
	f, err := scanFeed(s.pool.QueryRow(ctx, `SELECT `+feedCols+` FROM feeds WHERE id = $1 AND vendor_id = $2
		AND deleted_at IS NULL`, id, vendor))
	if errors.Is(err, pgx.ErrNoRows) {
		return Feed{}, ErrNotFound
	}
	if err != nil {
		return Feed{}, fmt.Errorf("feeds: get %d: %w", id, err)
	}
	return f, nil
}

// List reads vendor's feeds (every vendor's when vendor is empty), oldest first.
func (s *Store) List(ctx context.Context, vendor string) ([]Feed, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+feedCols+` FROM feeds WHERE deleted_at IS NULL AND ($1 = '' OR vendor_id = $1)
		ORDER BY id`, vendor)
	if err != nil {
		return nil, fmt.Errorf("feeds: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Feed, error) { return scanFeed(r) })
	if err != nil {
		return nil, fmt.Errorf("feeds: list: %w", err)
	}
	return out, nil
}

// Delete stops one of vendor's feeds (its runs are kept).
func (s *Store) Delete(ctx context.Context, vendor string, id int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE feeds SET deleted_at = now() WHERE id = $1 AND vendor_id = $2 AND deleted_at IS NULL`, id, vendor)
	if err != nil {
		return fmt.Errorf("feeds: delete %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Record keeps what came of a run and moves the feed past its occurrence; an imported run
// also keeps the answer's ETag and Last-Modified, sent with the next fetch.
func (s *Store) Record(ctx context.Context, r Run, etag, lastModified string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO feed_runs (feed_id, occurrence, occurred_at, result, http_status, import_id, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (feed_id, occurrence) DO NOTHING`,
			r.Feed, r.Occurrence, r.OccurredAt, r.Result, r.HTTPStatus, r.ImportID, r.Error); err != nil {
			return fmt.Errorf("feeds: record run: %w", err)
		}
		_, err := tx.Exec(ctx, `UPDATE feeds SET last_occurrence = $2, last_result = $3,
			last_import = CASE WHEN $4 = '' THEN last_import ELSE $4 END,
			etag = CASE WHEN $3 = 'imported' THEN $5 ELSE etag END,
			last_modified = CASE WHEN $3 = 'imported' THEN $6 ELSE last_modified END
			WHERE id = $1 AND (last_occurrence IS NULL OR last_occurrence < $2)`,
			r.Feed, r.OccurredAt, r.Result, r.ImportID, etag, lastModified)
		if err != nil {
			return fmt.Errorf("feeds: record run: %w", err)
		}
		return nil
	})
}

// Runs reads a feed's runs, newest first, at most limit.
func (s *Store) Runs(ctx context.Context, id int64, limit int) ([]Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT feed_id, occurrence, occurred_at, ran_at, result, http_status, import_id, error
		FROM feed_runs WHERE feed_id = $1 ORDER BY occurred_at DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("feeds: runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) {
		var run Run
		err := r.Scan(&run.Feed, &run.Occurrence, &run.OccurredAt, &run.RanAt, &run.Result, &run.HTTPStatus, &run.ImportID, &run.Error)
		return run, err
	})
	if err != nil {
		return nil, fmt.Errorf("feeds: runs: %w", err)
	}
	return out, nil
}
