package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/internal/loop"
)

// ScheduleConfig is the reconciliation run inside serve (package config reads it from the environment).
type ScheduleConfig struct {
	// Every is the interval between runs; 0 turns the scheduled run off.
	Every time.Duration
	// Dir, when set, receives each run's report.html, report.json and findings.csv.
	Dir string
	// TransferGrace: a transfer pending longer than this is reported half-done.
	TransferGrace time.Duration
}

// DefaultScheduleConfig leaves the scheduled reconciliation off.
func DefaultScheduleConfig() ScheduleConfig {
	return ScheduleConfig{TransferGrace: 30 * time.Second}
}

// Validate reports the first setting that cannot work.
func (c ScheduleConfig) Validate() error {
	if c.Every < 0 || c.TransferGrace < 0 {
		return fmt.Errorf("FLASHHOLD_RECONCILE_EVERY and FLASHHOLD_RECONCILE_TRANSFER_GRACE must not be negative, got %s and %s", c.Every, c.TransferGrace)
	}
	return nil
}

// Scheduler runs a reconciliation every interval, on one instance at a time (a lease), and
// exposes the last run's result as metrics. It never repairs: repair is an operator's act.
type Scheduler struct {
	rec   *Reconciler
	cfg   ScheduleConfig
	log   zerolog.Logger
	owner string
	// leaseTTL is how long the lease lasts unless renewed; a run renews it every third of it.
	leaseTTL time.Duration
	// during, when set, is called while a run holds the lease (tests hold a run there).
	during func()

	lastRun  prometheus.Gauge
	duration prometheus.Gauge
	events   prometheus.Gauge
	clean    prometheus.Gauge
	findings *prometheus.GaugeVec
	failures prometheus.Counter
}

// NewScheduler builds a scheduler over rec.
func NewScheduler(rec *Reconciler, cfg ScheduleConfig, log zerolog.Logger) *Scheduler {
	return &Scheduler{rec: rec, cfg: cfg, log: log, owner: loop.InstanceID(), leaseTTL: 15 * time.Second,
		lastRun:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashhold_reconcile_last_run_timestamp_seconds", Help: "When the last scheduled reconciliation finished."}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashhold_reconcile_last_run_duration_seconds", Help: "How long the last scheduled reconciliation took."}),
		events:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashhold_reconcile_last_run_events_replayed", Help: "Events the last scheduled reconciliation replayed."}),
		clean:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashhold_reconcile_last_run_clean", Help: "1 when the last scheduled reconciliation found nothing, else 0."}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashhold_reconcile_last_run_findings", Help: "Findings of the last scheduled reconciliation, by kind."}, []string{"kind"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_reconcile_failures_total", Help: "Scheduled reconciliations that could not run."}),
	}
}

// Register adds the scheduler's metrics to reg.
func (s *Scheduler) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.lastRun, s.duration, s.events, s.clean, s.findings, s.failures} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// leaseName is the lease that keeps scheduled runs to one instance.
const leaseName = "reconcile"

// Run reconciles every interval until ctx ends, the first time one interval after it starts.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.cfg.Every <= 0 {
		return nil
	}
	s.log.Info().Dur("every", s.cfg.Every).Msg("scheduled reconciliation on")
	return loop.RunAfter(ctx, s.cfg.Every, 0, func(ctx context.Context) error {
		_, err := s.RunOnce(ctx)
		return err
	}, func(err error) {
		s.failures.Inc()
		s.log.Error().Err(err).Msg("scheduled reconciliation failed")
	})
}

// RunOnce runs one reconciliation if this instance gets the lease; it returns nil (and no
// error) when another instance holds it. The run renews the lease while it goes on and stops
// if it loses it; an instance that dies mid-run holds the next runs off for one lease time.
func (s *Scheduler) RunOnce(ctx context.Context) (*Report, error) {
	ok, err := s.rec.eng.Lease(ctx, leaseName, s.owner, s.leaseTTL)
	if err != nil || !ok {
		return nil, err
	}
	defer s.rec.eng.ReleaseLease(context.WithoutCancel(ctx), leaseName, s.owner)
	ctx, stop := s.keepLease(ctx)
	defer stop()
	if s.during != nil {
		s.during()
	}
	rep, err := s.rec.Run(ctx, Options{TransferGrace: s.cfg.TransferGrace})
	if err != nil {
		return nil, err
	}
	s.lastRun.Set(float64(rep.FinishedAt.Unix()))
	s.duration.Set(rep.FinishedAt.Sub(rep.StartedAt).Seconds())
	s.events.Set(float64(rep.Events))
	s.clean.Set(0)
	if rep.Clean() {
		s.clean.Set(1)
	}
	s.findings.Reset()
	// Every kind has a series after a run (0 when not found), so an alert on one kind can
	// tell "none found" from "never ran".
	for _, kind := range Kinds {
		s.findings.WithLabelValues(kind).Set(0)
	}
	for kind, n := range rep.ByKind {
		s.findings.WithLabelValues(kind).Set(float64(n))
	}
	if s.cfg.Dir != "" {
		if err := rep.Write(s.cfg.Dir); err != nil {
			return rep, err
		}
	}
	ev := s.log.Info()
	if !rep.Clean() {
		ev = s.log.Warn()
	}
	ev.Int64("run", rep.RunID).Int64("events", rep.Events).Int("findings", len(rep.Findings)).Msg("scheduled reconciliation done")
	return rep, nil
}

// keepLease renews the lease every third of its time until stop is called; the context it
// returns ends when a renewal finds the lease lost (or cannot reach Redis for a whole lease
// time), so that two runs never overlap.
func (s *Scheduler) keepLease(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		held := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.leaseTTL / 3):
			}
			ok, err := s.rec.eng.Lease(ctx, leaseName, s.owner, s.leaseTTL)
			switch {
			case err == nil && ok:
				held = time.Now()
			case err == nil || time.Since(held) >= s.leaseTTL:
				s.log.Warn().Err(err).Msg("scheduled reconciliation lost its lease; stopping the run")
				cancel()
				return
			}
		}
	}()
	return ctx, func() { cancel(); <-done }
}
