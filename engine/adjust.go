package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode"

	"github.com/redis/go-redis/v9"
)

// Kinds of vendor stock change.
const (
	Restock    = "RESTOCK"    // +qty units arrived
	Spoilage   = "SPOILAGE"   // -qty units written off
	Adjustment = "ADJUSTMENT" // signed correction
	Set        = "SET"        // available := qty
)

// maxAdjust bounds one change, far above any real delivery, to keep counters sane.
const maxAdjust = 1_000_000_000

// MaxAvailable is the most units a pool may have available: a change is refused when it would
// lift the pool's total above it, and in Redis when it would lift the shard's own count above
// it. Redis Lua prints numbers with 14 significant digits, so counters and the numbers in the
// ledger's canonical event strings must stay below 10^14; even racing changes followed by
// transfers that gather a 64-shard pool into one shard stay below 64·10^12.
const MaxAvailable = 1_000_000_000_000

// AdjustRequest is a vendor's change to a pool's available units.
type AdjustRequest struct {
	Location, SKU string
	Kind          string
	// Qty: units for RESTOCK and SPOILAGE (> 0), signed change for ADJUSTMENT (!= 0), and the
	// new available count for SET (>= 0).
	Qty int64
	// TransactionID makes the change idempotent: a retry changes nothing more.
	TransactionID string
	Actor         string
	Reason        string
}

// AdjustResult is the pool's available units before and after the change.
type AdjustResult struct {
	Before   int64 `json:"previous_available"`
	After    int64 `json:"new_available"`
	Replayed bool  `json:"replayed"`
}

func validateReason(reason string) error {
	if len(reason) > 256 {
		return invalid("reason", "at most 256 bytes")
	}
	if strings.ContainsFunc(reason, func(r rune) bool { return r == '|' || unicode.IsControl(r) }) {
		return invalid("reason", "must not contain '|' or control characters")
	}
	return nil
}

func validateAdjust(req *AdjustRequest) error {
	if err := validatePoolKey(req.Location, req.SKU); err != nil {
		return err
	}
	if req.Qty > maxAdjust || req.Qty < -maxAdjust {
		return invalid("quantity", "must be within ±%d", maxAdjust)
	}
	switch req.Kind {
	case Restock, Spoilage:
		if req.Qty <= 0 {
			return invalid("quantity", "%s needs a positive quantity", req.Kind)
		}
	case Adjustment:
		if req.Qty == 0 {
			return invalid("quantity", "ADJUSTMENT needs a non-zero quantity")
		}
	case Set:
		if req.Qty < 0 {
			return invalid("quantity", "SET needs a quantity of at least 0")
		}
	default:
		return invalid("change_type", "must be one of RESTOCK, SPOILAGE, ADJUSTMENT, SET")
	}
	if !idemKeyPattern.MatchString(req.TransactionID) {
		return invalid("transaction_id", "required, must match %s", idemKeyPattern)
	}
	if req.Actor != "" && !idPattern.MatchString(req.Actor) {
		return invalid("actor", "must match %s", idPattern)
	}
	return validateReason(req.Reason)
}

// Adjust applies a vendor's stock change, whole and once, or not at all.
//
// A transaction id names one change of the pool's vendor: the vendor's record of it (in the
// partition its name picks) refuses the same id for another change, whichever pool it names,
// and another vendor's ids never collide with it. A single-shard pool changes in one atomic
// call. On a sharded pool the whole change is applied in one atomic call on one shard, the
// transaction's own (picked by its id, so a retry finds it): a removal first moves units to
// that shard from the others (transfers change no pool's total), an addition is spread over
// the shards afterwards the same way. A removal larger than the pool has is refused
// (ErrInsufficient) only once the shortage is proved (see soldout.go); one that keeps racing
// reservations for the units is refused as ErrUnavailable. Either way nothing changed.
func (e *Engine) Adjust(ctx context.Context, req AdjustRequest) (*AdjustResult, error) {
	if err := validateAdjust(&req); err != nil {
		return nil, err
	}
	p, err := e.pool(ctx, req.Location, req.SKU)
	if err != nil {
		return nil, err
	}
	fp := req.fingerprint()
	tx := p.Vendor + ":" + req.TransactionID
	if err := e.claimTransaction(ctx, p.Vendor, req.TransactionID, fp); err != nil {
		return nil, err
	}
	if p.Shards == 1 {
		r, err := e.adjustShard(ctx, p, 0, req.Kind, req.Qty, tx, fp, req, nil)
		if err != nil {
			return nil, err
		}
		if r.After > r.Before {
			e.forgetSoldOut(p.Key())
		}
		return r, nil
	}
	return e.adjustSharded(ctx, p, req, tx, fp)
}

// claimTransaction binds a vendor's transaction id to one change (fp): the first call records
// it; a later one with another change is refused.
func (e *Engine) claimTransaction(ctx context.Context, vendor, id, fp string) error {
	set := e.claimCmd(ctx, vendor, id, fp)
	if err := e.plain(ctx, set); err != nil {
		return err
	}
	return claimed(set, id, fp)
}

