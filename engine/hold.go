package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// partOutcome maps a commit/release/extend reply for one part.
func partOutcome(p int, r reply) (string, error) {
	switch r.code() {
	case "OK":
		return "OK", nil
	case "ENDED":
		return r.str(1), nil
	case "NOT_FOUND":
		return "", ErrHoldNotFound
	case "FENCED":
		return "", fencedErr(p, r)
	}
	return "", fmt.Errorf("unexpected reply %v", []any(r))
}

func endedErr(outcome string) error {
	switch outcome {
	case StatusCommitted:
		return ErrHoldCommitted
	case StatusExpired:
		return fmt.Errorf("%w: expired", ErrHoldGone)
	default:
		return fmt.Errorf("%w: %s", ErrHoldGone, strings.ToLower(outcome))
	}
}

func (e *Engine) checkActor(actor string) error {
	if actor != "" && !idPattern.MatchString(actor) {
		return invalid("actor", "must match %s", idPattern)
	}
	return nil
}

// Commit sells a hold's units. Committing a committed hold again succeeds and changes
// nothing; a hold that expired or was released returns ErrHoldGone. A multi-part hold is
// first extended by CommitGrace on every part so no part can expire half-way; should some
// part have ended already, the others are released and ErrHoldGone returned.
func (e *Engine) Commit(ctx context.Context, holdID, actor string) error {
	token, refs, err := parseHoldID(holdID, e.cfg.Partitions)
	if err != nil {
		return err
	}
	if err := e.checkActor(actor); err != nil {
		return err
	}
	keep := e.cfg.IdempotencyTTL.Milliseconds()
	if len(refs) > 1 {
		if err := e.prepareCommit(ctx, token, refs, actor); err != nil {
			return err
		}
	}
	out, errs := e.runParts(ctx, "commit", token, refs, actor, keep)
	if err := firstErr(errs); err != nil {
		return err
	}
	committed := 0
	var failed error
	for i, ref := range refs {
		o, err := partOutcome(ref.Partition, out[i])
		switch {
		case err != nil:
			failed = err
		case o == "OK" || o == StatusCommitted:
			committed++
		default:
			failed = endedErr(o)
		}
	}
	switch {
	case failed == nil:
		return nil
	case committed > 0:
		return fmt.Errorf("%w: %d of %d parts committed: %w", ErrPartialCommit, committed, len(refs), failed)
	}
	return failed
}

// runParts calls operation name once per part of a hold, each call with the part's id and
// then args, and returns each part's reply or error. A one-part hold's call goes through
// call; the calls of several parts go out together in one pipeline.
func (e *Engine) runParts(ctx context.Context, name, token string, refs []partRef, args ...any) ([]reply, []error) {
	if len(refs) == 1 {
		r, err := e.call(ctx, name, refs[0].Partition, append([]any{refs[0].id(token)}, args...)...)
		return []reply{r}, []error{err}
	}
	calls := make([]opCall, len(refs))
	for i, ref := range refs {
		calls[i] = opCall{name: name, p: ref.Partition, args: [][]any{{ref.id(token)}, args}}
	}
	return e.runAll(ctx, e.nowMs(), calls)
}

// call runs one operation on partition p: through the coalescer when it is on, where it
// shares a round trip with other requests, else on its own.
func (e *Engine) call(ctx context.Context, name string, p int, args ...any) (reply, error) {
	if e.batchers != nil {
		return e.batchers.call(ctx, name, p, args)
	}
	return e.run(ctx, name, p, e.nowMs(), args...)
}

// firstErr is the first error of errs, or nil.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// prepareCommit keeps every part of a multi-part hold alive for CommitGrace; if a part has
// already ended (other than committed, on a retry), the hold cannot be committed whole and
// the rest is released.
func (e *Engine) prepareCommit(ctx context.Context, token string, refs []partRef, actor string) error {
	keep := e.cfg.IdempotencyTTL.Milliseconds()
	out, errs := e.runParts(ctx, "extend", token, refs, e.nowMs()+e.cfg.CommitGrace.Milliseconds(), actor, keep)
	if err := firstErr(errs); err != nil {
		return err
	}
	var gone error
	for i, ref := range refs {
		o, err := partOutcome(ref.Partition, out[i])
		if err != nil {
			return err
		}
		if o != "OK" && o != StatusCommitted {
			gone = endedErr(o)
		}
	}
	if gone == nil {
		return nil
	}
	_, errs = e.runParts(ctx, "release", token, refs, actor, keep, "commit failed: part ended")
	if err := firstErr(errs); err != nil {
		return err
	}
	return gone
}

