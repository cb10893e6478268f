package schedules

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// Config is the schedule runner's configuration.
type Config struct {
	// Interval between passes: an occurrence is applied within about this long of its time.
	Interval time.Duration
}

// DefaultConfig is the runner's configuration when the environment sets nothing.
func DefaultConfig() Config { return Config{Interval: 10 * time.Second} }

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Interval <= 0 {
		return fmt.Errorf("FLASHHOLD_SCHEDULE_INTERVAL must be positive, got %s", c.Interval)
	}
	return nil
}

// leaseName is the Redis lease one instance runs the schedules under.
const leaseName = "schedules"

// Runner applies the schedules' occurrences as they come due.
type Runner struct {
	eng   *engine.Engine
	store *Store
	cfg   Config
	log   zerolog.Logger
	owner string
	now   func() time.Time

	applied *prometheus.CounterVec
}

// Option changes a Runner.
type Option func(*Runner)

// WithClock makes the runner read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(r *Runner) { r.now = now } }

// WithOwner names the runner in its lease (default: this instance's id).
func WithOwner(owner string) Option { return func(r *Runner) { r.owner = owner } }

// NewRunner returns a runner of store's schedules on eng.
func NewRunner(eng *engine.Engine, store *Store, cfg Config, log zerolog.Logger, opts ...Option) *Runner {
	r := &Runner{eng: eng, store: store, cfg: cfg, log: log, owner: loop.InstanceID(), now: time.Now,
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_schedule_runs_total",
			Help: "Occurrences of vendors' stock schedules dealt with, by result (applied, replayed, failed)."}, []string{"result"})}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds the runner's metrics to reg.
func (r *Runner) Register(reg prometheus.Registerer) error { return reg.Register(r.applied) }

// Run runs passes every interval until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	return loop.Run(ctx, r.cfg.Interval, r.cfg.Interval, func(ctx context.Context) error {
		_, err := r.RunOnce(ctx)
		return err
	}, func(err error) { r.log.Warn().Err(err).Msg("schedule pass failed") })
}

// RunOnce applies, if this runner holds the lease, each schedule's latest occurrence due and
// not dealt with yet, and returns how many it dealt with.
func (r *Runner) RunOnce(ctx context.Context) (int, error) {
	held, err := r.eng.Lease(ctx, leaseName, r.owner, 2*r.cfg.Interval)
	if err != nil || !held {
		return 0, err
	}
	list, err := r.store.List(ctx, "")
	if err != nil {
		return 0, err
	}
	return loop.Each(list, func(x *Schedule) (bool, error) { return r.apply(ctx, x) })
}

// apply deals with s's latest occurrence due, if any: the stock change, then its record. A
// change Redis could not make now (unavailable, fenced) is tried again next pass; one it
// refused (the pool is gone, a bad count) is recorded as failed.
func (r *Runner) apply(ctx context.Context, s *Schedule) (bool, error) {
	now := r.now()
	after := s.Created
	if s.LastRun != nil {
		after = *s.LastRun
	}
	at, err := s.Due(after, now)
	if err != nil || at.IsZero() {
		return false, err
	}
	run := Run{Schedule: s.ID, Occurrence: s.OccurrenceKey(at), OccurredAt: at, TransactionID: s.transactionID(at)}
	res, err := r.eng.Adjust(ctx, engine.AdjustRequest{Location: s.Location, SKU: s.SKU, Kind: s.Kind, Qty: s.Qty,
		TransactionID: run.TransactionID, Actor: "schedule", Reason: fmt.Sprintf("schedule %d at %s %s", s.ID, run.Occurrence, s.TimeZone)})
	switch {
	case errors.Is(err, engine.ErrUnavailable) || errors.Is(err, engine.ErrFenced) || errors.Is(err, engine.ErrInProgress):
		return false, fmt.Errorf("schedule %d at %s: %w", s.ID, run.Occurrence, err)
	case err != nil:
		run.Result, run.Error = Failed, err.Error()
	case res.Replayed:
		run.Result = Replayed
	default:
		run.Result = Applied
	}
	if res != nil {
		run.Previous, run.New = &res.Before, &res.After
	}
	if err := r.store.Record(ctx, run); err != nil {
		return false, err
	}
	r.applied.WithLabelValues(run.Result).Inc()
	r.log.Info().Int64("schedule", s.ID).Str("occurrence", run.Occurrence).Str("result", run.Result).Str("error", run.Error).
		Msg("schedule ran")
	return true, nil
}
