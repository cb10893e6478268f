package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The slow path serves what one call on one shard cannot: a cart, or a line that needs units
// from several shards (or, on a pool with a per-customer limit, units moved to the customer's
// shard first). It runs as an attempt under the request's key record (see claim.lua): one
// attempt at a time holds the request; copies of the request wait for its outcome and give
// the same answer. The attempt places parts whose ids carry its own name, so a part id names
// one placement. It ends by writing the answer, or the refusal, into the key record (settle);
// parts that no answer names are voided, never released, so events tell them apart.
//
// A reply lost on the way (timeout, connection reset) leaves the attempt's effects unknown:
// the attempt then gives nothing back blindly. It tries to void every part it could have
// placed and to remove its claim; if even that cannot be done, its lease lapses and the next
// copy of the request takes over, voiding the same parts first.

// errTakenOver: another attempt took the request over (this one's lease lapsed).
var errTakenOver = errors.New("the request was taken over by a later attempt")

// slowPath claims the request's key record and runs an attempt, or waits for the attempt that
// holds it and gives its answer.
func (e *Engine) slowPath(ctx context.Context, rs *reservation) (*Hold, error) {
	wait, started := 5*time.Millisecond, time.Now()
	for {
		attempt := newAttempt()
		r, err := e.call(ctx, "claim", rs.kp, rs.record, rs.fp, attempt, e.cfg.IdempotencyLease.Milliseconds(),
			e.cfg.IdempotencyTTL.Milliseconds())
		if err != nil {
			return nil, err
		}
		switch r.code() {
		case "TAKEOVER":
			if err := e.voidAttempt(ctx, rs, holdKey{rs.token, r.str(1)}, nil, "taken over"); err != nil {
				return nil, err
			}
			fallthrough
		case "START":
			h, err := e.runAttempt(ctx, rs, holdKey{rs.token, attempt})
			if errors.Is(err, errTakenOver) {
				continue
			}
			return h, err
		case "WAIT":
			if !waitTurn(ctx, started, e.cfg.IdempotencyLease+e.cfg.RedisTimeout, &wait) {
				return nil, fmt.Errorf("%w (until %s at the latest)", ErrInProgress, time.UnixMilli(r.int(1)).UTC().Format(time.RFC3339Nano))
			}
		case "ANSWER":
			return e.decodeAnswer(r.str(1), rs)
		case "REFUSED":
			return nil, e.refusal(rs, int(r.int(3)), r.str(1), r.int(2))
		case "IDEM_MISMATCH":
			return nil, ErrIdempotencyMismatch
		case "FENCED":
			return nil, fmt.Errorf("%w: partition %d, which keeps this key's record: %s", ErrFenced, rs.kp, r.str(1))
		default:
			return nil, fmt.Errorf("claim: unexpected reply %v", []any(r))
		}
	}
}

// placedPart is one part an attempt placed.
type placedPart struct {
	ref         partRef
	qty         int64
	backordered bool
}

// lineResult is how one line of an attempt ended.
type lineResult struct {
	line  int
	parts []placedPart
	err   error
	// unsure: a reply was lost, so parts other than those listed may have been placed.
	unsure bool
}

// runAttempt places every line of rs (all at once, so their calls share round trips) as
// attempt hk, and settles the outcome in the key record.
func (e *Engine) runAttempt(ctx context.Context, rs *reservation, hk holdKey) (*Hold, error) {
	results := make([]lineResult, len(rs.req.Items))
	var wg sync.WaitGroup
	for li := range rs.req.Items {
		wg.Go(func() { results[li] = e.placeLine(ctx, rs, hk, li); results[li].line = li })
	}
	wg.Wait()
	var refs []partRef
	var qtys []int64
	var bos []bool
	var failed *lineResult
	unsure := false
	for i, res := range results {
		for _, pp := range res.parts {
			refs = append(refs, pp.ref)
			qtys = append(qtys, pp.qty)
			bos = append(bos, pp.backordered)
		}
		unsure = unsure || res.unsure
		if res.err != nil && (failed == nil || errors.Is(res.err, errTakenOver)) {
			failed = &results[i]
		}
	}
	order := partOrder(refs)
	sortedRefs, sortedQtys, sortedBos := make([]partRef, len(refs)), make([]int64, len(refs)), make([]bool, len(refs))
	for i, j := range order {
		sortedRefs[i], sortedQtys[i], sortedBos[i] = refs[j], qtys[j], bos[j]
	}
	refs, qtys, bos = sortedRefs, sortedQtys, sortedBos
	if failed == nil && len(refs) > maxHoldParts {
		failed = &lineResult{err: fmt.Errorf("%w: the hold would need %d parts, at most %d", ErrUnavailable, len(refs), maxHoldParts)}
	}
	if failed != nil {
		return nil, e.endAttempt(ctx, rs, hk, refs, unsure, failed.line, failed.err)
	}
	id := formatHoldID(hk, refs)
	answer := encodeAnswer(id, rs.exp, qtys, bos)
	r, err := e.call(ctx, "settle", rs.kp, rs.record, hk.attempt, rs.fp+"|A|"+answer, e.cfg.IdempotencyTTL.Milliseconds())
	if err != nil {
		if ambiguous(err) {
			return nil, err // the answer may be stored: give nothing back
		}
		return nil, e.endAttempt(ctx, rs, hk, refs, false, 0, err)
	}
	if r.code() != "OK" {
		// Taken over: the later attempt voids these parts too; void them now all the same.
		e.voidParts(context.WithoutCancel(ctx), hk, refs, rs.req.Actor, "taken over")
		return nil, errTakenOver
	}
	for _, p := range rs.pools {
		e.forgetSoldOut(p.Key())
	}
	return e.holdFromParts(id, rs.exp, rs.req.Customer, refs, qtys, bos, rs.pools), nil
}

