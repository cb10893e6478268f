package ledger

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// PersistConfig is the persister's configuration (package config reads it from the environment).
type PersistConfig struct {
	// Group is the Redis consumer group every persister joins.
	Group string
	// Batch is the most entries read from one partition per pass; MaxRows caps a transaction.
	Batch   int
	MaxRows int
	// Interval is the pause between passes that found nothing to do.
	Interval time.Duration
	// Linger (0: off) is the pause after a pass that found less than a quarter of MaxRows:
	// under steady traffic the next pass then takes a larger batch, which costs less per
	// event, and passes no longer follow each other with a few events each, every one with
	// its fixed Redis and Postgres round trips, which lengthened the reserve path's latency
	// tail (see docs/ledger.md). Passes that find more (catching up) follow each other at once.
	Linger time.Duration
	// Mode is how rows reach Postgres: copy (COPY) or insert (multi-row INSERT).
	Mode string
	// ClaimIdle: entries another consumer has had pending this long are claimed (XAUTOCLAIM).
	ClaimIdle time.Duration
	// Lease is how long a partition stays this persister's after it last read it.
	Lease time.Duration
	// Keep is how many persisted entries each stream keeps in Redis; older ones are trimmed.
	Keep int64
	// BackoffMax caps the wait between retries while Postgres fails.
	BackoffMax time.Duration
	// Timeout bounds one Postgres transaction.
	Timeout time.Duration
	// LagAlarm: readiness fails when more entries than this wait to be persisted.
	LagAlarm int64
	// SyncPoolsEvery: how often pool configuration is copied into Postgres.
	SyncPoolsEvery time.Duration
}

