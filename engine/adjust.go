package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

// Adjust applies a vendor's stock change. A single-shard pool changes in one atomic call; a
// sharded pool's change is spread over its shards (additions evenly, removals from the
// fullest shards first), each shard's share idempotent under "<transaction id>/<shard>", so
// a retry after a crash applies only what is missing. A removal larger than what is
// available returns ErrInsufficient.
func (e *Engine) Adjust(ctx context.Context, req AdjustRequest) (*AdjustResult, error) {
	if err := validateAdjust(&req); err != nil {
		return nil, err
	}
	p, err := e.pool(ctx, req.Location, req.SKU)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(req.Location, req.SKU, req.Kind, strconv.FormatInt(req.Qty, 10), req.Reason)
	if p.Shards == 1 {
		r, err := e.adjustShard(ctx, p, 0, req.Kind, req.Qty, req.TransactionID, fp, req, nil)
		if err != nil {
			return nil, err
		}
		if r.After > 0 {
			e.forgetSoldOut(p.Key())
		}
		return r, nil
	}
	return e.adjustSharded(ctx, p, req, fp)
}

// poolChange is what a change to a sharded pool does to the whole pool, as its first attempt
// planned it: every shard's record of the transaction carries it, so a retry completes that
// change instead of planning another from counts that sales may have moved since.
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
		req.Actor, req.Reason, e.cfg.IdempotencyTTL.Milliseconds(), MaxAvailable, wholeBefore, wholeDelta)
	if err != nil {
		return nil, err
	}
	switch r.code() {
	case "OK":
		return &AdjustResult{Before: r.int(1), After: r.int(2), Replayed: r.str(3) == "replay"}, nil
	case "INSUFFICIENT":
		return nil, &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: qty, Available: r.int(1)}
	case "TOO_MANY":
		return nil, tooMany(p, r.int(1))
	case "IDEM_MISMATCH":
		return nil, fmt.Errorf("%w: transaction_id %s", ErrIdempotencyMismatch, req.TransactionID)
	case "UNKNOWN_POOL":
		return nil, fmt.Errorf("%w: %s has no shard %d in Redis", ErrUnknownPool, p.Key(), s)
	case "FENCED":
		return nil, fencedErr(part, r)
	}
	return nil, fmt.Errorf("adjust: unexpected reply %v", []any(r))
}

func tooMany(p *pool, available int64) error {
	return invalid("quantity", "%s has %d units available; a pool may have at most %d", p.Key(), available, int64(MaxAvailable))
}

// shardTx is what a transaction already did on one shard.
type shardTx struct {
	done          bool
	fp            string
	before, after int64
	whole         *poolChange // nil in records written without it
}

func (e *Engine) readShardTx(ctx context.Context, p *pool, tx string) ([]ShardCount, []shardTx, error) {
	counts, err := e.shardCounts(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, p.Shards)
	for s, part := range p.partitions {
		cmds[s] = pipe.HGet(ctx, e.ks.holdsKey(part), "i:tx:"+tx+"/"+strconv.Itoa(s))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("read transaction %s: %w", tx, redisErr(err))
	}
	txs := make([]shardTx, p.Shards)
	for s, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		f := strings.Split(v, "|")
		if len(f) != 3 && len(f) != 5 {
			continue
		}
		txs[s].done, txs[s].fp = true, f[0]
		txs[s].before, _ = strconv.ParseInt(f[1], 10, 64)
		txs[s].after, _ = strconv.ParseInt(f[2], 10, 64)
		if len(f) == 5 {
			var w poolChange
			b, errB := strconv.ParseInt(f[3], 10, 64)
			d, errD := strconv.ParseInt(f[4], 10, 64)
			if errB == nil && errD == nil {
				w.before, w.delta = b, d
				txs[s].whole = &w
			}
		}
	}
	return counts, txs, nil
}

