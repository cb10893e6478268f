package imports

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/stockfile"
)

// ErrNotFound: no such import (for this vendor).
var ErrNotFound = errors.New("import not found")

// ErrNotHeld: the import is not waiting for a decision.
var ErrNotHeld = errors.New("import is not held for approval")

// Store keeps imports, their uploads and their rejected rows in Postgres (migration 00015).
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const importCols = `id, vendor_id, coalesce(idempotency_key, ''), format, source, actor, status, total_rows, bytes, next_row,
	applied, unchanged, rejected, quarantined, file_checked, held_reason, error, attempts, created_at, started_at,
	finished_at, decided_by, mode`

func scanImport(row pgx.Row) (Import, error) {
	var im Import
	err := row.Scan(&im.ID, &im.Vendor, &im.IdempotencyKey, &im.Format, &im.Source, &im.Actor, &im.Status, &im.TotalRows,
		&im.Bytes, &im.nextRow, &im.Applied, &im.Unchanged, &im.Rejected, &im.Quarantined, &im.fileChecked, &im.HeldReason,
		&im.Error, &im.Attempts, &im.Created, &im.Started, &im.Finished, &im.DecidedBy, &im.Mode)
	return im, err
}

// chunkSize is how much of an upload one row of import_chunks keeps.
const chunkSize = 1 << 20

// Upload is a new import as its sender made it.
type Upload struct {
	Vendor, Actor, Format, Source string
	// IdempotencyKey: a second upload with the same key is answered with the first import.
	IdempotencyKey string
	// Mode: "" takes any rows; ModeSet only stock_quantity rows; ModeDelta only change rows.
	Mode string
	Body io.Reader
	// MaxRows and MaxBytes bound the file.
	MaxRows  int
	MaxBytes int64
}

// Create keeps an upload and queues it. The body is read once, as it streams in: its rows are
// counted and its form checked (a file that cannot be read is refused whole), and it is kept
// in chunks of 1 MiB, all in one transaction, so an import exists whole or not at all. An
// upload with the IdempotencyKey of an earlier one returns that one, and replayed true.
func (s *Store) Create(ctx context.Context, up Upload) (im Import, replayed bool, err error) {
	if up.IdempotencyKey != "" {
		if prior, err := s.byKey(ctx, up.Vendor, up.IdempotencyKey); err != nil || prior != nil {
			return derefOr(prior), prior != nil, err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Import{}, false, fmt.Errorf("imports: %w", err)
	}
	defer tx.Rollback(ctx)
	id := newID()
	var key *string
	if up.IdempotencyKey != "" {
		key = &up.IdempotencyKey
	}
	tag, err := tx.Exec(ctx, `INSERT INTO imports (id, vendor_id, idempotency_key, format, source, actor, status, total_rows, bytes, mode)
		VALUES ($1, $2, $3, $4, $5, $6, 'uploading', 0, 0, $7) ON CONFLICT (vendor_id, idempotency_key) DO NOTHING`,
		id, up.Vendor, key, up.Format, up.Source, up.Actor, up.Mode)
	if err != nil {
		return Import{}, false, fmt.Errorf("imports: %w", err)
	}
	if tag.RowsAffected() == 0 { // the same key, uploaded at the same time
		tx.Rollback(ctx)
		prior, err := s.byKey(ctx, up.Vendor, up.IdempotencyKey)
		return derefOr(prior), true, err
	}
	ch := &chunker{ctx: ctx, tx: tx, id: id}
	limited := &countingReader{r: up.Body, max: up.MaxBytes}
	rows, err := countRows(up.Format, io.TeeReader(limited, ch), up.MaxRows)
	// What stopped the reading first says what went wrong: the size, then Postgres, then the file.
	switch {
	case limited.err != nil:
		err = limited.err
	case ch.err != nil:
		err = ch.err
	case err == nil:
		err = ch.flush()
	}
	if err != nil {
		return Import{}, false, err
	}
	im, err = scanImport(tx.QueryRow(ctx, `UPDATE imports SET status = 'queued', total_rows = $2, bytes = $3 WHERE id = $1
		RETURNING `+importCols, id, rows, limited.n))
	if err != nil {
		return Import{}, false, fmt.Errorf("imports: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Import{}, false, fmt.Errorf("imports: %w", err)
	}
	return im, false, nil
}

func derefOr(im *Import) Import {
	if im == nil {
		return Import{}
	}
	return *im
}

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "imp_" + hex.EncodeToString(b)
}

// countRows reads a whole file and counts its rows (bad rows too: they are reported when the
// import is applied); a file whose form is broken, or with more than maxRows rows, is an error.
func countRows(format string, r io.Reader, maxRows int) (int64, error) {
	fr, err := stockfile.NewReader(format, r)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		_, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		if n++; n > int64(maxRows) {
			return 0, &stockfile.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_many_rows",
				Message: fmt.Sprintf("more than %d rows; at most %d per import", maxRows, maxRows)}
		}
	}
}

