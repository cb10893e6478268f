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

// Kinds lists every kind of finding.
var Kinds = []string{KindDrift, KindGap, KindChainBreak, KindOrphanHold, KindLostHold, KindHalfTransfer,
	KindLedgerAhead, KindFork, KindFenced}

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
	eng     *engine.Engine
	store   *ledger.Store
	notices LostHoldNotices
}

// LostHoldNotices tells the storefront that was given a hold part that it is gone (see
// engine.LostHold); a second call for the same part changes nothing.
type LostHoldNotices interface {
	HoldLost(ctx context.Context, h engine.LostHold) error
}

// New builds a reconciler.
func New(eng *engine.Engine, store *ledger.Store) *Reconciler {
	return &Reconciler{eng: eng, store: store}
}

// WithNotices makes the repair tell storefronts of the hold parts it could not keep.
func (r *Reconciler) WithNotices(n LostHoldNotices) *Reconciler {
	r.notices = n
	return r
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