// endAttempt ends an attempt that did not produce a hold: it voids the parts (every part it
// could have placed, when unsure which), then records a refusal of stock or of the customer's
// limit (line's) in the key record, or removes its claim on anything else, so the request
// may be sent again at once. It returns the error to give the caller: cause, or
// ErrUnavailable when the attempt could not be cleaned up (its lease lapses, and the next
// copy of the request takes over).
func (e *Engine) endAttempt(ctx context.Context, rs *reservation, hk holdKey, placed []partRef, unsure bool, line int, cause error) error {
	if errors.Is(cause, errTakenOver) {
		e.voidParts(context.WithoutCancel(ctx), hk, placed, rs.req.Actor, "taken over")
		return cause
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RedisTimeout)
	defer cancel()
	if err := e.voidAttempt(ctx, rs, hk, placedOrAll(placed, unsure), "refused"); err != nil {
		return fmt.Errorf("%w: giving back a failed attempt's parts: %w (they come back when the request is sent again after %s)",
			ErrUnavailable, err, e.cfg.IdempotencyLease)
	}
	value, keep := "", e.cfg.IdempotencyTTL
	var ie *InsufficientError
	var le *LimitError
	switch {
	case errors.As(cause, &ie):
		value, keep = refusedRecord(rs.fp, "INSUFFICIENT", ie.Available, line), e.refusalKeep(rs)
	case errors.As(cause, &le):
		value, keep = refusedRecord(rs.fp, "LIMIT", le.Used, line), e.refusalKeep(rs)
	}
	r, err := e.call(ctx, "settle", rs.kp, rs.record, hk.attempt, value, keep.Milliseconds())
	if err != nil {
		return fmt.Errorf("%w: recording the outcome of a failed attempt: %w", ErrUnavailable, err)
	}
	if r.code() != "OK" {
		return errTakenOver
	}
	return cause
}

// refusedRecord is a key record's value for a refusal of line.
func refusedRecord(fp, code string, n int64, line int) string {
	return fp + "|X|" + code + "|" + strconv.FormatInt(n, 10) + "|" + strconv.Itoa(line)
}

// placedOrAll is nil (every part the attempt could have placed) when the attempt is unsure.
func placedOrAll(placed []partRef, unsure bool) []partRef {
	if unsure {
		return nil
	}
	return placed
}

// voidAttempt voids the named parts of attempt hk, or, with refs nil, every part it could
// have placed: one per line and shard.
func (e *Engine) voidAttempt(ctx context.Context, rs *reservation, hk holdKey, refs []partRef, reason string) error {
	if refs == nil {
		for li, p := range rs.pools {
			for s, part := range p.partitions {
				refs = append(refs, partRef{Partition: part, Line: li, Shard: s})
			}
		}
	}
	return e.voidParts(ctx, hk, refs, rs.req.Actor, reason)
}

