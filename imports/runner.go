package imports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/internal/loop"
	"github.com/flashhold/flashhold/stockfile"
)

// Outcome is what became of one row.
type Outcome struct {
	Status        string // Applied, Unchanged, RowRejected or Quarantined
	Code, Message string // why it was rejected or quarantined
	QuarantineID  int64
}

// Apply applies a batch of vendor's changes as the vendor API would apply each (the pool must
// be the vendor's; guardrails may quarantine a change), the changes of any one pool in the
// order given, and says what became of each: out[i] of reqs[i]. An error means some change
// could not be decided now (Redis unavailable, a partition fenced): the batch is sent again
// later, and what this attempt made is then replayed.
type Apply func(ctx context.Context, vendor string, reqs []engine.AdjustRequest) ([]Outcome, error)

// Pools is what the whole-file check reads of the engine.
type Pools interface {
	PoolsOf(ctx context.Context, keys []engine.PoolKey) ([]engine.PoolConfig, error)
	Availabilities(ctx context.Context, configs []engine.PoolConfig) ([]*engine.Availability, error)
	VendorPoolCount(ctx context.Context, vendor string) (int64, error)
}

// Limits reads a vendor's guardrails (for the whole-file check).
type Limits func(ctx context.Context, vendor string) (guardrails.Limits, error)

// Runner applies queued imports, one at a time per instance, any number of instances.
type Runner struct {
	store  *Store
	apply  Apply
	pools  Pools
	limits Limits
	cfg    Config
	log    zerolog.Logger
	owner  string

	rows    *prometheus.CounterVec
	yielded prometheus.Counter
	// pressed, when set, says that requests the import shares Redis with are waiting: the
	// runner then pauses between batches (WithYield).
	pressed func() bool
	// afterBatch, when set, is called after each batch is recorded (tests).
	afterBatch func(im *Import, next int64)
}

// Option changes a Runner.
type Option func(*Runner)

// WithOwner names the runner in its leases (default: this instance's id).
func WithOwner(owner string) Option { return func(r *Runner) { r.owner = owner } }

// WithFileCheck turns on the whole-file check: an import that would zero or multiply more of a
// vendor's pools than its guardrails allow is held for approval before anything is applied.
func WithFileCheck(pools Pools, limits Limits) Option {
	return func(r *Runner) { r.pools, r.limits = pools, limits }
}

// WithYield makes the runner yield to requests: while pressed reports them waiting or slow,
// it pauses after each batch for as long as the batch took, up to maxYield a batch.
func WithYield(pressed func() bool) Option { return func(r *Runner) { r.pressed = pressed } }

// maxYield bounds the pause after one batch, so an import always moves on.
const maxYield = 2 * time.Second

// AfterBatch calls f after each batch is recorded, with the next row to apply (tests).
func AfterBatch(f func(im *Import, next int64)) Option { return func(r *Runner) { r.afterBatch = f } }

// NewRunner returns a runner of store's imports, applying rows with apply.
func NewRunner(store *Store, apply Apply, cfg Config, log zerolog.Logger, opts ...Option) *Runner {
	r := &Runner{store: store, apply: apply, cfg: cfg, log: log, owner: loop.InstanceID(),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_import_rows_total",
			Help: "Rows of vendors' imports dealt with, by outcome (applied, unchanged, rejected, quarantined)."}, []string{"outcome"}),
		yielded: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_import_yield_seconds_total",
			Help: "Time imports paused between batches because API requests were waiting or slow."})}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds the runner's metrics to reg.
func (r *Runner) Register(reg prometheus.Registerer) error {
	if err := reg.Register(r.rows); err != nil {
		return err
	}
	return reg.Register(r.yielded)
}

// Run applies imports as they come until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	return loop.Run(ctx, r.cfg.Poll, r.cfg.Poll/2, func(ctx context.Context) error {
		for {
			did, err := r.RunOnce(ctx)
			if err != nil || !did {
				return err
			}
		}
	}, func(err error) { r.log.Warn().Err(err).Msg("import pass failed") })
}

// RunOnce takes the oldest import waiting, if any, and works on it until it is done, held or
// failed, or until it cannot go on now; it reports whether it took one.
func (r *Runner) RunOnce(ctx context.Context) (bool, error) {
	im, err := r.store.claim(ctx, r.owner, r.cfg.Lease)
	if err != nil || im == nil {
		return false, err
	}
	log := r.log.With().Str("import", im.ID).Str("vendor", im.Vendor).Logger()
	log.Info().Int64("rows", im.TotalRows).Int64("from_row", im.nextRow).Int("attempt", im.Attempts).Msg("import started")
	err = r.run(ctx, im)
	switch {
	case errors.Is(err, errLostLease):
		log.Warn().Msg("import taken over by another instance")
		return true, nil
	case errors.Is(err, errFile):
		log.Warn().Err(err).Msg("import failed")
		return true, r.store.finish(ctx, im, r.owner, Failed, err.Error())
	case err != nil:
		// Tried again after a pause; what was recorded stands.
		r.store.release(context.WithoutCancel(ctx), im, r.owner, r.cfg.Poll)
		return true, fmt.Errorf("import %s: %w", im.ID, err)
	}
	return true, nil
}