// DefaultPersistConfig is the persister's configuration when the environment sets nothing.
func DefaultPersistConfig() PersistConfig {
	return PersistConfig{
		Group:          "ledger",
		Batch:          2000,
		MaxRows:        50000,
		Interval:       100 * time.Millisecond,
		Linger:         20 * time.Millisecond,
		Mode:           ModeCopy,
		ClaimIdle:      15 * time.Second,
		Lease:          5 * time.Second,
		Keep:           5000,
		BackoffMax:     10 * time.Second,
		Timeout:        30 * time.Second,
		LagAlarm:       1000000,
		SyncPoolsEvery: 30 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c PersistConfig) Validate() error {
	switch {
	case c.Mode != ModeCopy && c.Mode != ModeInsert:
		return fmt.Errorf("FLASHHOLD_PERSIST_MODE must be copy or insert, got %q", c.Mode)
	case c.Group == "":
		return fmt.Errorf("FLASHHOLD_PERSIST_GROUP is empty")
	case c.Interval <= 0 || c.Lease <= 0 || c.Timeout <= 0 || c.BackoffMax <= 0:
		return fmt.Errorf("FLASHHOLD_PERSIST_INTERVAL, _LEASE, _TIMEOUT and _BACKOFF_MAX must be positive")
	case c.Linger < 0:
		return fmt.Errorf("FLASHHOLD_PERSIST_LINGER must not be negative, got %s", c.Linger)
	}
	return nil
}

// PersistPass is what one RunOnce did.
type PersistPass struct {
	Polled      int // partitions whose streams the pass read
	Read        int
	Inserted    int64
	Duplicates  int64
	DeadLetters int64
	Forks       []Fork
}

// Persister copies every partition stream into the ledger, exactly once.
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
	beforeAck    func() error

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

// Run persists until ctx ends: passes back to back while there is work (reading the next
// batch while the current one is written; Linger apart instead when set and the batches are
// small), every Interval when idle, and with capped exponential backoff while Postgres or
// Redis fail.
func (p *Persister) Run(ctx context.Context) error {
	p.log.Info().Str("consumer", p.owner).Str("mode", p.cfg.Mode).Msg("persister started")
	defer p.log.Info().Msg("persister stopped")
	r := &pipeline{p: p}
	defer r.drain()
	return loop.Paced(ctx, p.cfg.BackoffMax, r.pass, func(err error, retryIn time.Duration) {
		p.log.Warn().Err(err).Dur("retry_in", retryIn).Msg("persist pass failed; events stay buffered in Redis")
	})
}

// pipeline is what Run carries from one pass to the next: the next batch, read while the
// current one is written, and the previous batch's acknowledgement, made while the next one
// is written (the entries of a committed batch are only acknowledged: Postgres stays busy).
type pipeline struct {
	p        *Persister
	next     chan fetched
	settling chan error
	lastLag  time.Time
}

type fetched struct {
	b   *batch
	err error
}

// pass writes one batch and says how long to wait before the next.
func (r *pipeline) pass(ctx context.Context) (time.Duration, error) {
	p := r.p
	var b *batch
	var err error
	if r.next != nil {
		f := <-r.next
		r.next, b, err = nil, f.b, f.err
	} else {
		b, err = p.fetch(ctx, true)
	}
	busy, linger := false, false
	if err == nil && b.read > 0 {
		busy, linger = true, p.cfg.Linger > 0 && b.read < p.cfg.MaxRows/4
		if !linger {
			r.next = make(chan fetched, 1)
			go func(ch chan fetched) {
				nb, err := p.fetch(ctx, false)
				ch <- fetched{nb, err}
			}(r.next)
		}
		var forked map[int]bool
		_, forked, err = p.commit(ctx, b)
		if serr := r.settled(); err == nil {
			err = serr
		}
		if err == nil {
			r.settling = make(chan error, 1)
			go func(ch chan error) { ch <- p.settle(ctx, b, forked) }(r.settling)
		}
		if err != nil && r.next != nil { // what was prefetched is re-read from the pending entries later
			<-r.next
			r.next = nil
		}
	} else if serr := r.settled(); err == nil {
		err = serr
	}
	if err != nil {
		p.failed() // also when stopping: a later pass of this persister reads what stays pending
	}
	if time.Since(r.lastLag) > time.Second {
		r.lastLag = time.Now()
		if err := p.UpdateLag(ctx); err != nil && ctx.Err() == nil {
			p.log.Debug().Err(err).Msg("lag not measured")
		}
	}
	switch {
	case linger:
		return p.cfg.Linger, err
	case busy:
		return 0, err
	}
	return p.cfg.Interval, err
}

// settled waits for the previous batch's acknowledgement.
func (r *pipeline) settled() error {
	if r.settling == nil {
		return nil
	}
	err := <-r.settling
	r.settling = nil
	return err
}

// drain waits for what is still in flight when Run stops.
func (r *pipeline) drain() {
	if r.next != nil {
		<-r.next
		r.p.failed() // what it read stays pending for the next full pass
	}
	if r.settling != nil {
		<-r.settling
	}
}

// batch is what one fetch read.
type batch struct {
	entries []engine.GroupEntries
	events  []engine.Event
	dead    []DeadLetter
	read    int
	polled  int // partitions read
}

// RunOnce makes one pass: reads what each leased, unfenced partition has for this consumer
// (its own pending entries first, then entries claimed from dead consumers, then new ones),
// writes them in one transaction, acknowledges them, fences forked partitions and trims
// streams below what Postgres holds.
func (p *Persister) RunOnce(ctx context.Context) (PersistPass, error) {
	b, err := p.fetch(ctx, true)
	if err != nil || b.read == 0 {
		var polled int
		if b != nil {
			polled = b.polled
		}
		return PersistPass{Polled: polled}, err
	}
	pass, err := p.write(ctx, b)
	if err != nil {
		p.failed()
	}
	return pass, err
}

// fetch claims partitions and reads and decodes their entries. With own false it leaves out
// this consumer's pending entries (a batch being written).
//
// Most passes read only the partitions whose head moved since their stream was last found
// drained, and only entries never delivered: with one hot partition of 64, a pass is a few
// commands instead of three per partition. A full pass reads every leased partition: entries
// claimed from consumers idle for ClaimIdle, and new ones, and (unless own is false) this
// consumer's own pending entries first. A full pass is made at least every fullEvery (under
// steady load too, when every pass is a prefetch), and while a pass keeps finding entries
// delivered before (more may remain); own entries are read first, after any failure or fork,
// and every fullEvery.
func (p *Persister) fetch(ctx context.Context, own bool) (*batch, error) {
	if err := p.syncPools(ctx); err != nil {
		return nil, err
	}
	parts, heads, err := p.claimPartitions(ctx)
	if err != nil || len(parts) == 0 {
		return &batch{}, err
	}
	p.mu.Lock()
	periodic := time.Since(p.lastFull) >= p.fullEvery()
	readOwn := own && (p.ownDue || periodic)
	full := readOwn || periodic || p.claimDue
	if readOwn {
		p.ownDue = false
	}
	if full {
		p.claimDue, p.lastFull = false, time.Now()
	} else {
		moved := parts[:0:0]
		for _, part := range parts {
			if p.drained[part] != heads[part] {
				moved = append(moved, part)
			}
		}
		parts = moved
	}
	p.mu.Unlock()
	if len(parts) == 0 {
		return &batch{}, nil
	}
	read := engine.GroupRead{Group: p.cfg.Group, Consumer: p.owner, Start: "0", Count: p.cfg.Batch,
		Budget: p.cfg.MaxRows, SkipOwn: !readOwn}
	if full {
		read.ClaimIdle = max(p.cfg.ClaimIdle, time.Millisecond)
	}
	entries, err := p.eng.ReadGroup(ctx, read, parts)
	if err != nil {
		p.failed()
		return nil, err
	}
	n := p.noteRead(parts, heads, entries, readOwn)
	b := &batch{entries: entries, events: make([]engine.Event, 0, n), polled: len(parts)}
	for _, en := range entries {
		for _, m := range en.Messages {
			b.read++
			if m.Values == nil {
				continue // trimmed after it was persisted: only its acknowledgement is missing
			}
			c, _ := m.Values["e"].(string)
			h, _ := m.Values["h"].(string)
			ev, err := engine.ParseEvent(c, h)
			if err == nil && ev.Partition != en.Partition {
				err = fmt.Errorf("event of partition %d in the stream of partition %d", ev.Partition, en.Partition)
			}
			if err == nil && m.ID != strconv.FormatInt(ev.Seq, 10)+"-0" {
				err = fmt.Errorf("entry id %s does not match seq %d", m.ID, ev.Seq)
			}
			if err != nil {
				b.dead = append(b.dead, DeadLetter{Partition: en.Partition, StreamID: m.ID, Payload: m.Values, Err: err.Error()})
				continue
			}
			b.events = append(b.events, ev)
		}
	}
	return b, nil
}

// write stores a fetched batch, acknowledges it, handles forks and trims. Partitions found
// forked since the batch was read are left out (and stay pending): nothing read after a fork
// may reach the ledger.
func (p *Persister) write(ctx context.Context, b *batch) (PersistPass, error) {
	pass, forked, err := p.commit(ctx, b)
	if err != nil {
		return pass, err
	}
	return pass, p.settle(ctx, b, forked)
}

// commit stores a fetched batch in one transaction and fences what it found forked; it
// returns the forked partitions, whose entries stay pending.
func (p *Persister) commit(ctx context.Context, b *batch) (PersistPass, map[int]bool, error) {
	pass := PersistPass{Polled: b.polled, Read: b.read}
	p.mu.Lock()
	if len(p.forks) > 0 {
		keep := b.entries[:0:0]
		for _, en := range b.entries {
			if _, bad := p.forks[en.Partition]; !bad {
				keep = append(keep, en)
			}
		}
		evs := b.events[:0:0]
		for _, ev := range b.events {
			if _, bad := p.forks[ev.Partition]; !bad {
				evs = append(evs, ev)
			}
		}
		b.entries, b.events = keep, evs
	}
	p.mu.Unlock()
	res, err := p.append(ctx, b.events, b.dead)
	if err != nil {
		return pass, nil, err
	}
	pass.Inserted, pass.Duplicates, pass.DeadLetters, pass.Forks = res.Inserted, res.Duplicates, res.DeadLetters, res.Forks
	p.persisted.Add(float64(res.Inserted))
	p.batchSize.Observe(float64(len(b.events)))
	p.deadTotal.Add(float64(res.DeadLetters))
	forked := map[int]bool{}
	if len(res.Forks) > 0 {
		p.failed() // what is left pending is read again once the partition is repaired
	}
	for _, f := range res.Forks {
		forked[f.Partition] = true
		if p.stillForked(ctx, f, b.events) {
			p.fork(ctx, f)
		}
	}
	return pass, forked, nil
}

// settle acknowledges a committed batch (but for forked partitions), advances the
// watermarks and trims the streams below them.
func (p *Persister) settle(ctx context.Context, b *batch, forked map[int]bool) error {
	if p.beforeAck != nil {
		if err := p.beforeAck(); err != nil {
			return err
		}
	}
	if err := p.ack(ctx, b.entries, forked); err != nil {
		return err
	}
	p.advance(b.events, forked)
	return p.trim(ctx)
}

func (p *Persister) append(ctx context.Context, events []engine.Event, dead []DeadLetter) (AppendResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if p.beforeCommit != nil {
		if err := p.beforeCommit(); err != nil {
			return AppendResult{}, err
		}
	}
	return p.store.Append(ctx, events, dead, p.cfg.Mode)
}

// fullEvery is the longest time between full passes.
func (p *Persister) fullEvery() time.Duration {
	return min(p.cfg.ClaimIdle/2, time.Second)
}

// failed makes the next pass that may read this consumer's own pending entries do so: entries
// read by a pass that failed stay pending.
func (p *Persister) failed() {
	p.mu.Lock()
	p.ownDue = true
	p.mu.Unlock()
}

// noteRead records what a read of parts (whose heads were read before it) found, and returns
// the number of entries. A partition that returned nothing is marked drained at its head: its
// stream held nothing undelivered up to there (unless the read was cut short by MaxRows, when
// partitions without entries may not have been read at all). Entries delivered before mean
// more may be pending than one pass reads: the next pass is full too.
func (p *Persister) noteRead(parts []int, heads []engine.PartitionHead, entries []engine.GroupEntries, readOwn bool) int {
	n := 0
	got := make(map[int]bool, len(entries))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, en := range entries {
		n += len(en.Messages)
		got[en.Partition] = true
		p.groups[en.Partition] = true
		if en.Delivered {
			p.ownDue, p.claimDue = p.ownDue || readOwn, true
		}
	}
	if n < p.cfg.MaxRows {
		for _, part := range parts {
			if !got[part] {
				p.drained[part] = heads[part]
			}
		}
	}
	return n
}

// claimPartitions returns the partitions this pass handles, unfenced, not found forked and
// leased to this persister (several persisters share the partitions between them), and every
// partition's head as read before.
func (p *Persister) claimPartitions(ctx context.Context) ([]int, []engine.PartitionHead, error) {
	heads, err := p.eng.PartitionHeads(ctx)
	if err != nil {
		return nil, nil, err
	}
	var cand []int
	p.mu.Lock()
	for part, h := range heads {
		if h.Fence != "" {
			continue // fenced: nothing is persisted until reconciliation repairs and unfences it
		}
		if _, was := p.forks[part]; was {
			delete(p.forks, part) // repaired since: persist again, from what Postgres holds
			delete(p.watermark, part)
			delete(p.ahead, part)
			p.ownDue = true // what was read of it before the fork is still pending
		}
		cand = append(cand, part)
	}
	p.mu.Unlock()
	if len(cand) == 0 {
		return nil, heads, nil
	}
	out, err := p.holdLeases(ctx, cand)
	return out, heads, err
}

// holdLeases returns those of cand whose lease this persister holds. A lease held is renewed
// once a third of its length has passed, and one held by another is asked for again after a
// third of its length: most passes make no lease call at all.
func (p *Persister) holdLeases(ctx context.Context, cand []int) ([]int, error) {
	now := time.Now()
	every := p.cfg.Lease / 3
	var out, ask []int
	var names []string
	p.mu.Lock()
	for _, part := range cand {
		until, held := p.leases[part]
		switch {
		case held && until.Sub(now) > p.cfg.Lease-every:
			out = append(out, part)
		case !held && now.Before(p.leaseTry[part]):
		default:
			ask = append(ask, part)
			names = append(names, "persist:"+strconv.Itoa(part))
		}
	}
	p.mu.Unlock()
	if len(ask) == 0 {
		return out, nil
	}
	ok, err := p.eng.Leases(ctx, names, p.owner, p.cfg.Lease)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, part := range ask {
		if ok[i] {
			p.leases[part] = now.Add(p.cfg.Lease) // measured from before the call: never late
			out = append(out, part)
		} else {
			delete(p.leases, part)
			p.leaseTry[part] = now.Add(every)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ack acknowledges what was persisted; a forked partition's entries stay pending for repair.
func (p *Persister) ack(ctx context.Context, entries []engine.GroupEntries, forked map[int]bool) error {
	var done []engine.GroupEntries
	for _, en := range entries {
		if !forked[en.Partition] {
			done = append(done, en)
		}
	}
	return p.eng.AckGroup(ctx, p.cfg.Group, done)
}

// ForkFencePrefix starts the reason of the fence raised on a forked partition.
const ForkFencePrefix = "ledger fork at seq"

// fork stops persisting a partition whose stream contradicts the ledger and fences it: Redis
// lost acknowledged writes, and only reconciliation may decide what happens next.
// stillForked says whether the stream still holds the event of f as this batch read it.
// Reconciliation may have rebuilt the partition since the batch was read (removing the
// forked entries and lifting the fence): a fence raised now would stop a repaired partition.
// What this batch holds of such a partition stays unacknowledged and is read again.
func (p *Persister) stillForked(ctx context.Context, f Fork, batch []engine.Event) bool {
	var read string
	for i := range batch {
		if batch[i].Partition == f.Partition && batch[i].Seq == f.Seq {
			read = batch[i].Hash
			break
		}
	}
	now, err := p.eng.ReadEvents(ctx, f.Partition, f.Seq-1, 1)
	if err != nil || read == "" {
		return true // when in doubt, fence
	}
	if len(now) == 1 && now[0].Seq == f.Seq && now[0].Hash == read {
		return true
	}
	p.log.Warn().Int("partition", f.Partition).Int64("seq", f.Seq).
		Msg("a batch read before the partition was rebuilt contradicts the ledger; the stream no longer holds it: not fenced")
	return false
}

func (p *Persister) fork(ctx context.Context, f Fork) {
	p.mu.Lock()
	p.forks[f.Partition] = f
	p.mu.Unlock()
	p.alarms.Inc()
	p.log.Error().Int("partition", f.Partition).Int64("seq", f.Seq).Str("kind", f.Kind).Str("detail", f.Detail).
		Msg("INTEGRITY ALARM: the stream contradicts the ledger (Redis lost acknowledged writes); partition fenced, run reconcile --repair")
	reason := fmt.Sprintf("%s %d (%s)", ForkFencePrefix, f.Seq, f.Kind)
	if err := p.eng.Fence(ctx, f.Partition, reason); err != nil {
		p.log.Error().Err(err).Int("partition", f.Partition).Msg("could not fence the forked partition")
	}
}

// advance moves each partition's watermark over events now known to be in the ledger.
func (p *Persister) advance(events []engine.Event, forked map[int]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		if forked[ev.Partition] {
			continue
		}
		r := p.ahead[ev.Partition]
		if r == nil {
			r = &seqRanges{}
			p.ahead[ev.Partition] = r
		}
		r.add(ev.Seq)
	}
	for part, r := range p.ahead {
		w, ok := p.watermark[part]
		if !ok {
			continue // learned from Postgres before trimming
		}
		p.watermark[part] = r.advance(w)
	}
}

// seqRanges is a set of seqs kept as sorted, disjoint, non-adjacent ranges: batches are
// ranges, so a handful of them describes what was persisted past a watermark.
type seqRanges struct{ r [][2]int64 }

func (s *seqRanges) add(seq int64) {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= seq-1 })
	switch {
	case i < len(s.r) && s.r[i][0] <= seq && seq <= s.r[i][1]:
		return
	case i < len(s.r) && s.r[i][1] == seq-1:
		s.r[i][1] = seq
		if i+1 < len(s.r) && s.r[i+1][0] == seq+1 {
			s.r[i][1] = s.r[i+1][1]
			s.r = append(s.r[:i+1], s.r[i+2:]...)
		}
	case i < len(s.r) && s.r[i][0] == seq+1:
		s.r[i][0] = seq
	default:
		s.r = append(s.r, [2]int64{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = [2]int64{seq, seq}
	}
}

// advance returns the highest seq from w up to which every seq is in the set or at most w,
// and forgets the ranges at or below it.
func (s *seqRanges) advance(w int64) int64 {
	for len(s.r) > 0 && s.r[0][0] <= w+1 {
		w = max(w, s.r[0][1])
		s.r = s.r[1:]
	}
	return w
}

// trim removes stream entries older than Keep below what the ledger holds for certain, and
// below what every consumer group acknowledged.
func (p *Persister) trim(ctx context.Context) error {
	type cut struct {
		part  int
		minID int64
	}
	var cuts []cut
	p.mu.Lock()
	var unknown []int
	for part := range p.groups {
		if _, bad := p.forks[part]; bad {
			continue
		}
		w, ok := p.watermark[part]
		if !ok {
			unknown = append(unknown, part)
			continue
		}
		if minID := w - p.cfg.Keep + 1; minID > p.trimmed[part]+max(p.cfg.Keep/10, 1) {
			cuts = append(cuts, cut{part, minID})
		}
	}
	p.mu.Unlock()
	for _, part := range unknown { // learned from Postgres, which holds at least this much
		w, err := p.store.Watermark(ctx, part)
		if err != nil {
			return err
		}
		p.mu.Lock()
		if _, ok := p.watermark[part]; !ok {
			p.watermark[part] = w
		}
		p.mu.Unlock()
	}
	for _, c := range cuts {
		// Never past what another consumer group (the alert detector's) has acknowledged.
		if _, err := p.eng.TrimStream(ctx, c.part, c.minID+p.cfg.Keep-1, p.cfg.Keep); err != nil {
			return fmt.Errorf("trim partition %d: %w", c.part, err)
		}
		p.mu.Lock()
		p.trimmed[c.part] = c.minID
		p.mu.Unlock()
	}
	return nil
}

func (p *Persister) syncPools(ctx context.Context) error {
	p.mu.Lock()
	due := p.cfg.SyncPoolsEvery > 0 && time.Since(p.lastSync) >= p.cfg.SyncPoolsEvery
	if due {
		p.lastSync = time.Now() // one sync at a time; a failure retries after the interval
	}
	p.mu.Unlock()
	if !due {
		return nil
	}
	pools, err := p.eng.Pools(ctx)
	if err != nil {
		return err
	}
	return p.store.SyncPools(ctx, pools)
}

// UpdateLag measures, per partition, the events in Redis not yet in the ledger and the age of
// the oldest of them.
func (p *Persister) UpdateLag(ctx context.Context) error {
	seqs, _, err := p.eng.Heads(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	wm := make(map[int]int64, len(p.watermark))
	for k, v := range p.watermark {
		wm[k] = v
	}
	p.mu.Unlock()
	// Partitions this persister has not persisted (another's, or none yet): what the ledger
	// holds of them, by their highest persisted seq.
	var unknown []int
	for part := range seqs {
		if _, ok := wm[part]; !ok {
			unknown = append(unknown, part)
		}
	}
	if len(unknown) > 0 {
		held, err := p.store.Persisted(ctx, unknown)
		if err != nil {
			return err
		}
		maps.Copy(wm, held)
	}
	lag := make([]int64, len(seqs))
	var oldest time.Duration
	for part, seq := range seqs {
		w := wm[part]
		lag[part] = max(seq-w, 0)
		label := strconv.Itoa(part)
		p.lagGauge.WithLabelValues(label).Set(float64(lag[part]))
		age := 0.0
		if lag[part] > 0 {
			if evs, err := p.eng.ReadEvents(ctx, part, w, 1); err == nil && len(evs) == 1 {
				d := time.Since(time.UnixMilli(evs[0].TS))
				age, oldest = d.Seconds(), max(oldest, d)
			}
		}
		p.lagSecs.WithLabelValues(label).Set(age)
	}
	p.mu.Lock()
	p.lag, p.lagAge = lag, oldest
	p.mu.Unlock()
	return nil
}

// Lag is what the last UpdateLag measured: events waiting to be persisted over all partitions,
// and the age of the oldest of them.
func (p *Persister) Lag() (entries int64, oldest time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lag {
		entries += l
	}
	return entries, p.lagAge
}

// Check is the persister's readiness: it fails while a partition is forked or while more
// events than LagAlarm wait to be persisted.
func (p *Persister) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.forks) > 0 {
		var parts []string
		for part, f := range p.forks {
			parts = append(parts, fmt.Sprintf("partition %d at seq %d (%s)", part, f.Seq, f.Kind))
		}
		return fmt.Errorf("ledger fork: %s; run flashhold reconcile --repair", strings.Join(parts, ", "))
	}
	var total int64
	for _, l := range p.lag {
		total += l
	}
	if total > p.cfg.LagAlarm {
		return fmt.Errorf("%d events wait to be persisted", total)
	}
	return nil
}

// Forks lists the partitions this persister found forked.
func (p *Persister) Forks() []Fork {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Fork, 0, len(p.forks))
	for _, f := range p.forks {
		out = append(out, f)
	}
	return out
}