// placeLine takes line li's units for attempt hk, as one part on one shard: the line's
// target (the customer's home shard on a pool with a per-customer limit, whose partition
// counts the customer's units; else the fullest shard) gets the units it lacks moved to it
// from the fullest other shards first, then the part is placed there in one call.
//
// No part is placed that the line might give back: a part taken from several shards one by
// one, and given back when the last could not be had, would have held units that a
// concurrent request was refused meanwhile. Units in flight between shards count for the
// shard they left (its "|t"), so nobody is refused for not seeing them. The line is refused
// only when provenShort proves the pool had fewer units than it needs.
func (e *Engine) placeLine(ctx context.Context, rs *reservation, hk holdKey, li int) lineResult {
	p, qty := rs.pools[li], rs.req.Items[li].Qty
	if p.queued() {
		return e.placeQueued(ctx, rs, hk, li)
	}
	limited := p.CustomerLimit > 0
	var res lineResult
	for round := 0; ; round++ {
		if err := ctx.Err(); err != nil {
			res.err, res.unsure = fmt.Errorf("%w: %w", ErrUnavailable, err), true
			return res
		}
		readings, err := e.readShards(ctx, p)
		if err != nil {
			res.err = err
			return res
		}
		var free int64 // units the pool has: available, and in flight between its shards
		target := -1
		for s, r := range readings {
			if r.fenced {
				rs.setFenced(li, s)
			}
			if rs.isFenced(li, s) {
				continue
			}
			free += max(r.avail, 0) + r.inFlight
			if target < 0 || r.avail > readings[target].avail {
				target = s
			}
		}
		if limited {
			target = rs.home[li]
			if rs.isFenced(li, target) {
				res.err = fmt.Errorf("%w: partition %d holds customer %s's shard of %s", ErrFenced, p.partitions[target], rs.req.Customer, p.Key())
				return res
			}
		}
		if target < 0 {
			res.err = fmt.Errorf("%w: every shard of %s is fenced", ErrFenced, p.Key())
			return res
		}
		if free < qty {
			proven, err := e.provenShort(ctx, p, qty, readings)
			if err != nil {
				res.err = err
				return res
			}
			if proven {
				res.err = e.refusal(rs, li, "INSUFFICIENT", free)
				return res
			}
			e.sweepDue(ctx, p, readings)
			continue
		}
		if err := e.gather(ctx, p, target, qty-readings[target].avail, readings, hk.String()+"."+strconv.Itoa(li)+"."+strconv.Itoa(round)); err != nil {
			res.err = err
			return res
		}
		ref := partRef{Partition: p.partitions[target], Line: li, Shard: target}
		r, err := e.place(ctx, rs, hk, ref, qty, modePart)
		if err != nil {
			res.err, res.unsure = err, ambiguous(err)
			return res
		}
		switch r.code() {
		case "OK":
			res.parts = []placedPart{{ref, r.int(1), false}}
			return res
		case "INSUFFICIENT":
			continue // others took the units there meanwhile: read again
		case "FENCED":
			rs.setFenced(li, target)
			continue
		case "LIMIT":
			res.err = e.refusal(rs, li, "LIMIT", r.int(1))
		case "VOIDED":
			res.err = errTakenOver
		case "UNKNOWN_POOL":
			res.err = e.noShard(ctx, fmt.Sprintf("%s has no shard %d in Redis", p.Key(), target))
		default:
			res.err = fmt.Errorf("reserve: unexpected reply %v", []any(r))
		}
		return res
	}
}

// gather moves need units to shard target from the fullest other shards (not fenced), as
// transfers named after id (transfers change no pool's total); a source found short or
// fenced is skipped.
func (e *Engine) gather(ctx context.Context, p *pool, target int, need int64, readings []shardReading, id string) error {
	order := make([]int, 0, p.Shards)
	for s, r := range readings {
		if s != target && r.avail > 0 {
			order = append(order, s)
		}
	}
	sort.Slice(order, func(i, j int) bool { return readings[order[i]].avail > readings[order[j]].avail })
	for _, s := range order {
		if need <= 0 {
			return nil
		}
		if readings[s].fenced {
			continue
		}
		moved, err := e.Transfer(ctx, p.Location, p.SKU, s, target, min(need, readings[s].avail), id+"."+strconv.Itoa(s), "engine")
		if err != nil && !errors.Is(err, ErrInsufficient) && !errors.Is(err, ErrFenced) {
			return err
		}
		need -= moved
	}
	return nil
}

// sweepDue restores the due holds of the pool's partitions that readings found, so the next
// reading counts their units.
func (e *Engine) sweepDue(ctx context.Context, p *pool, readings []shardReading) {
	now := e.nowMs()
	for s, r := range readings {
		if r.nextExpiry >= 0 && r.nextExpiry <= now {
			e.Sweep(ctx, p.partitions[s], e.cfg.ReclaimInline, 0)
		}
	}
}

// placeQueued places line li on a pool with an inventory policy (of one shard): its one call
// decides, atomically, whether the units are held, backordered or refused (nothing is taken
// while backorders wait, so the counts a reading shows are not what the call goes by).
func (e *Engine) placeQueued(ctx context.Context, rs *reservation, hk holdKey, li int) lineResult {
	p := rs.pools[li]
	ref := partRef{Partition: p.partitions[0], Line: li, Shard: 0}
	var res lineResult
	r, err := e.place(ctx, rs, hk, ref, rs.req.Items[li].Qty, modePart)
	if err != nil {
		res.err, res.unsure = err, ambiguous(err)
		return res
	}
	switch r.code() {
	case "OK":
		res.parts = []placedPart{{ref, r.int(1), r.str(5) == "B"}}
	case "INSUFFICIENT", "LIMIT":
		res.err = e.refusal(rs, li, r.code(), r.int(1))
	case "FENCED":
		rs.setFenced(li, 0)
		res.err = fencedErr(ref.Partition, r)
	case "VOIDED":
		res.err = errTakenOver
	case "UNKNOWN_POOL":
		res.err = e.noShard(ctx, p.Key().String()+" has no shard in Redis")
	default:
		res.err = fmt.Errorf("reserve: unexpected reply %v", []any(r))
	}
	return res
}