func (e *Engine) adjustSharded(ctx context.Context, p *pool, req AdjustRequest, fp string) (*AdjustResult, error) {
	var res *AdjustResult
	for round := 0; round < 3; round++ {
		counts, txs, err := e.readShardTx(ctx, p, req.TransactionID)
		if err != nil {
			return nil, err
		}
		var total, applied int64
		anyDone := false
		for s := range counts {
			total += counts[s].Available
			if txs[s].done {
				if txs[s].fp != fp {
					return nil, fmt.Errorf("%w: transaction_id %s", ErrIdempotencyMismatch, req.TransactionID)
				}
				applied += txs[s].after - txs[s].before
				anyDone = true
			}
		}
		whole := recordedChange(txs)
		if whole == nil { // the first attempt (or records written without the change)
			whole = &poolChange{before: total - applied}
			switch req.Kind {
			case Restock:
				whole.delta = req.Qty
			case Spoilage:
				whole.delta = -req.Qty
			case Adjustment:
				whole.delta = req.Qty
			case Set:
				whole.delta = req.Qty - whole.before
			}
		}
		before, delta := whole.before, whole.delta
		if delta > 0 && before+delta > MaxAvailable {
			return nil, tooMany(p, before)
		}
		res = &AdjustResult{Before: before, After: before + delta, Replayed: anyDone}
		plan, err := planAdjust(counts, txs, delta-applied)
		if err != nil {
			return nil, &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: -(delta - applied), Available: total - applied}
		}
		if len(plan) == 0 {
			break
		}
		res.Replayed = false
		raced := false
		for _, step := range plan {
			kind, qty := req.Kind, step.delta
			switch {
			case req.Kind == Set || req.Kind == Adjustment:
				kind = Adjustment
			case qty < 0:
				qty = -qty
			}
			reason := req.Reason
			if req.Kind == Set && reason == "" {
				reason = "SET " + strconv.FormatInt(req.Qty, 10)
			}
			r := req
			r.Reason = reason
			_, err := e.adjustShard(ctx, p, step.shard, kind, qty, req.TransactionID+"/"+strconv.Itoa(step.shard), fp, r, whole)
			if errors.Is(err, ErrInsufficient) {
				raced = true // a reservation took units meanwhile: plan again with fresh counts
				break
			}
			if err != nil {
				return nil, err
			}
		}
		if !raced {
			break
		}
		if round == 2 {
			return nil, fmt.Errorf("%w: reservations kept taking the units being removed; part of the change may be applied, retry with the same transaction_id", ErrInsufficient)
		}
	}
	if res.After > 0 {
		e.forgetSoldOut(p.Key())
	}
	return res, nil
}

// recordedChange is the pool change a transaction's shard records carry, or nil.
func recordedChange(txs []shardTx) *poolChange {
	for _, tx := range txs {
		if tx.whole != nil {
			return tx.whole
		}
	}
	return nil
}

type adjustStep struct {
	shard int
	delta int64
}

// planAdjust spreads delta over the shards the transaction has not touched yet: an addition
// evenly, a removal from the fullest shards first.
func planAdjust(counts []ShardCount, txs []shardTx, delta int64) ([]adjustStep, error) {
	var free []int
	for s := range counts {
		if !txs[s].done {
			free = append(free, s)
		}
	}
	if delta == 0 {
		return nil, nil
	}
	if len(free) == 0 {
		return nil, errors.New("no shard left to apply the change to")
	}
	var plan []adjustStep
	if delta > 0 {
		n := int64(len(free))
		for i, s := range free {
			share := delta / n
			if int64(i) < delta%n {
				share++
			}
			if share > 0 {
				plan = append(plan, adjustStep{s, share})
			}
		}
		return plan, nil
	}
	sort.Slice(free, func(i, j int) bool { return counts[free[i]].Available > counts[free[j]].Available })
	need := -delta
	for _, s := range free {
		if need == 0 {
			break
		}
		take := min(need, counts[s].Available)
		if take > 0 {
			plan = append(plan, adjustStep{s, -take})
			need -= take
		}
	}
	if need > 0 {
		return nil, errors.New("not enough units available")
	}
	return plan, nil
}