// errFile: the upload cannot be read (it was read whole when it came, so only a damaged
// store gets here).
var errFile = errors.New("the file cannot be read")

func (r *Runner) run(ctx context.Context, im *Import) error {
	if !im.fileChecked && r.limits != nil {
		stopRenewing := r.renewWhile(ctx, im)
		reason, err := r.checkFile(ctx, im)
		stopRenewing()
		if err != nil {
			return err
		}
		if reason != "" {
			r.log.Info().Str("import", im.ID).Str("reason", reason).Msg("import held for approval")
			return r.store.finish(ctx, im, r.owner, Held, reason)
		}
		if err := r.store.markChecked(ctx, im, r.owner); err != nil {
			return err
		}
	}
	upload := r.store.open(ctx, im.ID)
	rows, err := stockfile.NewReader(im.Format, upload)
	if err != nil {
		return upload.blame(err)
	}
	batch := make([]item, 0, r.cfg.Batch)
	for place := int64(1); ; place++ {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			if place-1 != im.TotalRows {
				return fmt.Errorf("%w: %d rows kept, %d when it came", errFile, place-1, im.TotalRows)
			}
			break
		}
		if err != nil {
			return upload.blame(err)
		}
		if place < im.nextRow {
			continue // done before a restart
		}
		batch = append(batch, item{place: place, Row: row})
		if len(batch) >= r.batchSize() {
			if err := r.applyBatch(ctx, im, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := r.applyBatch(ctx, im, batch); err != nil {
			return err
		}
	}
	if err := r.store.finish(ctx, im, r.owner, Done, ""); err != nil {
		return err
	}
	r.log.Info().Str("import", im.ID).Msg("import done")
	return nil
}

type item struct {
	place int64
	stockfile.Row
}

// applyBatch applies a batch's rows and records the batch. When a row could not be decided
// now, nothing of the batch is recorded: it is applied again later, and the rows it applied
// this time are then replayed, not applied twice.
func (r *Runner) applyBatch(ctx context.Context, im *Import, batch []item) error {
	out := make([]Outcome, len(batch))
	var reqs []engine.AdjustRequest
	var at []int // at[k]: the place in batch of reqs[k]
	for i, it := range batch {
		req, o := r.request(im, it)
		if o != nil {
			out[i] = *o
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	if len(reqs) > 0 {
		start := time.Now()
		stopRenewing := r.renewWhile(ctx, im)
		applied, err := r.apply(ctx, im.Vendor, reqs)
		stopRenewing()
		if err != nil {
			return err
		}
		for k, i := range at {
			out[i] = applied[k]
		}
		r.yield(ctx, time.Since(start))
	}
	var c Counts
	var reports []RowReport
	for i, o := range out {
		c.add(o.Status)
		r.rows.WithLabelValues(o.Status).Inc()
		if o.Status == RowRejected || o.Status == Quarantined {
			rep := RowReport{Row: int64(batch[i].N), Status: o.Status, Location: batch[i].Location, SKU: batch[i].SKU,
				Code: o.Code, Message: o.Message}
			if rep.SKU == "" {
				rep.SKU = batch[i].ItemID
			}
			if o.QuarantineID != 0 {
				rep.QuarantineID = &o.QuarantineID
			}
			reports = append(reports, rep)
		}
	}
	next := batch[len(batch)-1].place + 1
	if err := r.store.checkpoint(ctx, im, r.owner, r.cfg.Lease, next, c, reports); err != nil {
		return err
	}
	im.nextRow = next
	if r.afterBatch != nil {
		r.afterBatch(im, next)
	}
	return nil
}

// renewWhile renews im's lease every third of it until the returned function is called, so a
// batch or a whole-file check slower than the lease (sharded pools, guardrails, a slow Redis, a
// large file) keeps its import.
func (r *Runner) renewWhile(ctx context.Context, im *Import) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.Lease / renewEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := r.store.renew(ctx, im, r.owner, r.cfg.Lease); err != nil {
					r.log.Warn().Err(err).Str("import", im.ID).Msg("import lease not renewed")
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// pressedBatch is the batch while requests wait or run slow: a shorter burst of Redis work,
// which checkout requests wait behind for less.
const pressedBatch = 100

// batchSize is the rows to apply before recording progress: fewer while requests are pressed.
func (r *Runner) batchSize() int {
	if r.pressed != nil && r.pressed() {
		return min(r.cfg.Batch, pressedBatch)
	}
	return r.cfg.Batch
}

// yield pauses, while requests are waiting or slow, for as long as the batch took (at most
// maxYield), so that an import takes at most about half of what checkout needs.
func (r *Runner) yield(ctx context.Context, took time.Duration) {
	if r.pressed == nil || !r.pressed() {
		return
	}
	d := min(took, maxYield)
	select {
	case <-ctx.Done():
	case <-time.After(d):
		r.yielded.Add(d.Seconds())
	}
}

// request makes a row's change: its transaction id, unless it has its own, is the import's id
// and the row's number; its reason, unless it has its own, names the import and the row. A
// row that cannot be a change is rejected here (the outcome).
func (r *Runner) request(im *Import, it item) (engine.AdjustRequest, *Outcome) {
	if it.Err != nil {
		return engine.AdjustRequest{}, &Outcome{Status: RowRejected, Code: it.Err.Code, Message: it.Err.Message}
	}
	req, err := it.ToAdjust(im.Actor)
	if err != nil {
		var fe *stockfile.Error
		errors.As(err, &fe)
		return req, &Outcome{Status: RowRejected, Code: fe.Code, Message: fe.Message}
	}
	switch {
	case im.Mode == ModeSet && req.Kind != engine.Set:
		return req, &Outcome{Status: RowRejected, Code: "invalid", Message: "the feed's mode is set: a row gives stock_quantity"}
	case im.Mode == ModeDelta && req.Kind == engine.Set:
		return req, &Outcome{Status: RowRejected, Code: "invalid", Message: "the feed's mode is delta: a row gives change_type and quantity_change"}
	}
	if req.TransactionID == "" {
		req.TransactionID = im.ID + "-" + strconv.Itoa(it.N)
	}
	if req.Reason == "" {
		req.Reason = "import " + im.ID + " row " + strconv.Itoa(it.N)
		if feed, ok := strings.CutPrefix(im.Source, "feed:"); ok {
			req.Reason = "feed " + feed + " " + req.Reason
		}
	}
	return req, nil
}

// renewEvery is how often renewWhile renews a lease, as a share of the lease.
const renewEvery = 3

// checkFile reads the whole file and works out, pool by pool, what it would leave: it returns
// why it must be held when it would zero (from some units to none) or multiply (by the file
// factor or more) a larger share of the vendor's pools than the vendor's file_max_share.
func (r *Runner) checkFile(ctx context.Context, im *Import) (string, error) {
	l, err := r.limits(ctx, im.Vendor)
	if err != nil || l.FileMaxShare == 0 {
		return "", err
	}
	total, err := r.pools.VendorPoolCount(ctx, im.Vendor)
	if err != nil || total == 0 {
		return "", err
	}
	upload := r.store.open(ctx, im.ID)
	rows, err := stockfile.NewReader(im.Format, upload)
	if err != nil {
		return "", upload.blame(err)
	}
	// The file's changes of each pool in order, then each pool's count before and after them.
	changes := map[engine.PoolKey][]engine.AdjustRequest{}
	var keys []engine.PoolKey
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", upload.blame(err)
		}
		if row.Err != nil {
			continue
		}
		req, err := row.ToAdjust(im.Actor)
		if err != nil {
			continue
		}
		k := engine.PoolKey{Location: req.Location, SKU: req.SKU}
		if _, seen := changes[k]; !seen {
			keys = append(keys, k)
		}
		changes[k] = append(changes[k], req)
	}
	zeroed, multiplied := 0, 0
	const page = 1000
	for start := 0; start < len(keys); start += page {
		configs, err := r.pools.PoolsOf(ctx, keys[start:min(start+page, len(keys))])
		if err != nil {
			return "", err
		}
		mine := configs[:0]
		for _, c := range configs {
			if c.Vendor == im.Vendor {
				mine = append(mine, c)
			}
		}
		avail, err := r.pools.Availabilities(ctx, mine)
		if err != nil {
			return "", err
		}
		for _, a := range avail {
			before := a.Unsold() // what SET and the other changes work on
			after := before
			for _, req := range changes[engine.PoolKey{Location: a.Location, SKU: a.SKU}] {
				after = engine.After(req.Kind, req.Qty, after)
			}
			switch {
			case before > 0 && after <= 0:
				zeroed++
			case before > 0 && float64(after) >= l.Factor()*float64(before):
				multiplied++
			}
		}
	}
	share := float64(zeroed+multiplied) / float64(total)
	if share <= l.FileMaxShare {
		return "", nil
	}
	return fmt.Sprintf("file_max_share: it would zero %d and multiply by %g or more %d of the vendor's %d pools (%.0f%%), more than %.0f%%",
		zeroed, l.Factor(), multiplied, total, 100*share, 100*l.FileMaxShare), nil
}