// fingerprint names what a change does, so a transaction id is bound to one change.
func (req AdjustRequest) fingerprint() string {
	return fingerprint(req.Location, req.SKU, req.Kind, strconv.FormatInt(req.Qty, 10), req.Reason)
}

// claimCmd is the command that binds vendor's transaction id to the change fp, or reads the
// change it is bound to already.
func (e *Engine) claimCmd(ctx context.Context, vendor, id, fp string) *redis.StringCmd {
	return redis.NewStringCmd(ctx, "set", e.ks.txKey(e.keyPartition(vendor+":"+id), vendor, id), fp,
		"nx", "get", "px", e.cfg.IdempotencyTTL.Milliseconds())
}

// claimed reads claimCmd's answer: nil when the id is the change fp's, ErrIdempotencyMismatch
// when it is another change's.
func claimed(set *redis.StringCmd, id, fp string) error {
	if err := nativeErr(set); err != nil {
		return err
	}
	if prior := set.Val(); prior != "" && prior != fp {
		return fmt.Errorf("%w: transaction_id %s", ErrIdempotencyMismatch, id)
	}
	return nil
}

// TransactionKnown reports whether vendor's transaction id names a change already sent (made,
// or being made), within the idempotency retention: its retry gets that change's answer.
func (e *Engine) TransactionKnown(ctx context.Context, vendor, id string) (bool, error) {
	kp := e.keyPartition(vendor + ":" + id)
	get := redis.NewStringCmd(ctx, "get", e.ks.txKey(kp, vendor, id))
	if err := e.plain(ctx, get); err != nil {
		return false, err
	}
	if err := get.Err(); errors.Is(err, redis.Nil) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("transaction %s: %w", id, redisErr(err))
	}
	return true, nil
}

// poolChange is what a change to a sharded pool does to the whole pool: its record carries
// it, so a retry answers with the change its first attempt made.
type poolChange struct {
	before, delta int64
}

func (e *Engine) adjustShard(ctx context.Context, p *pool, s int, kind string, qty int64, tx, fp string, req AdjustRequest, whole *poolChange) (*AdjustResult, error) {
	part := p.partitions[s]
	wholeBefore, wholeDelta := "", ""
	if whole != nil {
		wholeBefore, wholeDelta = strconv.FormatInt(whole.before, 10), strconv.FormatInt(whole.delta, 10)
	}
	r, err := e.run(ctx, "adjust", part, e.nowMs(), p.Location, p.SKU, s, kind, qty, tx, fp,
		owner(req.Actor), req.Reason, e.cfg.IdempotencyTTL.Milliseconds(), MaxAvailable, wholeBefore, wholeDelta)
	if err != nil {
		return nil, err
	}
	return e.adjustReply(ctx, p, s, qty, req.TransactionID, r)
}

// adjustReply reads adjust's reply (or one of adjust_batch's) for a change of qty units of p's
// shard s with transaction id tx.
func (e *Engine) adjustReply(ctx context.Context, p *pool, s int, qty int64, tx string, r reply) (*AdjustResult, error) {
	switch r.code() {
	case "OK":
		res := &AdjustResult{Before: r.int(1), After: r.int(2), Replayed: r.str(3) == "replay"}
		if len(r) > 5 && r.str(4) != "" {
			res.Before, res.After = r.int(4), r.int(4)+r.int(5)
		}
		return res, nil
	case "INSUFFICIENT":
		if len(r) > 2 {
			qty = r.int(2) // as recorded
		}
		return nil, &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: qty, Available: r.int(1)}
	case "TOO_MANY":
		return nil, tooMany(p, r.int(1))
	case "IDEM_MISMATCH":
		return nil, fmt.Errorf("%w: transaction_id %s", ErrIdempotencyMismatch, tx)
	case "UNKNOWN_POOL":
		return nil, e.noShard(ctx, fmt.Sprintf("%s has no shard %d in Redis", p.Key(), s))
	case "FENCED":
		return nil, fencedErr(p.partitions[s], r)
	}
	return nil, fmt.Errorf("adjust: unexpected reply %v", []any(r))
}

func tooMany(p *pool, available int64) error {
	return invalid("quantity", "%s has %d units available; a pool may have at most %d", p.Key(), available, int64(MaxAvailable))
}

// txShard is the shard a transaction on a sharded pool is applied to.
func txShard(p *pool, tx string) int {
	h := fnv.New32a()
	h.Write([]byte(tx))
	return int(h.Sum32() % uint32(p.Shards))
}