// countingReader counts what it reads, and refuses to read past max bytes (0: no limit).
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	if c.max > 0 && c.n > c.max {
		c.err = &stockfile.Error{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large",
			Message: fmt.Sprintf("the file is larger than %d bytes", c.max)}
		return 0, c.err
	}
	return k, err
}

// chunker writes what passes through it to import_chunks, a chunk at a time.
type chunker struct {
	ctx context.Context
	tx  pgx.Tx
	id  string
	buf []byte
	seq int
	err error
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.buf == nil {
			c.buf = make([]byte, 0, chunkSize)
		}
		k := min(len(p), chunkSize-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == chunkSize {
			if err := c.flush(); err != nil {
				c.err = err
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if _, err := c.tx.Exec(c.ctx, `INSERT INTO import_chunks (import_id, seq, data) VALUES ($1, $2, $3)`, c.id, c.seq, c.buf); err != nil {
		return fmt.Errorf("imports: keep upload: %w", err)
	}
	c.seq++
	c.buf = c.buf[:0]
	return nil
}

// chunkReader reads an upload back, a chunk at a time. err keeps the error of a read
// Postgres did not answer: the import is tried again, not failed (the file itself was read
// whole when it came).
type chunkReader struct {
	ctx  context.Context
	pool *pgxpool.Pool
	id   string
	seq  int
	cur  bytes.Reader
	err  error
}

func (s *Store) open(ctx context.Context, id string) *chunkReader {
	return &chunkReader{ctx: ctx, pool: s.pool, id: id}
}

// blame is the error of reading the upload through a file reader: Postgres's, when a read of
// it failed (tried again later), else the file's (errFile).
func (c *chunkReader) blame(err error) error {
	if c.err != nil {
		return c.err
	}
	return fmt.Errorf("%w: %w", errFile, err)
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.cur.Len() == 0 {
		var data []byte
		err := c.pool.QueryRow(c.ctx, `SELECT data FROM import_chunks WHERE import_id = $1 AND seq = $2`, c.id, c.seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, io.EOF
		}
		if err != nil {
			c.err = fmt.Errorf("imports: read upload: %w", err)
			return 0, c.err
		}
		c.seq++
		c.cur.Reset(data)
	}
	return c.cur.Read(p)
}

func (s *Store) byKey(ctx context.Context, vendor, key string) (*Import, error) {
	im, err := scanImport(s.pool.QueryRow(ctx, `SELECT `+importCols+` FROM imports WHERE vendor_id = $1 AND idempotency_key = $2
		AND status <> 'uploading'`, vendor, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imports: %w", err)
	}
	return &im, nil
}

// Get reads one of vendor's imports.
func (s *Store) Get(ctx context.Context, vendor, id string) (Import, error) {
	im, err := scanImport(s.pool.QueryRow(ctx, `SELECT `+importCols+` FROM imports WHERE id = $1 AND vendor_id = $2
		AND status <> 'uploading'`, id, vendor))
	if errors.Is(err, pgx.ErrNoRows) {
		return Import{}, ErrNotFound
	}
	if err != nil {
		return Import{}, fmt.Errorf("imports: %w", err)
	}
	return im, nil
}

// List reads vendor's imports, newest first, those created before the import before (all when
// empty), at most limit.
func (s *Store) List(ctx context.Context, vendor, before string, limit int) ([]Import, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+importCols+` FROM imports WHERE vendor_id = $1 AND status <> 'uploading'
		AND ($2 = '' OR (created_at, id) < (SELECT created_at, id FROM imports WHERE id = $2))
		ORDER BY created_at DESC, id DESC LIMIT $3`, vendor, before, limit)
	if err != nil {
		return nil, fmt.Errorf("imports: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Import, error) { return scanImport(r) })
	if err != nil {
		return nil, fmt.Errorf("imports: %w", err)
	}
	return out, nil
}

// Rows reads an import's rows that were not applied (status rejected or quarantined, all when
// empty), in file order after row after, at most limit.
func (s *Store) Rows(ctx context.Context, id, status string, after int64, limit int) ([]RowReport, error) {
	rows, err := s.pool.Query(ctx, `SELECT row_n, status, location, sku, code, message, quarantine_id FROM import_rows
		WHERE import_id = $1 AND ($2 = '' OR status = $2) AND row_n > $3 ORDER BY row_n LIMIT $4`, id, status, after, limit)
	if err != nil {
		return nil, fmt.Errorf("imports: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RowReport, error) {
		var rr RowReport
		err := r.Scan(&rr.Row, &rr.Status, &rr.Location, &rr.SKU, &rr.Code, &rr.Message, &rr.QuarantineID)
		return rr, err
	})
	if err != nil {
		return nil, fmt.Errorf("imports: %w", err)
	}
	return out, nil
}

// Decide approves (queues it to be applied, without the whole-file check) or rejects an import
// held for approval.
func (s *Store) Decide(ctx context.Context, vendor, id string, approve bool, by string) (Import, error) {
	status := Rejected
	if approve {
		status = Queued
	}
	im, err := scanImport(s.pool.QueryRow(ctx, `UPDATE imports SET status = $3, file_checked = true, decided_by = $4,
		finished_at = CASE WHEN $3 = 'rejected' THEN now() END
		WHERE id = $1 AND vendor_id = $2 AND status = 'held' RETURNING `+importCols, id, vendor, status, by))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.Get(ctx, vendor, id); err != nil {
			return Import{}, err
		}
		return Import{}, ErrNotHeld
	}
	if err != nil {
		return Import{}, fmt.Errorf("imports: %w", err)
	}
	if !approve {
		s.dropUpload(ctx, id)
	}
	return im, nil
}

func (s *Store) dropUpload(ctx context.Context, id string) {
	_, _ = s.pool.Exec(ctx, `DELETE FROM import_chunks WHERE import_id = $1`, id)
}

// claim takes the oldest import waiting to be applied (queued, or running under a lease that
// ran out: its instance stopped), for owner, until lease from now. A vendor's imports go one
// at a time, in the order they came: one waits while an older one of its vendor is queued,
// running or held for approval, so an older file never lands after a newer one.
func (s *Store) claim(ctx context.Context, owner string, lease time.Duration) (*Import, error) {
	im, err := scanImport(s.pool.QueryRow(ctx, `UPDATE imports SET status = 'running', owner = $1,
		lease_until = now() + $2::interval, started_at = coalesce(started_at, now()), attempts = attempts + 1
		WHERE id = (SELECT id FROM imports i WHERE status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < now())
			AND NOT EXISTS (SELECT 1 FROM imports o WHERE o.vendor_id = i.vendor_id AND o.status IN ('queued', 'running', 'held')
				AND (o.created_at, o.id) < (i.created_at, i.id))
			ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+importCols, owner, lease.String()))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imports: claim: %w", err)
	}
	return &im, nil
}

// errLostLease: another instance took the import over (this one was too slow to renew).
var errLostLease = errors.New("imports: lease lost")

// checkpoint records a batch done: rows below next are counted, the rows not applied kept,
// and the lease renewed.
func (s *Store) checkpoint(ctx context.Context, im *Import, owner string, lease time.Duration, next int64, c Counts, rows []RowReport) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE imports SET next_row = $3, applied = applied + $4, unchanged = unchanged + $5,
			rejected = rejected + $6, quarantined = quarantined + $7, lease_until = now() + $8::interval
			WHERE id = $1 AND owner = $2 AND status = 'running'`,
			im.ID, owner, next, c.Applied, c.Unchanged, c.Rejected, c.Quarantined, lease.String())
		if err != nil {
			return fmt.Errorf("imports: checkpoint: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errLostLease
		}
		if len(rows) == 0 {
			return nil
		}
		batch := &pgx.Batch{}
		for _, r := range rows {
			batch.Queue(`INSERT INTO import_rows (import_id, row_n, status, location, sku, code, message, quarantine_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
				im.ID, r.Row, r.Status, r.Location, r.SKU, r.Code, r.Message, r.QuarantineID)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("imports: checkpoint rows: %w", err)
		}
		return nil
	})
}

// finish ends an import: done, held (for approval) or failed; the upload of an import that
// will not run again is dropped.
func (s *Store) finish(ctx context.Context, im *Import, owner, status, reason string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE imports SET status = $3, held_reason = CASE WHEN $3 = 'held' THEN $4 ELSE held_reason END,
		error = CASE WHEN $3 = 'failed' THEN $4 ELSE error END, file_checked = file_checked OR $3 = 'held',
		finished_at = CASE WHEN $3 = 'held' THEN NULL ELSE now() END, lease_until = NULL
		WHERE id = $1 AND owner = $2 AND status = 'running'`, im.ID, owner, status, reason)
	if err != nil {
		return fmt.Errorf("imports: finish: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errLostLease
	}
	if status != Held {
		s.dropUpload(ctx, im.ID)
	}
	return nil
}

// markChecked records that the whole-file check passed.
func (s *Store) markChecked(ctx context.Context, im *Import, owner string) error {
	_, err := s.pool.Exec(ctx, `UPDATE imports SET file_checked = true WHERE id = $1 AND owner = $2`, im.ID, owner)
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	return nil
}

// renew extends owner's lease of a running import.
func (s *Store) renew(ctx context.Context, im *Import, owner string, lease time.Duration) error {
	tag, err := s.pool.Exec(ctx, `UPDATE imports SET lease_until = now() + $3::interval WHERE id = $1 AND owner = $2 AND status = 'running'`,
		im.ID, owner, lease.String())
	if err != nil {
		return fmt.Errorf("imports: renew: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errLostLease
	}
	return nil
}

// release gives up the lease of an import that could not go on now (Redis unavailable), so
// that it is tried again after retry.
func (s *Store) release(ctx context.Context, im *Import, owner string, retry time.Duration) {
	_, _ = s.pool.Exec(ctx, `UPDATE imports SET lease_until = now() + $3::interval WHERE id = $1 AND owner = $2 AND status = 'running'`,
		im.ID, owner, retry.String())
}
