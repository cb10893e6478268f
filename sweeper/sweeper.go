// Package sweeper gives back the units of expired holds, rebalances sharded pools and writes
// off perishable stock past its best-before date. It runs inside `flashhold serve` and alone
// as `flashhold sweep`; any number of instances may run at once.
package sweeper

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// Config is the sweeper's configuration (package config reads it from the environment).
type Config struct {
	// Rate caps hold parts restored per second by this instance (0: unlimited); Burst is how
	// many may go at once after a quiet spell.
	Rate  float64
	Burst int
	// Batch is the most parts one sweep call restores.
	Batch int
	// Interval is how often a pass runs.
	Interval time.Duration
	// Lease is how long a partition stays this instance's to sweep after it took it.
	Lease time.Duration
	// LagAlarm: the sweeper logs a warning when the oldest overdue hold is older than this.
	LagAlarm time.Duration
	// GCEvery: how often old idempotency records and tombstones are forgotten (every one due,
	// GCBatch per call) and streams trimmed.
	GCEvery time.Duration
	GCBatch int
	// StreamKeep: each partition's stream keeps this many entries below what every consumer
	// group (the ledger's persister, the alert detector) acknowledged, and with no group at all
	// (no ledger) its last this many.
	StreamKeep int64
	// RebalanceEvery: how often sharded pools are rebalanced, transfers completed and
	// perishable pools checked (0: never).
	RebalanceEvery time.Duration
	// LowWater: a shard below this fraction of its pool's mean available count gets units
	// moved to it from the fullest shards.
	LowWater float64
	// TransferGrace: a transfer pending longer than this is taken as interrupted and completed.
	TransferGrace time.Duration
}

// DefaultConfig is the sweeper's configuration when the environment sets nothing.
func DefaultConfig() Config {
	return Config{
		Rate:           5000,
		Burst:          1000,
		Batch:          100,
		Interval:       50 * time.Millisecond,
		Lease:          2 * time.Second,
		LagAlarm:       5 * time.Second,
		GCEvery:        time.Second,
		GCBatch:        1000,
		StreamKeep:     5000,
		RebalanceEvery: time.Second,
		LowWater:       0.25,
		TransferGrace:  2 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Interval <= 0 || c.Lease <= 0:
		return fmt.Errorf("FLASHHOLD_SWEEP_INTERVAL and FLASHHOLD_SWEEP_LEASE must be positive, got %s and %s", c.Interval, c.Lease)
	case c.GCBatch < 1:
		return fmt.Errorf("FLASHHOLD_SWEEP_GC_BATCH must be at least 1, got %d", c.GCBatch)
	case c.LowWater < 0 || c.LowWater > 1:
		return fmt.Errorf("FLASHHOLD_REBALANCE_LOW_WATER must be within 0..1, got %g", c.LowWater)
	}
	return nil
}

// Pass is what one RunOnce did.
type Pass struct {
	Restored   int           // hold parts given back
	Throttled  bool          // the rate limit stopped the pass with work left
	Lag        time.Duration // age of the oldest overdue hold left after the pass (0: none)
	Forgotten  int           // idempotency records and tombstones removed
	Transfers  int           // rebalancing transfers made
	Completed  int           // interrupted transfers completed
	WrittenOff int64         // perishable units written off
}

// Sweeper is one instance of the background worker.
type Sweeper struct {
	eng   *engine.Engine
	cfg   Config
	log   zerolog.Logger
	now   func() time.Time
	owner string

	mu            sync.Mutex // one pass at a time
	bucket        *bucket
	cursor        int
	lastGC        time.Time
	lastRebalance time.Time
	lastAlarm     time.Time

	lagMs    atomic.Int64
	restored prometheus.Counter
	lagGauge prometheus.GaugeFunc
	throttle prometheus.Counter
	moves    prometheus.Counter
	finished prometheus.Counter
	spoiled  prometheus.Counter
}

// Option changes how New builds a Sweeper.
type Option func(*Sweeper)

// WithClock makes the sweeper read time from now (tests pass the engine's fake clock).
func WithClock(now func() time.Time) Option { return func(s *Sweeper) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Sweeper) { s.log = l } }

// WithOwner names this instance in leases (default: host, pid and a random suffix).
func WithOwner(id string) Option { return func(s *Sweeper) { s.owner = id } }

// New builds a sweeper over eng.
func New(eng *engine.Engine, cfg Config, opts ...Option) *Sweeper {
	s := &Sweeper{eng: eng, cfg: cfg, log: zerolog.Nop(), now: time.Now, bucket: newBucket(cfg.Rate, cfg.Burst), owner: loop.InstanceID()}
	for _, o := range opts {
		o(s)
	}
	s.cfg.Batch = max(s.cfg.Batch, 1)
	s.restored = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_sweeper_restored_total", Help: "Expired hold parts whose units the sweeper gave back."})
	s.throttle = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_sweeper_throttled_total", Help: "Sweep passes cut short by the rate limit."})
	s.moves = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_rebalance_transfers_total", Help: "Transfers made to refill dry shards."})
	s.finished = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_rebalance_completed_total", Help: "Interrupted transfers completed."})
	s.spoiled = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_writeoff_units_total", Help: "Perishable units written off past their best-before date."})
	s.lagGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashhold_sweeper_lag_seconds", Help: "Age of the oldest overdue hold after the last pass."},
		func() float64 { return float64(s.lagMs.Load()) / 1000 })
	return s
}