func (e *Engine) adjustSharded(ctx context.Context, p *pool, req AdjustRequest, tx, fp string) (*AdjustResult, error) {
	home := txShard(p, tx)
	kind := req.Kind
	if kind == Set {
		kind = Adjustment
	}
	reason := req.Reason
	if req.Kind == Set && reason == "" {
		reason = "SET " + strconv.FormatInt(req.Qty, 10)
	}
	r := req
	r.Reason = reason
	// A retry of a change already made replays it, whatever the pool holds now.
	done := redis.NewBoolCmd(ctx, "hexists", e.ks.holdsKey(p.partitions[home]), "i:tx:"+tx)
	if err := e.plain(ctx, done); err != nil {
		return nil, err
	}
	if err := nativeErr(done); err != nil {
		return nil, err
	}
	if done.Val() {
		return e.adjustShard(ctx, p, home, kind, max(req.Qty, 1), tx, fp, r, nil)
	}
	for round := 0; round < 8; round++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		readings, err := e.readShards(ctx, p)
		if err != nil {
			return nil, err
		}
		var total, inFlight int64
		for _, rd := range readings {
			total += rd.avail
			inFlight += rd.inFlight
		}
		if inFlight > 0 && round < 4 {
			// Units between shards count on both sides from the moment they arrive until their
			// source settles the transfer: finish the transfers (idempotent, whoever started
			// them), so the count the change is planned and answered from is exact.
			if err := e.finishTransfersOf(ctx, p, readings); err != nil {
				return nil, err
			}
			continue
		}
		whole := &poolChange{before: total + inFlight}
		switch req.Kind {
		case Restock, Adjustment:
			whole.delta = req.Qty
		case Spoilage:
			whole.delta = -req.Qty
		case Set:
			whole.delta = req.Qty - whole.before
		}
		if whole.delta > 0 && whole.before+whole.delta > MaxAvailable {
			return e.refuse(ctx, p, home, "TOO_MANY", req.Qty, whole.before, tx, fp, r)
		}
		if need := -whole.delta - readings[home].avail; need > 0 {
			if total+inFlight < -whole.delta {
				proven, err := e.provenShort(ctx, p, -whole.delta, readings)
				if err != nil {
					return nil, err
				}
				if proven {
					return e.refuse(ctx, p, home, "INSUFFICIENT", -whole.delta, total+inFlight, tx, fp, r)
				}
				continue
			}
			if err := e.gather(ctx, p, home, need, readings, tx+".g"+strconv.Itoa(round)); err != nil {
				return nil, err
			}
		}
		qty, k := whole.delta, kind
		switch {
		case kind == Adjustment:
		case qty < 0:
			qty = -qty
		}
		if qty == 0 {
			return &AdjustResult{Before: whole.before, After: whole.before}, nil
		}
		res, err := e.adjustShard(ctx, p, home, k, qty, tx, fp, r, whole)
		if errors.Is(err, ErrInsufficient) || errors.Is(err, ErrInvalid) {
			// Reservations took units gathered there, or the shard alone would pass the
			// ceiling the pool does not: read again (the home shard recorded nothing).
			continue
		}
		if err != nil {
			return nil, err
		}
		if res.After > res.Before {
			e.forgetSoldOut(p.Key())
			if !res.Replayed {
				e.spread(ctx, p, home, tx)
			}
		}
		return res, nil
	}
	return nil, fmt.Errorf("%w: reservations kept taking the units being removed from %s; nothing was removed, send the change again", ErrUnavailable, p.Key())
}

// refuse records on shard s, where transaction tx's record is kept, that the change was
// refused with code (n units asked for, the pool having available), so that a retry is
// refused the same way, and returns the refusal. A retry racing this call may have made the
// change meanwhile: its answer is returned instead.
func (e *Engine) refuse(ctx context.Context, p *pool, s int, code string, n, available int64, tx, fp string, req AdjustRequest) (*AdjustResult, error) {
	r, err := e.run(ctx, "adjust", p.partitions[s], e.nowMs(), p.Location, p.SKU, s, code, n, tx, fp,
		owner(req.Actor), req.Reason, e.cfg.IdempotencyTTL.Milliseconds(), MaxAvailable, available, 0)
	if err != nil {
		return nil, err
	}
	return e.adjustReply(ctx, p, s, n, req.TransactionID, r)
}

// spread evens out a pool's shards after an addition landed on shard home, moving units to
// the others; what it leaves uneven, the rebalancer evens out later.
func (e *Engine) spread(ctx context.Context, p *pool, home int, tx string) {
	readings, err := e.readShards(ctx, p)
	if err != nil {
		return
	}
	var total int64
	for _, r := range readings {
		total += max(r.avail, 0)
	}
	mean := total / int64(p.Shards)
	for s, r := range readings {
		if s == home || r.fenced || r.avail >= mean {
			continue
		}
		if _, err := e.Transfer(ctx, p.Location, p.SKU, home, s, mean-r.avail, tx+".s."+strconv.Itoa(s), "engine"); err != nil {
			return
		}
	}
}

// finishTransfersOf completes the pending transfers out of the shards of p that have units
// in flight.
func (e *Engine) finishTransfersOf(ctx context.Context, p *pool, readings []shardReading) error {
	for s, r := range readings {
		if r.inFlight <= 0 || r.fenced {
			continue
		}
		if _, err := e.CompleteTransfers(ctx, p.partitions[s], "engine"); err != nil {
			return err
		}
	}
	return nil
}
