package engine

import (
	"context"
	"fmt"
	"strings"
)

// Transfer moves up to qty units from one shard of a pool to another (rebalancing), and
// returns how many moved. It is idempotent by id: transfer_out, transfer_in and settle each
// check it, so a retry, or CompleteTransfers after a crash, finishes the move exactly once.
func (e *Engine) Transfer(ctx context.Context, location, sku string, from, to int, qty int64, id, actor string) (int64, error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return 0, err
	}
	switch {
	case from < 0 || from >= p.Shards || to < 0 || to >= p.Shards || from == to:
		return 0, invalid("shard", "transfer needs two different shards of %s (0..%d)", p.Key(), p.Shards-1)
	case qty < 1:
		return 0, invalid("qty", "must be positive")
	case !idemKeyPattern.MatchString(id):
		return 0, invalid("transfer_id", "must match %s", idemKeyPattern)
	}
	if err := e.checkActor(actor); err != nil {
		return 0, err
	}
	src, dst := p.partitions[from], p.partitions[to]
	r, err := e.run(ctx, "transfer_out", src, e.nowMs(), location, sku, from, qty, id, dst, to, actor)
	if err != nil {
		return 0, err
	}
	switch r.code() {
	case "OK":
	case "ENDED":
		return qty, nil // settled by an earlier call
	case "INSUFFICIENT":
		return 0, &InsufficientError{Location: location, SKU: sku, Requested: qty, Available: r.int(1)}
	case "FENCED":
		return 0, fencedErr(src, r)
	case "UNKNOWN_POOL":
		return 0, e.noShard(ctx, fmt.Sprintf("%s has no shard %d in Redis", p.Key(), from))
	default:
		return 0, fmt.Errorf("transfer_out: unexpected reply %v", []any(r))
	}
	if err := e.finishTransfer(ctx, PendingTransfer{ID: id, Location: location, SKU: sku, FromShard: from,
		FromPartition: src, Qty: qty, ToPartition: dst, ToShard: to}, actor); err != nil {
		return 0, err
	}
	return qty, nil
}

// finishTransfer applies a taken-out transfer to its destination, settles it at the source,
// and only then lets the destination forget that it applied it.
func (e *Engine) finishTransfer(ctx context.Context, t PendingTransfer, actor string) error {
	r, err := e.run(ctx, "transfer_in", t.ToPartition, e.nowMs(), t.Location, t.SKU, t.ToShard, t.Qty, t.ID,
		t.FromPartition, t.FromShard, actor)
	if err != nil {
		return err
	}
	switch r.code() {
	case "OK":
	case "FENCED":
		return fencedErr(t.ToPartition, r)
	default:
		return fmt.Errorf("transfer_in %s: unexpected reply %v", t.ID, []any(r))
	}
	keep := e.cfg.IdempotencyTTL.Milliseconds()
	if _, err = e.run(ctx, "transfer_settle", t.FromPartition, e.nowMs(), t.ID, keep); err != nil {
		return err
	}
	_, err = e.run(ctx, "transfer_done", t.ToPartition, e.nowMs(), t.ID, keep)
	return err
}

// CompleteTransfers finishes every transfer of partition p that was taken out but not
// settled (its process stopped half-way). It returns how many it completed.
func (e *Engine) CompleteTransfers(ctx context.Context, p int, actor string) (int, error) {
	pending, err := e.PendingTransfers(ctx, p)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range pending {
		if err := e.finishTransfer(ctx, t, actor); err != nil {
			return n, fmt.Errorf("complete transfer %s: %w", t.ID, err)
		}
		n++
	}
	return n, nil
}

// SweepResult is what one sweep call did on one partition.
type SweepResult struct {
	Restored   int   // expired hold parts whose units came back
	NextExpiry int64 // unix ms of the partition's next expiry; -1 when no hold is open
	Forgotten  int   // idempotency records and tombstones removed
}

// Sweep restores up to limit expired hold parts of partition p (expiry <= now) and forgets
// up to gcLimit records past their retention. Safe to run from many processes at once.
func (e *Engine) Sweep(ctx context.Context, p, limit, gcLimit int) (SweepResult, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return SweepResult{}, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	r, err := e.run(ctx, "sweep", p, e.nowMs(), limit, gcLimit, e.cfg.IdempotencyTTL.Milliseconds())
	if err != nil {
		return SweepResult{}, err
	}
	if r.code() == "FENCED" {
		return SweepResult{}, fencedErr(p, r)
	}
	e.stats.Expired.Add(r.int(0))
	return SweepResult{Restored: int(r.int(0)), NextExpiry: r.int(1), Forgotten: int(r.int(2))}, nil
}

// Fence makes every writing script on partition p refuse until Unfence.
func (e *Engine) Fence(ctx context.Context, p int, reason string) error {
	if err := validateReason(reason); err != nil {
		return err
	}
	if reason == "" {
		return invalid("reason", "a fence needs a reason")
	}
	_, err := e.run(ctx, "fence", p, e.nowMs(), "1", reason)
	return err
}

// Unfence lifts partition p's fence and returns the reason it was raised for.
func (e *Engine) Unfence(ctx context.Context, p int) (string, error) {
	r, err := e.run(ctx, "fence", p, e.nowMs(), "0", "")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(r.str(1)), nil
}

// Counters of a shard, as RepairDrift names them.
const (
	CounterAvailable = "available"
	CounterHeld      = "held"
	CounterCommitted = "committed"
)

// RepairDrift takes drift units off one of a shard's counters (a change made behind the
// engine's back, measured by reconciliation), writing an audited ADJUSTED event with delta 0
// and held_delta 0. It is idempotent by id and works on fenced partitions. It returns the
// counter before and after.
func (e *Engine) RepairDrift(ctx context.Context, location, sku string, shard int, counter string, drift int64, id, actor, reason string) (int64, int64, error) {
	suffix, ok := map[string]string{CounterAvailable: "", CounterHeld: "h", CounterCommitted: "c"}[counter]
	if !ok {
		return 0, 0, invalid("counter", "must be %s, %s or %s", CounterAvailable, CounterHeld, CounterCommitted)
	}
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return 0, 0, err
	}
	if shard < 0 || shard >= p.Shards {
		return 0, 0, invalid("shard", "%s has shards 0..%d", p.Key(), p.Shards-1)
	}
	if !idemKeyPattern.MatchString(id) {
		return 0, 0, invalid("repair_id", "must match %s", idemKeyPattern)
	}
	if err := validateReason(reason); err != nil {
		return 0, 0, err
	}
	r, err := e.run(ctx, "repair", p.partitions[shard], e.nowMs(), location, sku, shard, drift, id, actor, reason,
		e.cfg.IdempotencyTTL.Milliseconds(), suffix)
	if err != nil {
		return 0, 0, err
	}
	switch r.code() {
	case "OK":
		return r.int(1), r.int(2), nil
	case "INSUFFICIENT":
		return 0, 0, &InsufficientError{Location: location, SKU: sku, Requested: drift, Available: r.int(1)}
	case "UNKNOWN_POOL":
		return 0, 0, fmt.Errorf("%w: %s has no shard %d in Redis", ErrUnknownPool, p.Key(), shard)
	}
	return 0, 0, fmt.Errorf("repair: unexpected reply %v", []any(r))
}
