// Package imports applies vendors' large stock files in the background. An upload is kept
// whole in Postgres before it is answered, so any instance can apply it and a restart
// resumes it where it stopped; its rows are applied in batches, each row as an ordinary
// vendor change with a transaction id made from the import's id and the row's number, so a
// row applied before a crash is not applied again when its batch is. Each batch is recorded
// (counts, the rows not applied and why) with the place in the file to resume from.
package imports

import (
	"fmt"
	"time"
)

// Import statuses.
const (
	Queued  = "queued"  // waiting for an instance
	Running = "running" // being applied
	// Held: the whole-file check found it would zero or multiply too many of the vendor's
	// pools; it waits for the vendor or an admin to approve or reject it.
	Held     = "held"
	Done     = "done"
	Failed   = "failed"
	Rejected = "rejected" // held, then rejected: nothing was applied
)

// Modes of an import (a feed's): which rows it takes.
const (
	ModeSet   = "set"   // absolute counts: stock_quantity rows
	ModeDelta = "delta" // changes: change_type with quantity_change rows
)

// Outcomes of a row.
const (
	Applied     = "applied"
	Unchanged   = "unchanged" // a SET to the count the pool had
	RowRejected = "rejected"
	Quarantined = "quarantined"
)

// Import is one upload and how far it has come.
type Import struct {
	ID             string `json:"id"`
	Vendor         string `json:"vendor_id"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Format         string `json:"format"`
	// Source: "upload", or "feed:<id>" for a feed's run.
	Source string `json:"source"`
	// Mode: "" (any rows), set (stock_quantity rows only) or delta (change rows only).
	Mode       string `json:"mode,omitempty"`
	Actor      string `json:"actor"`
	Status     string `json:"status"`
	TotalRows  int64  `json:"total_rows"`
	Bytes      int64  `json:"bytes"`
	Counts            // applied, unchanged, rejected, quarantined
	HeldReason string `json:"held_reason,omitempty"`
	Error      string `json:"error,omitempty"`
	// Attempts: how many times an instance took it up (more than one after a restart).
	Attempts  int        `json:"attempts"`
	Created   time.Time  `json:"created_at"`
	Started   *time.Time `json:"started_at,omitempty"`
	Finished  *time.Time `json:"finished_at,omitempty"`
	DecidedBy string     `json:"decided_by,omitempty"`

	nextRow     int64
	fileChecked bool
}

// Counts are an import's rows by outcome.
type Counts struct {
	Applied     int64 `json:"applied"`
	Unchanged   int64 `json:"unchanged"`
	Rejected    int64 `json:"rejected"`
	Quarantined int64 `json:"quarantined"`
}

func (c *Counts) add(outcome string) {
	switch outcome {
	case Applied:
		c.Applied++
	case Unchanged:
		c.Unchanged++
	case RowRejected:
		c.Rejected++
	case Quarantined:
		c.Quarantined++
	}
}

// Done is how many rows were dealt with.
func (c Counts) Done() int64 { return c.Applied + c.Unchanged + c.Rejected + c.Quarantined }

// Progress is the share of the rows dealt with, 0..1.
func (im Import) Progress() float64 {
	if im.TotalRows == 0 {
		return 1
	}
	return float64(im.Done()) / float64(im.TotalRows)
}

// RowReport is a row that was not applied, and why.
type RowReport struct {
	Row          int64  `json:"row"`
	Status       string `json:"status"`
	Location     string `json:"location,omitempty"`
	SKU          string `json:"sku,omitempty"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	QuarantineID *int64 `json:"quarantine_id,omitempty"`
}

// Config is the import runner's configuration, and the limits of an upload.
type Config struct {
	// Workers: rows applied at once by one instance.
	Workers int
	// Batch: rows between two records of progress; a restart applies at most this many again
	// (each once: they are replayed).
	Batch int
	// Lease: how long an instance keeps an import without recording progress before another
	// may take it over.
	Lease time.Duration
	// Poll: how often an idle instance looks for imports.
	Poll time.Duration
	// MaxRows and MaxBytes bound one upload.
	MaxRows  int
	MaxBytes int64
	// UploadTimeout bounds receiving and keeping one upload.
	UploadTimeout time.Duration
	// Yield: pause between batches while API requests wait or run slow (WithYield).
	Yield bool
}

// DefaultConfig is the configuration when the environment sets nothing.
func DefaultConfig() Config {
	return Config{Workers: 32, Batch: 10000, Lease: 30 * time.Second, Poll: time.Second, MaxRows: 1_000_000,
		MaxBytes: 256 << 20, UploadTimeout: 5 * time.Minute, Yield: true}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Batch < 1:
		return fmt.Errorf("FLASHHOLD_IMPORT_WORKERS and FLASHHOLD_IMPORT_BATCH must be at least 1, got %d and %d", c.Workers, c.Batch)
	case c.Lease < time.Second:
		return fmt.Errorf("FLASHHOLD_IMPORT_LEASE must be at least 1s, got %s", c.Lease)
	case c.Poll <= 0:
		return fmt.Errorf("FLASHHOLD_IMPORT_POLL must be positive, got %s", c.Poll)
	case c.MaxRows < 1 || c.MaxBytes < 1:
		return fmt.Errorf("FLASHHOLD_IMPORT_MAX_ROWS and FLASHHOLD_IMPORT_MAX_BYTES must be at least 1, got %d and %d", c.MaxRows, c.MaxBytes)
	case c.UploadTimeout <= 0:
		return fmt.Errorf("FLASHHOLD_IMPORT_UPLOAD_TIMEOUT must be positive, got %s", c.UploadTimeout)
	}
	return nil
}
