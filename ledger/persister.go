package ledger

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// PersistPass is what one RunOnce did.
type PersistPass struct {
	Polled      int // partitions whose streams the pass read
	Read        int
	Inserted    int64
	Duplicates  int64
	DeadLetters int64
	Forks       []Fork
}

// Persister copies every partition stream into the ledger, exactly once. Its parts: the
// pipeline of passes (persist_pipeline.go), one pass: read, write, settle (persist_pass.go),
// claiming partitions (persist_claim.go), acknowledging and trimming the streams
// (persist_trim.go), forks (persist_fork.go), lag (persist_lag.go) and copying pool
// configuration (persist_pools.go).
type Persister struct {
	eng   *engine.Engine
	store *Store
	cfg   PersistConfig
	log   zerolog.Logger
	owner string

	mu        sync.Mutex
	groups    map[int]bool  // partitions this persister has read
	watermark map[int]int64 // partition -> every seq up to it is in the ledger
	// ahead holds, per partition, the ranges of seqs persisted past the watermark (entries
	// persisted while older ones still waited, e.g. for a claim from a dead consumer).
	ahead    map[int]*seqRanges
	trimmed  map[int]int64
	forks    map[int]Fork
	lastSync time.Time
	// poolsVersion is the engine's PoolsVersion at the last copy of the pools (poolsSynced:
	// there was one).
	poolsVersion int64
	poolsSynced  bool
	// What a pass reads (see fetch): a partition whose head has not moved since a pass found
	// its stream drained is left out, except in full passes.
	drained  map[int]engine.PartitionHead
	ownDue   bool              // entries of this consumer may be pending (a pass failed, or read some)
	claimDue bool              // entries delivered before were found: more may wait to be claimed
	lastFull time.Time         // when every partition was last read
	leases   map[int]time.Time // partition -> until when this persister surely holds its lease
	leaseTry map[int]time.Time // partition -> when to ask again for a lease another holds
	lag      []int64
	lagAge   time.Duration // age of the oldest event not yet persisted, over all partitions

	// beforeCommit and beforeAck let tests stop a pass at its most delicate points.
	beforeCommit func() error
	// lastBehindLog: when events were last reported held back for want of replicas.
	lastBehindLog time.Time
	beforeAck     func() error
	afterAck      func() error

	tracer trace.Tracer // nil: tracing off (see persist_trace.go)

	persisted prometheus.Counter
	batchSize prometheus.Histogram
	deadTotal prometheus.Counter
	alarms    prometheus.Counter
	lagGauge  *prometheus.GaugeVec
	lagSecs   *prometheus.GaugeVec
}

// PersistOption changes how NewPersister builds a Persister.
type PersistOption func(*Persister)

// WithPersistLogger sets the logger.
func WithPersistLogger(l zerolog.Logger) PersistOption { return func(p *Persister) { p.log = l } }

// WithConsumer names this persister in the consumer group (default: host, pid, random).
func WithConsumer(name string) PersistOption { return func(p *Persister) { p.owner = name } }

// NewPersister builds a persister.
func NewPersister(eng *engine.Engine, store *Store, cfg PersistConfig, opts ...PersistOption) *Persister {
	p := &Persister{eng: eng, store: store, cfg: cfg, log: zerolog.Nop(), groups: map[int]bool{},
		watermark: map[int]int64{}, ahead: map[int]*seqRanges{}, trimmed: map[int]int64{}, forks: map[int]Fork{},
		drained: map[int]engine.PartitionHead{}, ownDue: true, claimDue: true, leases: map[int]time.Time{}, leaseTry: map[int]time.Time{}}
	p.owner = loop.InstanceID()
	for _, o := range opts {
		o(p)
	}
	p.cfg.Batch, p.cfg.MaxRows = max(p.cfg.Batch, 1), max(p.cfg.MaxRows, 1)
	p.persisted = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_ledger_events_persisted_total", Help: "Events written to the Postgres ledger."})
	p.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashhold_ledger_batch_rows", Help: "Rows per ledger transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9)})
	p.deadTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_ledger_dead_letters_total", Help: "Stream entries that could not be decoded."})
	p.alarms = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashhold_ledger_integrity_alarms_total", Help: "Partitions found forked (Redis lost acknowledged writes)."})
	p.lagGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashhold_ledger_lag_entries", Help: "Events in Redis not yet in the ledger, per partition."}, []string{"partition"})
	p.lagSecs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashhold_ledger_lag_seconds", Help: "Age of the oldest event not yet in the ledger, per partition."}, []string{"partition"})
	return p
}

// Register adds the persister's metrics to reg.
func (p *Persister) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{p.persisted, p.batchSize, p.deadTotal, p.alarms, p.lagGauge, p.lagSecs} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
