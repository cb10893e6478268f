package engine

import (
	"context"
	"fmt"
	"strings"
)

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
