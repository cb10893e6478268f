package engine

import (
	"context"
	"errors"
	"fmt"
)

// Changing a hold: a storefront that changed its mind reduces a hold (one unit fewer: the
// difference comes back at once) or commits part of it (two of the three held: sold, the rest
// released in the same step). Each is one script call on the part's partition and writes one
// event: REDUCED (the units given back; the part keeps the rest), or COMMITTED of the units
// sold whose change of available is the units given back. Both are idempotent by what they
// ask for: reducing to n a part that has n units, or committing n of a part that sold n,
// answers as the first call did.
//
// Only a hold of one part can be changed (one line taken from one shard: a single item, the
// usual hold); a cart or a line taken from several shards is committed or released whole.

// EventReduced gives back some of an open part's units; the part keeps the rest.
const EventReduced = "REDUCED"

// ErrSeveralParts: the hold has several parts; it cannot be reduced or partly committed.
var ErrSeveralParts = errors.New("a hold of several parts cannot be changed")

// ErrBackorderedPart: the hold is backordered; it cannot be reduced or partly committed.
var ErrBackorderedPart = errors.New("a backordered hold cannot be changed")

// ReduceHold reduces a hold of one part to qty units (at least 1, fewer than it has); the
// units given back are available at once. It returns the hold as it is then.
func (e *Engine) ReduceHold(ctx context.Context, holdID string, qty int64, actor string) (*Hold, error) {
	ctx, s := e.startSpan(ctx, "reduce_hold")
	e.holdPartitions(s, holdID)
	h, err := e.changeHold(ctx, holdID, "REDUCE", qty, actor)
	if err == nil {
		h, err = e.getHold(ctx, holdID, actor)
	}
	s.end(err)
	return h, err
}

// CommitPart sells qty units of a hold of one part (at least 1, at most what it holds) and
// releases the rest in the same step. Sent again with the same qty, it answers the same.
func (e *Engine) CommitPart(ctx context.Context, holdID string, qty int64, actor string) error {
	ctx, s := e.startSpan(ctx, "commit_part")
	e.holdPartitions(s, holdID)
	_, err := e.changeHold(ctx, holdID, "COMMIT", qty, actor)
	s.end(err)
	return err
}

func (e *Engine) changeHold(ctx context.Context, holdID, op string, qty int64, actor string) (*Hold, error) {
	h, err := e.parseHold(ctx, holdID, actor)
	if err != nil {
		return nil, err
	}
	if qty < 1 || qty > e.cfg.MaxQty {
		return nil, invalid("qty", "must be 1..%d", e.cfg.MaxQty)
	}
	if len(h.refs) != 1 {
		return nil, fmt.Errorf("%w: it has %d parts (a cart, or units from several shards); commit or release it whole", ErrSeveralParts, len(h.refs))
	}
	ref := h.refs[0]
	r, err := e.run(ctx, "hold_change", ref.Partition, e.nowMs(), h.key.part(ref), op, qty, h.actor,
		e.cfg.IdempotencyTTL.Milliseconds(), h.owner)
	if err != nil {
		return nil, err
	}
	switch r.code() {
	case "OK", "SAME":
		return nil, nil
	case "TOO_MANY":
		if op == "REDUCE" {
			return nil, invalid("qty", "the hold has %d units: reduce it to fewer, at least 1", r.int(1))
		}
		return nil, invalid("qty", "the hold has %d units: commit at most that many", r.int(1))
	case "ENDED":
		if op == "COMMIT" && r.str(1) == StatusCommitted && len(r) > 2 && r.int(2) == qty {
			return nil, nil // a retry
		}
		if r.str(1) == StatusCommitted && len(r) > 2 {
			return nil, fmt.Errorf("%w: %d units were sold", ErrHoldCommitted, r.int(2))
		}
		return nil, endedErr(r.str(1))
	case "BACKORDERED":
		return nil, fmt.Errorf("%w: its units have not come yet; commit or release it whole", ErrBackorderedPart)
	}
	_, err = partOutcome(ref.Partition, r)
	return nil, err
}