// Register adds the sweeper's metrics to reg.
func (s *Sweeper) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.restored, s.throttle, s.moves, s.finished, s.spoiled, s.lagGauge} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Lag is the age of the oldest overdue hold after the last pass.
func (s *Sweeper) Lag() time.Duration { return time.Duration(s.lagMs.Load()) * time.Millisecond }

// Run passes every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	s.log.Info().Str("owner", s.owner).Float64("rate", s.cfg.Rate).Msg("sweeper started")
	defer s.log.Info().Msg("sweeper stopped")
	return loop.Run(ctx, s.cfg.Interval, s.cfg.Interval, func(ctx context.Context) error {
		_, err := s.RunOnce(ctx)
		return err
	}, func(err error) { s.log.Warn().Err(err).Msg("sweep pass failed") })
}

// RunOnce makes one pass: restores due holds within the rate limit, and when their time has
// come forgets old records, completes interrupted transfers, rebalances and writes off.
func (s *Sweeper) RunOnce(ctx context.Context) (Pass, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pass Pass
	now := s.now()
	if err := s.sweep(ctx, now, &pass); err != nil {
		return pass, err
	}
	if s.cfg.GCEvery > 0 && now.Sub(s.lastGC) >= s.cfg.GCEvery {
		s.lastGC = now
		if err := s.forget(ctx, &pass); err != nil {
			return pass, err
		}
	}
	if s.cfg.RebalanceEvery > 0 && now.Sub(s.lastRebalance) >= s.cfg.RebalanceEvery {
		s.lastRebalance = now
		if err := s.maintain(ctx, now, &pass); err != nil {
			return pass, err
		}
	}
	return pass, nil
}

func (s *Sweeper) sweep(ctx context.Context, now time.Time, pass *Pass) error {
	next, err := s.eng.NextExpiries(ctx)
	if err != nil {
		return err
	}
	nowMs := now.UnixMilli()
	n := len(next)
	start := s.cursor
	s.cursor = (s.cursor + 1) % n // a different partition goes first each pass
partitions:
	for i := range n {
		p := (start + i) % n
		if next[p] < 0 || next[p] > nowMs {
			continue
		}
		ok, err := s.eng.Lease(ctx, "sweep:"+strconv.Itoa(p), s.owner, s.cfg.Lease)
		if err != nil {
			return err
		}
		if !ok {
			continue // another instance sweeps it now
		}
		for next[p] >= 0 && next[p] <= nowMs {
			take := s.bucket.take(now, s.cfg.Batch)
			if take == 0 {
				pass.Throttled = true
				s.throttle.Inc()
				break partitions
			}
			res, err := s.eng.Sweep(ctx, p, take, 0)
			if errors.Is(err, engine.ErrFenced) {
				s.bucket.giveBack(take)
				break // left for repair
			}
			if err != nil {
				s.bucket.giveBack(take)
				return err
			}
			s.bucket.giveBack(take - res.Restored)
			pass.Restored += res.Restored
			s.restored.Add(float64(res.Restored))
			next[p] = res.NextExpiry
			if res.Restored == 0 {
				break
			}
		}
	}
	oldest := int64(-1)
	for _, x := range next {
		if x >= 0 && x <= nowMs && (oldest < 0 || x < oldest) {
			oldest = x
		}
	}
	if oldest >= 0 {
		pass.Lag = time.Duration(nowMs-oldest) * time.Millisecond
	}
	s.lagMs.Store(pass.Lag.Milliseconds())
	if pass.Lag > s.cfg.LagAlarm && now.Sub(s.lastAlarm) > 10*time.Second {
		s.lastAlarm = now
		s.log.Warn().Dur("lag", pass.Lag).Bool("throttled", pass.Throttled).Msg("sweeper is behind: expired holds wait to be restored")
	}
	return nil
}

// forget removes every idempotency record and tombstone past its retention, and trims every
// partition's stream (see Engine.TrimStream).
func (s *Sweeper) forget(ctx context.Context, pass *Pass) error {
	for p := range s.eng.Partitions() {
		ok, err := s.eng.Lease(ctx, "sweep:"+strconv.Itoa(p), s.owner, s.cfg.Lease)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		for {
			res, err := s.eng.Sweep(ctx, p, 0, s.cfg.GCBatch)
			if errors.Is(err, engine.ErrFenced) {
				break
			}
			if err != nil {
				return err
			}
			pass.Forgotten += res.Forgotten
			if res.Forgotten < s.cfg.GCBatch || ctx.Err() != nil {
				break
			}
		}
		if s.cfg.StreamKeep > 0 {
			if _, err := s.eng.TrimStream(ctx, p, -1, s.cfg.StreamKeep); err != nil {
				return err
			}
		}
	}
	return nil
}