// Release gives a hold's units back. Releasing a released hold again succeeds; a committed
// hold returns ErrHoldCommitted and an expired one ErrHoldGone (its units are back already).
func (e *Engine) Release(ctx context.Context, holdID, actor string) error {
	token, refs, err := parseHoldID(holdID, e.cfg.Partitions)
	if err != nil {
		return err
	}
	if err := e.checkActor(actor); err != nil {
		return err
	}
	out, errs := e.runParts(ctx, "release", token, refs, actor, e.cfg.IdempotencyTTL.Milliseconds(), "")
	if err := firstErr(errs); err != nil {
		return err
	}
	var ended error
	for i, ref := range refs {
		o, err := partOutcome(ref.Partition, out[i])
		switch {
		case err != nil:
			ended = err
		case o != "OK" && o != StatusReleased && ended == nil:
			ended = endedErr(o)
		}
	}
	return ended
}

// Extend moves a hold's expiry to now+ttl (never earlier than it is). It returns the new
// expiry (unix ms).
func (e *Engine) Extend(ctx context.Context, holdID string, ttl time.Duration, actor string) (int64, error) {
	token, refs, err := parseHoldID(holdID, e.cfg.Partitions)
	if err != nil {
		return 0, err
	}
	if err := e.checkActor(actor); err != nil {
		return 0, err
	}
	if ttl < e.cfg.MinTTL || ttl > e.cfg.MaxTTL {
		return 0, invalid("ttl_ms", "must be %d..%d", e.cfg.MinTTL.Milliseconds(), e.cfg.MaxTTL.Milliseconds())
	}
	out, errs := e.runParts(ctx, "extend", token, refs, e.nowMs()+ttl.Milliseconds(), actor, e.cfg.IdempotencyTTL.Milliseconds())
	if err := firstErr(errs); err != nil {
		return 0, err
	}
	var exp int64
	for i, ref := range refs {
		o, err := partOutcome(ref.Partition, out[i])
		if err != nil {
			return 0, err
		}
		if o != "OK" {
			return 0, endedErr(o)
		}
		exp = max(exp, out[i].int(1))
	}
	return exp, nil
}

// GetHold reads a hold's parts and how each stands.
func (e *Engine) GetHold(ctx context.Context, holdID string) (*Hold, error) {
	token, refs, err := parseHoldID(holdID, e.cfg.Partitions)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(refs))
	for i, ref := range refs {
		cmds[i] = pipe.HMGet(ctx, e.ks.holdsKey(ref.Partition), ref.id(token), "d:"+ref.id(token))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read hold: %w", redisErr(err))
	}
	h := &Hold{ID: holdID, Parts: make([]HoldPart, len(refs))}
	statuses := map[string]bool{}
	found := false
	for i, ref := range refs {
		part := HoldPart{Shard: ref.Shard, Partition: ref.Partition}
		v := cmds[i].Val()
		if rec, ok := v[0].(string); ok {
			f := strings.Split(rec, "|")
			part.Location, part.SKU, part.Status = f[0], f[1], StatusActive
			fmt.Sscan(f[3], &part.Qty)
			var exp int64
			fmt.Sscan(f[4], &exp)
			h.ExpiresAt = max(h.ExpiresAt, exp)
			h.Customer = f[5]
			if exp <= e.nowMs() {
				part.Status = StatusExpired // overdue; the sweeper restores it soon
			}
			found = true
		} else if end, ok := v[1].(string); ok {
			// outcome|ended at|loc|sku|qty|expires|fingerprint
			f := strings.Split(end, "|")
			if len(f) == 7 {
				part.Status, part.Location, part.SKU = f[0], f[2], f[3]
				fmt.Sscan(f[4], &part.Qty)
				var exp int64
				fmt.Sscan(f[5], &exp)
				h.ExpiresAt = max(h.ExpiresAt, exp)
			}
			found = true
		} else {
			part.Status = "UNKNOWN"
		}
		statuses[part.Status] = true
		h.Parts[i] = part
	}
	if !found {
		return nil, ErrHoldNotFound
	}
	h.Status = StatusMixed
	if len(statuses) == 1 {
		for s := range statuses {
			h.Status = s
		}
	}
	return h, nil
}
