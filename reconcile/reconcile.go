// Package reconcile proves the ledger and the live counters agree: per partition it takes an
// atomic snapshot of Redis, replays the Postgres ledger (plus the stream entries not yet
// persisted) up to the snapshot's sequence number, verifies continuity and the hash chain,
// and compares the replayed counters and open holds with the snapshot. What it finds is
// recorded in Postgres and written as reports for auditors.
package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
)

// Kinds of finding.
const (
	KindDrift        = "drift"         // a live counter differs from the replayed one
	KindGap          = "gap"           // sequence numbers missing from the ledger and the stream
	KindChainBreak   = "chain_break"   // a row whose hash or link does not hold (tampered, reordered)
	KindOrphanHold   = "orphan_hold"   // a hold in Redis with no RESERVED event
	KindLostHold     = "lost_hold"     // a hold open in the ledger that Redis no longer has
	KindHalfTransfer = "half_transfer" // units taken out of a shard and never given to the other
	KindLedgerAhead  = "ledger_ahead"  // the ledger holds events past Redis's sequence: Redis lost writes
	KindFork         = "fork"          // the stream and the ledger disagree on an event
	KindFenced       = "fenced"        // the partition refuses writes until repaired
)

// Finding is one disagreement, located precisely.
type Finding struct {
	Kind      string `json:"kind"`
	Partition int    `json:"partition"`
	Location  string `json:"location,omitempty"`
	SKU       string `json:"sku,omitempty"`
	Shard     int    `json:"shard"` // -1: not about one shard
	SeqFrom   int64  `json:"seq_from,omitempty"`
	SeqTo     int64  `json:"seq_to,omitempty"`
	Amount    int64  `json:"amount,omitempty"` // units (drift: live − replayed), or events
	Detail    string `json:"detail"`
	Repaired  bool   `json:"repaired"`

	fix func(context.Context) error // how --repair corrects it; nil when it cannot
	// rebuild: --repair rebuilds the partition from the ledger (see rebuild), which covers
	// every other finding of the partition.
	rebuild bool
}

