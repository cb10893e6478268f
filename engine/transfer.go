package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
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

// Counters of a shard, as RepairDrift names them.
const (
	CounterAvailable = "available"
	CounterHeld      = "held"
	CounterCommitted = "committed"
)

// BeginTransfer takes units out of one shard for another (the first half of Transfer) and
// leaves the transfer pending; CompleteTransfers or Transfer with the same id finishes it.
func (e *Engine) BeginTransfer(ctx context.Context, location, sku string, from, to int, qty int64, id, actor string) error {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return err
	}
	if from < 0 || from >= p.Shards || to < 0 || to >= p.Shards || from == to || qty < 1 {
		return invalid("shard", "transfer needs two different shards of %s and a positive qty", p.Key())
	}
	r, err := e.run(ctx, "transfer_out", p.partitions[from], e.nowMs(), location, sku, from, qty, id, p.partitions[to], to, actor)
	if err != nil {
		return err
	}
	if r.code() != "OK" {
		return fmt.Errorf("transfer_out %s: %v", id, []any(r))
	}
	return nil
}

// PendingTransfers lists partition p's transfers taken out and not yet settled.
func (e *Engine) PendingTransfers(ctx context.Context, p int) ([]PendingTransfer, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	all, err := e.rdb.HGetAll(ctx, e.ks.parts[p][7]).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read transfers of partition %d: %w", p, redisErr(err))
	}
	var out []PendingTransfer
	for id, v := range all {
		if t, ok := parsePendingTransfer(p, id, v); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// parsePendingTransfer decodes an xfer hash field "o:<id>" →
// "loc|sku|from shard|qty|to partition|to shard|taken at"; other fields are not pending transfers.
func parsePendingTransfer(p int, field, value string) (PendingTransfer, bool) {
	f := strings.Split(value, "|")
	if !strings.HasPrefix(field, "o:") || len(f) != 7 {
		return PendingTransfer{}, false
	}
	t := PendingTransfer{ID: field[2:], Location: f[0], SKU: f[1], FromPartition: p}
	t.FromShard, _ = strconv.Atoi(f[2])
	t.Qty, _ = strconv.ParseInt(f[3], 10, 64)
	t.ToPartition, _ = strconv.Atoi(f[4])
	t.ToShard, _ = strconv.Atoi(f[5])
	t.TakenAt, _ = strconv.ParseInt(f[6], 10, 64)
	return t, true
}

// FinishTransfer completes one pending transfer (applies it to its destination, settles it).
func (e *Engine) FinishTransfer(ctx context.Context, t PendingTransfer, actor string) error {
	return e.finishTransfer(ctx, t, actor)
}
