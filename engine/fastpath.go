package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// reserveOne serves a single-item reservation: from the sold-out memory when it can prove the
// pool short, else on the fast path, which goes on to the slow path when the home shard is
// short.
func (e *Engine) reserveOne(ctx context.Context, rs *reservation) (*Hold, error) {
	if h, err, done := e.fromSoldOut(ctx, rs); done {
		return h, err
	}
	return e.fastPath(ctx, rs)
}

// fastPath places a one-item reservation as one part on its home shard, in one round trip:
// the reserve call, and beside it a SET NX of the key record ("<fp>|F": the answer is the fast
// part) and a read of the record's partition fence. The part's record, or its tombstone, is
// the answer a retry finds. The key record binds the key to this request: another body sent
// with the same key finds it and is refused, whatever pool it names.
func (e *Engine) fastPath(ctx context.Context, rs *reservation) (*Hold, error) {
	p := rs.pools[0]
	ref := partRef{Partition: p.partitions[rs.home[0]], Line: 0, Shard: rs.home[0]}
	hk := holdKey{rs.token, fastAttempt}
	mode := modeFinal
	if p.Shards > 1 {
		mode = modeSlow
	}
	claim := redis.NewStringCmd(ctx, "set", rs.record, rs.fp+"|F", "nx", "get", "px", e.cfg.IdempotencyTTL.Milliseconds())
	fence := redis.NewStringCmd(ctx, "hget", e.ks.partition(rs.kp)[5], "fence")
	r, err := e.place(ctx, rs, hk, ref, rs.req.Items[0].Qty, mode, claim, fence)
	if err != nil {
		return nil, err // the part, if placed, is the answer the retry finds
	}
	if err := nativeErr(claim, fence); err != nil {
		return nil, err
	}
	if reason := fence.Val(); reason != "" {
		return nil, fmt.Errorf("%w: partition %d, which keeps this key's record: %s", ErrFenced, rs.kp, reason)
	}
	if prior := claim.Val(); prior != "" && prior != rs.fp+"|F" {
		// The key names another request, or this one went to the slow path before: a part
		// placed just now reached nobody.
		if r.code() == "OK" && r.str(4) == "new" {
			if err := e.voidParts(context.WithoutCancel(ctx), hk, []partRef{ref}, rs.req.Actor, "key taken"); err != nil {
				return nil, err
			}
		}
		if fp, _, _ := strings.Cut(prior, "|"); fp != rs.fp && fp != anyRequest {
			return nil, ErrIdempotencyMismatch
		}
		return e.slowPath(ctx, rs)
	}
	qty := rs.req.Items[0].Qty
	switch r.code() {
	case "OK":
		h := e.holdFromParts(formatHoldID(hk, []partRef{ref}), r.int(2), rs.req.Customer, []partRef{ref}, []int64{r.int(1)},
			[]bool{r.str(5) == "B"}, rs.pools)
		h.Replayed = r.str(4) == "existing"
		if h.Replayed {
			return h, nil
		}
		e.forgetSoldOut(p.Key())
		return h, nil
	case "ENDED":
		h := e.holdFromParts(formatHoldID(hk, []partRef{ref}), r.int(3), rs.req.Customer, []partRef{ref}, []int64{r.int(2)},
			[]bool{r.str(4) == "B"}, rs.pools) // a sale still owed
		h.Replayed = true
		return h, nil
	case "INSUFFICIENT":
		if mode == modeFinal {
			if !p.queued() { // backorders given back raise no count the memory could watch
				e.rememberShort(p, qty, []shardReading{{avail: r.int(1), rises: r.int(2), inFlight: r.int(3), nextExpiry: r.int(4)}})
			}
			return nil, e.refusal(rs, 0, "INSUFFICIENT", r.int(1)+r.int(3))
		}
		return e.slowPath(ctx, rs)
	case "LIMIT":
		return nil, e.refusal(rs, 0, "LIMIT", r.int(1))
	case "REFUSED":
		return nil, e.refusal(rs, 0, r.str(1), r.int(2))
	case "SLOW", "VOIDED":
		return e.slowPath(ctx, rs)
	case "FENCED":
		// The part may hold this key's answer, unreadable until the partition is repaired:
		// going on elsewhere could give the key a second hold.
		return nil, fencedErr(ref.Partition, r)
	case "IDEM_MISMATCH":
		return nil, ErrIdempotencyMismatch
	case "UNKNOWN_POOL":
		return nil, e.noShard(ctx, p.Key().String()+" has no shard in Redis")
	}
	return nil, fmt.Errorf("reserve: unexpected reply %v", []any(r))
}

// nativeErr is the first error of plain commands, other than "no such key".
func nativeErr(cmds ...redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return redisErr(err)
		}
	}
	return nil
}