// Report is one run's result.
type Report struct {
	RunID      int64     `json:"run_id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Partitions int       `json:"partitions_checked"`
	Pools      int       `json:"pools_checked"`
	Events     int64     `json:"events_replayed"`
	// FromCheckpoint counts the partitions replayed from their last checkpoint rather than
	// from their first event.
	FromCheckpoint int            `json:"partitions_from_checkpoint"`
	ByKind         map[string]int `json:"findings_by_kind"`
	Findings       []Finding      `json:"findings"`
}

// Clean says whether the run found nothing.
func (r *Report) Clean() bool { return len(r.Findings) == 0 }

// Options narrows a run.
type Options struct {
	// Pool, when set, limits the comparison to one pool (its partitions are still verified whole).
	Pool *engine.PoolKey
	// TransferGrace: a pending transfer younger than this may still be finishing.
	TransferGrace time.Duration
	// Progress, when set, is called after each partition.
	Progress func(done, total int)
	// Repair corrects what can be corrected: drift of an available count (through the repair
	// script, as an audited ADJUSTED event naming the run), ledger rows missing or altered
	// (restored from the stream's verified copies), and half-done transfers (completed).
	Repair bool
	// Full replays every partition from its first event, ignoring checkpoints (which
	// otherwise limit the replay to what is new since the last clean run). Repair runs are
	// always full.
	Full bool
	// Since, when set, leaves out findings about events older than it (counter drift, which
	// concerns the present, is always reported).
	Since time.Time
}

// Reconciler runs reconciliations.
type Reconciler struct {
	eng   *engine.Engine
	store *ledger.Store
}

// New builds a reconciler.
func New(eng *engine.Engine, store *ledger.Store) *Reconciler {
	return &Reconciler{eng: eng, store: store}
}

// Run reconciles every partition (or those holding opts.Pool), records the run and its findings
// in Postgres, and returns the report.
func (r *Reconciler) Run(ctx context.Context, opts Options) (*Report, error) {
	rep := &Report{StartedAt: time.Now().UTC(), ByKind: map[string]int{}}
	if err := r.store.Pool().QueryRow(ctx, `INSERT INTO reconcile_runs (repair) VALUES ($1) RETURNING id`, opts.Repair).Scan(&rep.RunID); err != nil {
		return nil, fmt.Errorf("record run: %w", err)
	}
	parts := make([]int, 0, r.eng.Partitions())
	if opts.Pool != nil {
		pc, err := r.eng.Pool(ctx, opts.Pool.Location, opts.Pool.SKU)
		if err != nil {
			return nil, err
		}
		for s := range pc.Shards {
			parts = append(parts, r.eng.PartitionOf(pc.Location, pc.SKU, s))
		}
		sort.Ints(parts)
	} else {
		for p := range r.eng.Partitions() {
			parts = append(parts, p)
		}
	}
	var lost *Finding
	if opts.Repair && opts.Pool == nil {
		var err error
		if lost, err = r.restoreKeyspace(ctx); err != nil {
			return nil, fmt.Errorf("restore the keyspace: %w", err)
		}
	}
	pools := map[engine.PoolKey]bool{}
	for i, p := range parts {
		n, fromCP, found, err := r.partition(ctx, p, rep.RunID, opts, pools)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		if fromCP {
			rep.FromCheckpoint++
		}
		if opts.Repair && rebuilds(found) {
			found = r.repairByRebuild(ctx, p, rep.RunID, found)
		} else if opts.Repair {
			for i := range found {
				if found[i].fix == nil {
					continue
				}
				if err := found[i].fix(ctx); err != nil {
					found[i].Detail += "; repair failed: " + err.Error()
					continue
				}
				found[i].Repaired = true
			}
		}
		rep.Events += n
		rep.Findings = append(rep.Findings, found...)
		rep.Partitions++
		if opts.Progress != nil {
			opts.Progress(i+1, len(parts))
		}
	}
	if lost != nil {
		if err := r.finishKeyspace(ctx, lost); err != nil {
			lost.Detail += "; repair failed: " + err.Error()
		}
		rep.Findings = append([]Finding{*lost}, rep.Findings...)
	}
	rep.Pools = len(pools)
	for _, f := range rep.Findings {
		rep.ByKind[f.Kind]++
	}
	rep.FinishedAt = time.Now().UTC()
	return rep, r.record(ctx, rep)
}

// partition reconciles one partition and returns the events it replayed, whether it started
// from a checkpoint, and its findings.
func (r *Reconciler) partition(ctx context.Context, p int, run int64, opts Options, pools map[engine.PoolKey]bool) (int64, bool, []Finding, error) {
	snap, err := r.eng.Snapshot(ctx, p)
	if err != nil {
		return 0, false, nil, err
	}
	cp := &checkpoint{State: newReplayState()}
	if !opts.Full && !opts.Repair { // a repair weighs all the evidence
		if cp, err = r.loadCheckpoint(ctx, p, snap.Seq); err != nil {
			return 0, false, nil, err
		}
	}
	start := cp.Seq
	var found []Finding
	add := func(f Finding) { found = append(found, f) }
	if snap.Fence != "" {
		add(Finding{Kind: KindFenced, Partition: p, Shard: -1, Detail: snap.Fence, rebuild: rebuildFence(snap.Fence)})
	}
	// The ledger, and the stream (what it still holds), up to the cut.
	ledgerRows := map[int64]engine.Event{}
	ledgerMax := start
	for after := start; ; {
		page, err := r.store.PartitionEvents(ctx, p, after, 10000)
		if err != nil {
			return 0, false, nil, err
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			ledgerRows[ev.Seq] = ev
		}
		after = page[len(page)-1].Seq
		ledgerMax = after
	}
	if ledgerMax > snap.Seq {
		// Under traffic the persister copies events past the cut while the ledger is read:
		// the ledger is ahead only if Redis, read now, is still behind it.
		now, err := r.eng.Seq(ctx, p)
		if err != nil {
			return 0, false, nil, err
		}
		if ledgerMax > now {
			add(Finding{Kind: KindLedgerAhead, Partition: p, Shard: -1, SeqFrom: now + 1, SeqTo: ledgerMax, Amount: ledgerMax - now,
				Detail:  fmt.Sprintf("the ledger holds events up to seq %d, Redis only up to %d: Redis lost acknowledged writes", ledgerMax, now),
				rebuild: true})
		}
	}
	stream, err := r.streamFrom(ctx, p, start, snap.Seq)
	if err != nil {
		return 0, false, nil, err
	}
	streamRows := make(map[int64]engine.Event, len(stream))
	for _, ev := range stream {
		streamRows[ev.Seq] = ev
	}
	// Assemble events 1..cut: a ledger row that verifies, else the stream's copy. What the
	// ledger lacks or has altered is reported either way; using the stream's copy keeps one
	// fault from showing up again as drift.
	var replay []engine.Event
	var gapFrom, forkFrom, forkTo int64
	// restoreFix writes the stream's copies of seqs from..to back into the ledger, if the
	// stream still has every one of them.
	restoreFix := func(from, to int64) func(context.Context) error {
		var rows []engine.Event
		for seq := from; seq <= to; seq++ {
			sr, ok := streamRows[seq]
			if !ok {
				return nil
			}
			rows = append(rows, sr)
		}
		return func(ctx context.Context) error { return r.store.RestoreRows(ctx, rows) }
	}
	closeGap := func(to int64) {
		if gapFrom > 0 {
			add(Finding{Kind: KindGap, Partition: p, Shard: -1, SeqFrom: gapFrom, SeqTo: to, Amount: to - gapFrom + 1,
				Detail: fmt.Sprintf("events %d to %d are missing from the ledger", gapFrom, to), fix: restoreFix(gapFrom, to)})
			gapFrom = 0
		}
	}
	// contig is the last seq up to which the ledger holds every event: where the next
	// checkpoint may go.
	contig := start
	for seq := start + 1; seq <= snap.Seq; seq++ {
		lr, inLedger := ledgerRows[seq]
		sr, inStream := streamRows[seq]
		if inLedger && contig == seq-1 {
			contig = seq
		}
		switch {
		case inLedger:
			closeGap(seq - 1)
			if lr.ComputeHash() != lr.Hash {
				add(Finding{Kind: KindChainBreak, Partition: p, Location: lr.Location, SKU: lr.SKU, Shard: lr.Shard, SeqFrom: seq, SeqTo: seq,
					Amount: editedAmount(lr, sr, inStream), Detail: "the ledger row's content does not match its hash (edited)",
					fix: restoreFix(seq, seq)})
				if inStream {
					lr = sr
				}
			} else if inStream && sr.Hash != lr.Hash {
				forkTo = seq
				if forkFrom == 0 {
					forkFrom = seq
				}
			}
			replay = append(replay, lr)
		case seq <= ledgerMax: // a hole inside what the ledger holds
			if gapFrom == 0 {
				gapFrom = seq
			}
			if inStream {
				replay = append(replay, sr)
			}
		case inStream: // not persisted yet
			closeGap(seq - 1)
			replay = append(replay, sr)
		default: // neither side has it
			if gapFrom == 0 {
				gapFrom = seq
			}
		}
	}
	closeGap(snap.Seq)
	if forkFrom > 0 {
		add(Finding{Kind: KindFork, Partition: p, Shard: -1, SeqFrom: forkFrom, SeqTo: forkTo, Amount: forkTo - forkFrom + 1, rebuild: true,
			Detail: fmt.Sprintf("the stream and the ledger hold different events under seqs %d to %d: Redis lost acknowledged writes and wrote others", forkFrom, forkTo)})
	}
	found = append(found, verify(p, replay, cp)...)
	// Replay the counters and open holds, from the checkpoint's state.
	state := cp.State
	var atContig *replayState
	for i := range replay {
		state.apply(&replay[i])
		if replay[i].Seq == contig {
			atContig = state.clone()
		}
	}
	shards, open := state.Shards, state.Open
	match := func(loc, sku string) bool {
		return opts.Pool == nil || (opts.Pool.Location == loc && opts.Pool.SKU == sku)
	}
	for f, sc := range snap.Shards {
		var loc, sku string
		var shard int
		fmt.Sscanf(splitField(f), "%s %s %d", &loc, &sku, &shard)
		if !match(loc, sku) {
			continue
		}
		pools[engine.PoolKey{Location: loc, SKU: sku}] = true
		st := shards[f]
		if st == nil {
			st = &shardState{}
		}
		for _, c := range []struct {
			name       string
			live, want int64
		}{{engine.CounterAvailable, sc.Available, st.Available}, {engine.CounterHeld, sc.Held, st.Held},
			{engine.CounterCommitted, sc.Committed, st.Committed}} {
			if c.live != c.want {
				fd := Finding{Kind: KindDrift, Partition: p, Location: loc, SKU: sku, Shard: shard, SeqTo: snap.Seq, Amount: c.live - c.want,
					Detail: fmt.Sprintf("%s is %d in Redis, %d by the ledger", c.name, c.live, c.want)}
				counter, drift, id := c.name, fd.Amount, fmt.Sprintf("rc-%d-%d-%d-%s", run, p, shard, c.name)
				reason := fmt.Sprintf("reconcile run %d: %s drift of %+d removed", run, c.name, drift)
				fd.fix = func(ctx context.Context) error {
					_, _, err := r.eng.RepairDrift(ctx, loc, sku, shard, counter, drift, id, "reconcile", reason)
					return err
				}
				add(fd)
			}
		}
	}
	inRedis := map[string]bool{}
	for _, h := range snap.Holds {
		inRedis[h.Part] = true
		if _, ok := open[h.Part]; !ok && match(h.Location, h.SKU) {
			add(Finding{Kind: KindOrphanHold, Partition: p, Location: h.Location, SKU: h.SKU, Shard: h.Shard, Amount: h.Qty,
				Detail: fmt.Sprintf("hold part %s is in Redis but no event placed it", h.Part)})
		}
	}
	for part, ev := range open {
		if !inRedis[part] && match(ev.Location, ev.SKU) {
			add(Finding{Kind: KindLostHold, Partition: p, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard, SeqFrom: ev.Seq, SeqTo: ev.Seq,
				Amount: ev.Qty, Detail: fmt.Sprintf("hold part %s is open in the ledger but Redis does not have it", part)})
		}
	}
	cutoff := time.Now().Add(-opts.TransferGrace).UnixMilli()
	for _, t := range snap.Transfers {
		if t.TakenAt <= cutoff && match(t.Location, t.SKU) {
			add(Finding{Kind: KindHalfTransfer, Partition: p, Location: t.Location, SKU: t.SKU, Shard: t.FromShard, Amount: t.Qty,
				Detail: fmt.Sprintf("transfer %s took %d units out of shard %d for shard %d and was never completed", t.ID, t.Qty, t.FromShard, t.ToShard),
				fix:    func(ctx context.Context) error { return r.eng.FinishTransfer(ctx, t, "reconcile") }})
		}
	}
	// A partition found clean moves its checkpoint to the last event the ledger holds
	// without a gap, so the next run starts there.
	if len(found) == 0 && !opts.Repair && opts.Pool == nil && atContig != nil {
		if err := r.saveCheckpoint(ctx, p, run, contig, ledgerRows[contig].Hash, atContig); err != nil {
			return 0, false, nil, err
		}
	}
	if !opts.Since.IsZero() {
		found = since(found, replay, opts.Since)
	}
	return int64(len(replay)), start > 0, found, nil
}

// rebuildFence says whether a fence was raised for a fork (by the persister) or by a rebuild
// that did not finish: --repair rebuilds such a partition. Other fences are an operator's.
func rebuildFence(reason string) bool {
	return strings.HasPrefix(reason, ledger.ForkFencePrefix) || strings.HasSuffix(reason, rebuildFenceSuffix) ||
		engine.IsLostFence(reason)
}

// rebuilds says whether --repair rebuilds the partition these findings are about.
func rebuilds(found []Finding) bool {
	for _, f := range found {
		if f.rebuild {
			return true
		}
	}
	return false
}

// repairByRebuild rebuilds partition p from the ledger: on success every finding of the
// partition is repaired, and forked events that could not be carried over are added.
func (r *Reconciler) repairByRebuild(ctx context.Context, p int, run int64, found []Finding) []Finding {
	res, err := r.rebuild(ctx, p, run)
	lead := -1 // the finding that tells what the rebuild did: ledger_ahead or fork before fenced
	for i := range found {
		if found[i].rebuild && (lead < 0 || found[lead].Kind == KindFenced) {
			lead = i
		}
	}
	if err != nil {
		found[lead].Detail += "; repair failed: " + err.Error()
		return found
	}
	found[lead].Detail += "; " + res.String()
	for i := range found {
		found[i].Repaired = true
	}
	return append(found, res.conflicts...)
}

// since keeps the findings that concern events from t on, and those not about one event.
func since(found []Finding, replay []engine.Event, t time.Time) []Finding {
	ts := make(map[int64]int64, len(replay))
	for _, ev := range replay {
		ts[ev.Seq] = ev.TS
	}
	cut := t.UnixMilli()
	var out []Finding
	for _, f := range found {
		if at, ok := ts[f.SeqFrom]; ok && f.Kind != KindDrift && at < cut {
			continue
		}
		out = append(out, f)
	}
	return out
}

// editedAmount is how far an edited ledger row's qty is from the stream's copy (0 if unknown).
func editedAmount(ledgerRow, streamRow engine.Event, inStream bool) int64 {
	if !inStream {
		return 0
	}
	return ledgerRow.Qty - streamRow.Qty
}

func splitField(f string) string {
	b := []byte(f)
	for i := range b {
		if b[i] == '|' {
			b[i] = ' '
		}
	}
	return string(b)
}

// verify checks that each event links to the one before it (the first to the checkpoint)
// and continues its shard's available count (gaps and hashes are checked while the events
// are assembled).
func verify(p int, evs []engine.Event, cp *checkpoint) []Finding {
	var found []Finding
	prevSeq, prevHash := cp.Seq, cp.Hash
	if prevSeq == 0 {
		prevHash = engine.GenesisHash
	}
	after := map[string]int64{}
	for f, st := range cp.State.Shards {
		after[f] = st.Available
	}
	for i := range evs {
		ev := &evs[i]
		if ev.Seq == prevSeq+1 && ev.PrevHash != prevHash {
			found = append(found, Finding{Kind: KindChainBreak, Partition: p, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard,
				SeqFrom: ev.Seq, SeqTo: ev.Seq, Detail: "prev_hash is not the previous event's hash (reordered or replaced)"})
		}
		f := fmt.Sprintf("%s|%s|%d", ev.Location, ev.SKU, ev.Shard)
		if b, ok := after[f]; ok && ev.Seq == prevSeq+1 && b+ev.Delta != ev.After {
			found = append(found, Finding{Kind: KindChainBreak, Partition: p, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard,
				SeqFrom: ev.Seq, SeqTo: ev.Seq, Amount: ev.After - (b + ev.Delta),
				Detail: fmt.Sprintf("available_after %d does not follow %d%+d", ev.After, b, ev.Delta)})
		}
		after[f] = ev.After
		prevSeq, prevHash = ev.Seq, ev.Hash
	}
	return found
}

// record stores the run's summary and findings.
func (r *Reconciler) record(ctx context.Context, rep *Report) error {
	tx, err := r.store.Pool().Begin(ctx)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, f := range rep.Findings {
		if _, err := tx.Exec(ctx, `INSERT INTO reconcile_findings (run_id, kind, partition, location, sku, shard, seq_from, seq_to, amount, detail, repaired)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, rep.RunID, f.Kind, f.Partition, f.Location, f.SKU, f.Shard,
			f.SeqFrom, f.SeqTo, f.Amount, f.Detail, f.Repaired); err != nil {
			return fmt.Errorf("record finding: %w", err)
		}
	}
	status := "clean"
	if !rep.Clean() {
		status = "findings"
	}
	if _, err := tx.Exec(ctx, `UPDATE reconcile_runs SET finished_at = now(), status = $2, events_replayed = $3, findings = $4 WHERE id = $1`,
		rep.RunID, status, rep.Events, len(rep.Findings)); err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	return tx.Commit(ctx)
}