// maintain completes interrupted transfers, rebalances sharded pools and writes off
// perishable stock, under one lease so one instance does it at a time.
func (s *Sweeper) maintain(ctx context.Context, now time.Time, pass *Pass) error {
	ok, err := s.eng.Lease(ctx, "maintain", s.owner, max(s.cfg.Lease, 2*s.cfg.RebalanceEvery))
	if err != nil || !ok {
		return err
	}
	if err := s.completeTransfers(ctx, now, pass); err != nil {
		return err
	}
	if err := s.rebalance(ctx, now, pass); err != nil {
		return err
	}
	return s.writeOff(ctx, now, pass)
}

func (s *Sweeper) completeTransfers(ctx context.Context, now time.Time, pass *Pass) error {
	cutoff := now.Add(-s.cfg.TransferGrace).UnixMilli()
	for p := range s.eng.Partitions() {
		pending, err := s.eng.PendingTransfers(ctx, p)
		if err != nil {
			return err
		}
		for _, t := range pending {
			if t.TakenAt > cutoff {
				continue // may still be finishing in the process that began it
			}
			if err := s.eng.FinishTransfer(ctx, t, "rebalancer"); err != nil {
				s.log.Warn().Err(err).Str("transfer", t.ID).Msg("completing an interrupted transfer failed")
				continue
			}
			pass.Completed++
			s.finished.Inc()
		}
	}
	return nil
}

// rebalance refills dry shards: a shard below LowWater of its pool's mean gets units from the
// fullest shards, up to the mean, so a shopper sent to it finds stock.
func (s *Sweeper) rebalance(ctx context.Context, now time.Time, pass *Pass) error {
	pools, err := s.eng.ShardedPools(ctx)
	if err != nil || len(pools) == 0 {
		return err
	}
	avail, err := s.eng.Availabilities(ctx, pools)
	if err != nil {
		return err
	}
	for _, a := range avail {
		counts := make([]int64, len(a.Shards))
		for i, sc := range a.Shards {
			counts[i] = sc.Available
		}
		for _, mv := range planRebalance(counts, s.cfg.LowWater) {
			id := transferID(a.PoolConfig, now, mv)
			moved, err := s.eng.Transfer(ctx, a.Location, a.SKU, mv.from, mv.to, mv.qty, id, "rebalancer")
			if errors.Is(err, engine.ErrInsufficient) || errors.Is(err, engine.ErrFenced) {
				continue // reservations took the units meanwhile, or a shard awaits repair
			}
			if err != nil {
				return err
			}
			if moved > 0 {
				pass.Transfers++
				s.moves.Inc()
			}
		}
	}
	return nil
}

type move struct {
	from, to int
	qty      int64
}

// planRebalance returns the transfers that bring every shard below lowWater×mean up to the
// mean, taking from the shards furthest above it.
func planRebalance(in []int64, lowWater float64) []move {
	counts := append([]int64(nil), in...)
	var total int64
	for _, c := range counts {
		total += c
	}
	mean := total / int64(len(counts))
	if mean < 1 {
		return nil
	}
	low := int64(float64(mean) * lowWater)
	var moves []move
	for to := range counts {
		if counts[to] > low {
			continue
		}
		for counts[to] < mean {
			from := 0
			for i := range counts {
				if counts[i] > counts[from] {
					from = i
				}
			}
			give := min(mean-counts[to], counts[from]-mean)
			if give <= 0 || from == to {
				break
			}
			moves = append(moves, move{from, to, give})
			counts[from] -= give
			counts[to] += give
		}
	}
	return moves
}

func transferID(c engine.PoolConfig, now time.Time, m move) string {
	h := fnv.New32a()
	h.Write([]byte(c.Key().String()))
	return fmt.Sprintf("rb-%d-%08x-%d-%d", now.UnixMilli(), h.Sum32(), m.from, m.to)
}

// writeOff spoils the available units of perishable pools past their best-before date.
func (s *Sweeper) writeOff(ctx context.Context, now time.Time, pass *Pass) error {
	pools, err := s.eng.PerishablePools(ctx)
	if err != nil || len(pools) == 0 {
		return err
	}
	var due []engine.PoolConfig
	for _, p := range pools {
		if p.BestBefore > 0 && p.BestBefore <= now.UnixMilli() {
			due = append(due, p)
		}
	}
	avail, err := s.eng.Availabilities(ctx, due)
	if err != nil {
		return err
	}
	for _, a := range avail {
		if a.Unsold() <= 0 {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(a.Key().String()))
		id := fmt.Sprintf("bb-%d-%08x", now.UnixMilli(), h.Sum32())
		n, err := s.eng.WriteOff(ctx, a.Location, a.SKU, id, "sweeper", "past best-before date")
		pass.WrittenOff += n
		s.spoiled.Add(float64(n))
		if err != nil && !errors.Is(err, engine.ErrFenced) {
			return err
		}
	}
	return nil
}
