package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// AdjustOutcome is what became of one change of AdjustMany: its result, or the error Adjust
// would have given.
type AdjustOutcome struct {
	Result *AdjustResult
	Err    error
}

// AdjustMany applies vendor's changes, each as Adjust would apply it alone, and the changes of
// any one pool in the order given; it is how an import applies a batch of rows without a
// round trip per row. The pools are read in one round trip, the transaction ids claimed in
// another, then the changes of single-shard pools go as one adjust_batch call per partition,
// all in one pipeline; changes of sharded pools go through Adjust, one at a time in order.
// A change of a pool that is not vendor's is refused as ErrUnknownPool. A change whose call
// Redis did not answer gets ErrUnavailable: it may or may not have been made, and sending it
// again with the same transaction id makes it at most once.
func (e *Engine) AdjustMany(ctx context.Context, vendor string, reqs []AdjustRequest) []AdjustOutcome {
	out := make([]AdjustOutcome, len(reqs))
	pools := e.poolsFor(ctx, reqs, out)
	for i := range reqs {
		if out[i].Err == nil && pools[i].Vendor != vendor {
			out[i].Err = fmt.Errorf("%w: vendor %s has no %s at %s", ErrUnknownPool, vendor, reqs[i].SKU, reqs[i].Location)
		}
	}
	fps := make([]string, len(reqs))
	claims := make([]*redis.StringCmd, len(reqs))
	var cmds []redis.Cmder
	for i, r := range reqs {
		if out[i].Err != nil {
			continue
		}
		fps[i] = r.fingerprint()
		claims[i] = e.claimCmd(ctx, pools[i].Vendor, r.TransactionID, fps[i])
		cmds = append(cmds, claims[i])
	}
	if len(cmds) > 0 {
		_ = e.plain(ctx, cmds...)
	}
	// The single-shard changes, by partition, in order; a pool with a sharded change is left
	// to Adjust, in order. A pool whose change could not be made now is stopped there.
	byPart := map[batchKey][]int{}
	var parts []batchKey
	var sharded []int
	stopped := map[PoolKey]bool{}
	for i, r := range reqs {
		k := PoolKey{r.Location, r.SKU}
		if out[i].Err == nil && stopped[k] {
			out[i].Err = afterFailure(r)
		}
		if out[i].Err != nil {
			stopped[k] = stopped[k] || retryable(out[i].Err)
			continue
		}
		if err := claimed(claims[i], r.TransactionID, fps[i]); err != nil {
			out[i].Err = err
			stopped[k] = stopped[k] || retryable(err)
			continue
		}
		if pools[i].Shards > 1 {
			sharded = append(sharded, i)
			continue
		}
		bk := batchKey{pools[i].partitions[0], r.Actor}
		if _, seen := byPart[bk]; !seen {
			parts = append(parts, bk)
		}
		byPart[bk] = append(byPart[bk], i)
	}
	e.adjustBatches(ctx, reqs, pools, fps, parts, byPart, out)
	for _, i := range sharded {
		k := pools[i].Key()
		if stopped[k] {
			out[i].Err = afterFailure(reqs[i])
			continue
		}
		res, err := e.adjustSharded(ctx, pools[i], reqs[i], pools[i].Vendor+":"+reqs[i].TransactionID, fps[i])
		out[i] = AdjustOutcome{Result: res, Err: err}
		stopped[k] = retryable(err)
	}
	return out
}

// retryable reports an error that says a change could not be made now, not that it was
// refused: sent again, it may be made.
func retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrFenced) || errors.Is(err, ErrInProgress) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// afterFailure is the error of a change not tried because an earlier change of its pool could
// not be made now: made out of order, a later change could change what the earlier one does.
func afterFailure(r AdjustRequest) error {
	return fmt.Errorf("%w: an earlier change of %s at %s in the batch could not be made now", ErrUnavailable, r.SKU, r.Location)
}

// After is a pool's (or shard's) available count after a change of kind and qty (as Adjust
// takes them) from before.
func After(kind string, qty, before int64) int64 {
	switch kind {
	case Set:
		return qty
	case Spoilage:
		return before - qty
	}
	return before + qty // RESTOCK, ADJUSTMENT
}

// poolsFor validates reqs and finds each one's pool (from the cache, the others in one round
// trip), setting out[i].Err for a change that is invalid or names no pool.
func (e *Engine) poolsFor(ctx context.Context, reqs []AdjustRequest, out []AdjustOutcome) []*pool {
	pools := make([]*pool, len(reqs))
	keys := make([]PoolKey, 0, len(reqs))
	for i := range reqs {
		if err := validateAdjust(&reqs[i]); err != nil {
			out[i].Err = err
			continue
		}
		keys = append(keys, PoolKey{reqs[i].Location, reqs[i].SKU})
	}
	found, err := e.poolsOf(ctx, keys)
	for i := range reqs {
		if out[i].Err != nil {
			continue
		}
		k := PoolKey{reqs[i].Location, reqs[i].SKU}
		switch pools[i] = found[k]; {
		case pools[i] != nil:
		case err != nil:
			out[i].Err = err
		default:
			out[i].Err = e.noShard(ctx, k.SKU+" at "+k.Location)
		}
	}
	return pools
}

// batchKey names one adjust_batch call: the changes of one partition by one actor.
type batchKey struct {
	p     int
	actor string
}

// adjustBatches sends one adjust_batch call per partition and actor, all in one pipeline, and
// reads each change's reply.
func (e *Engine) adjustBatches(ctx context.Context, reqs []AdjustRequest, pools []*pool, fps []string, parts []batchKey, byPart map[batchKey][]int, out []AdjustOutcome) {
	if len(parts) == 0 {
		return
	}
	calls := make([]opCall, len(parts))
	keep := e.cfg.IdempotencyTTL.Milliseconds()
	for c, k := range parts {
		// The actor, retention and ceiling come once (all the changes of one call share them).
		args := make([][]any, 1, 1+len(byPart[k]))
		args[0] = []any{owner(k.actor), keep, MaxAvailable}
		for _, i := range byPart[k] {
			r, pl := reqs[i], pools[i]
			args = append(args, []any{pl.Location, pl.SKU, r.Kind, r.Qty, pl.Vendor + ":" + r.TransactionID, fps[i], r.Reason})
		}
		calls[c] = opCall{name: "adjust_batch", p: k.p, args: args}
	}
	replies, errs := e.runAll(ctx, e.nowMs(), calls)
	for c, k := range parts {
		idx := byPart[k]
		if errs[c] == nil && replies[c].code() == "FENCED" {
			errs[c] = fencedErr(k.p, replies[c])
		}
		if errs[c] == nil && len(replies[c]) != len(idx) {
			errs[c] = fmt.Errorf("adjust_batch on partition %d: %d replies for %d changes", k.p, len(replies[c]), len(idx))
		}
		for j, i := range idx {
			if errs[c] != nil {
				out[i].Err = errs[c]
				continue
			}
			switch r := replies[c][j].(type) {
			case int64: // made now: the count before it
				out[i].Result = &AdjustResult{Before: r, After: After(reqs[i].Kind, reqs[i].Qty, r)}
			case []any:
				out[i].Result, out[i].Err = e.adjustReply(ctx, pools[i], 0, reqs[i].Qty, reqs[i].TransactionID, reply(r))
			default:
				out[i].Err = fmt.Errorf("adjust_batch: unexpected reply %v", r)
				continue
			}
			if out[i].Err == nil && out[i].Result.After > out[i].Result.Before {
				e.forgetSoldOut(pools[i].Key())
			}
		}
	}
}
