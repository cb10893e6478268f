package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A hold belongs to the API key that placed it: only that key may read, extend, commit or
// release it, and to any other key it does not exist (ErrHoldNotFound). An operator acts on
// any hold with a context from AnyOwner.

type anyOwnerKey struct{}

// AnyOwner returns a context in which hold operations skip the ownership check (operators).
func AnyOwner(ctx context.Context) context.Context {
	return context.WithValue(ctx, anyOwnerKey{}, true)
}

// ownerFor is the owner a hold operation by actor must find on the parts.
func ownerFor(ctx context.Context, actor string) string {
	if ctx.Value(anyOwnerKey{}) != nil {
		return "*"
	}
	return owner(actor)
}

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

// holdRef is a parsed hold id with the caller's view of it.
type holdRef struct {
	id    string
	key   holdKey
	refs  []partRef
	actor string
	owner string
}

func (e *Engine) parseHold(ctx context.Context, holdID, actor string) (*holdRef, error) {
	hk, refs, err := parseHoldID(holdID, e.cfg.Partitions)
	if err != nil {
		return nil, err
	}
	if err := e.checkActor(actor); err != nil {
		return nil, err
	}
	return &holdRef{id: holdID, key: hk, refs: refs, actor: actor, owner: ownerFor(ctx, actor)}, nil
}

// commit is Commit without its span.
func (e *Engine) commit(ctx context.Context, holdID, actor string) error {
	h, err := e.parseHold(ctx, holdID, actor)
	if err != nil {
		return err
	}
	if len(h.refs) == 1 {
		out, errs := e.runParts(ctx, "commit", h, h.actor, e.cfg.IdempotencyTTL.Milliseconds(), h.owner)
		if errs[0] != nil {
			return errs[0]
		}
		o, err := partOutcome(h.refs[0].Partition, out[0])
		if err != nil || o == "OK" || o == StatusCommitted {
			return err
		}
		return endedErr(o)
	}
	if err := e.checkOwner(ctx, h); err != nil {
		return err
	}
	id := newAttempt()
	for wait, started := 5*time.Millisecond, time.Now(); ; {
		r, err := e.holdEnd(ctx, h, "commit", id)
		if err != nil {
			return err
		}
		switch r.code() {
		case "START":
			return e.commitParts(ctx, h, id)
		case "FINISH":
			return e.finishCommit(ctx, h)
		case "DONE":
			return nil
		case "GONE":
			return fmt.Errorf("%w: released", ErrHoldGone)
		case "BUSY":
			if !waitTurn(ctx, started, e.cfg.CommitGrace+e.cfg.RedisTimeout, &wait) {
				return fmt.Errorf("%w: another commit of this hold is in progress", ErrInProgress)
			}
		default:
			return fmt.Errorf("hold_end: unexpected reply %v", []any(r))
		}
	}
}

// commitParts checks that every part is still held (keeping each alive for the commit
// grace), then decides the commit and commits them; if a part has ended, it gives the
// others back.
func (e *Engine) commitParts(ctx context.Context, h *holdRef, id string) error {
	keep := e.cfg.IdempotencyTTL.Milliseconds()
	out, errs := e.runParts(ctx, "extend", h, e.nowMs()+e.cfg.CommitGrace.Milliseconds(), h.actor, keep, h.owner)
	if err := firstErr(errs); err != nil {
		return err
	}
	var gone error
	for i, ref := range h.refs {
		o, err := partOutcome(ref.Partition, out[i])
		if err != nil {
			return err
		}
		if o != "OK" && o != StatusCommitted {
			gone = endedErr(o)
		}
	}
	if gone != nil {
		if r, err := e.holdEnd(ctx, h, "abort", id); err != nil || r.code() != "OK" {
			return fmt.Errorf("%w: the hold's commit was taken over", ErrInProgress)
		}
		_, errs := e.runParts(ctx, "release", h, h.actor, keep, "commit failed: part ended", h.owner)
		if err := firstErr(errs); err != nil {
			return err
		}
		return gone
	}
	if r, err := e.holdEnd(ctx, h, "decided", id); err != nil {
		return err
	} else if r.code() != "OK" {
		return fmt.Errorf("%w: the hold's commit was taken over", ErrInProgress)
	}
	return e.finishCommit(ctx, h)
}

// finishCommit commits every part of a hold whose commit is decided.
func (e *Engine) finishCommit(ctx context.Context, h *holdRef) error {
	out, errs := e.runParts(ctx, "commit", h, h.actor, e.cfg.IdempotencyTTL.Milliseconds(), h.owner)
	if err := firstErr(errs); err != nil {
		return err
	}
	var sold, lost []string
	var failed error
	for i, ref := range h.refs {
		o, err := partOutcome(ref.Partition, out[i])
		switch {
		case err != nil:
			failed = err
		case o == "OK" || o == StatusCommitted:
			sold = append(sold, h.key.part(ref))
		default:
			lost = append(lost, h.key.part(ref)+" "+strings.ToLower(o))
		}
	}
	if failed != nil {
		return failed
	}
	if _, err := e.holdEnd(ctx, h, "committed", ""); err != nil {
		return err
	}
	if len(lost) > 0 {
		return fmt.Errorf("%w: sold %s; not sold: %s", ErrPartialCommit, strings.Join(sold, ", "), strings.Join(lost, ", "))
	}
	return nil
}

// holdEnd runs hold_end on the end record of a hold of several parts.
func (e *Engine) holdEnd(ctx context.Context, h *holdRef, op, id string) (reply, error) {
	kp := e.keyPartition(h.key.token)
	if id == "" {
		id = "-"
	}
	return e.call(ctx, "hold_end", kp, e.ks.endKey(kp, h.key), op, id, e.cfg.CommitGrace.Milliseconds(),
		e.cfg.IdempotencyTTL.Milliseconds())
}

// checkOwner fails with ErrHoldNotFound unless the caller may act on the hold: its first
// part (active or ended) belongs to the caller.
func (e *Engine) checkOwner(ctx context.Context, h *holdRef) error {
	if h.owner == "*" {
		return nil
	}
	ref := h.refs[0]
	part := h.key.part(ref)
	cmd := redis.NewSliceCmd(ctx, "hmget", e.ks.holdsKey(ref.Partition), part, "d:"+part)
	if err := e.plain(ctx, cmd); err != nil {
		return err
	}
	if err := nativeErr(cmd); err != nil {
		return err
	}
	v := cmd.Val()
	var found string
	if rec, ok := v[0].(string); ok {
		hr, ok := decodeHoldRecord(rec)
		if !ok {
			return fmt.Errorf("part %s: malformed record %q", part, rec)
		}
		found = hr.Owner
	} else if t, ok := v[1].(string); ok {
		found = decodeTomb(t).owner
	} else {
		return ErrHoldNotFound
	}
	if found != "" && found != h.owner {
		return ErrHoldNotFound
	}
	return nil
}

// release is Release without its span.
func (e *Engine) release(ctx context.Context, holdID, actor string) error {
	h, err := e.parseHold(ctx, holdID, actor)
	if err != nil {
		return err
	}
	if len(h.refs) > 1 {
		if err := e.checkOwner(ctx, h); err != nil {
			return err
		}
		for wait, started := 5*time.Millisecond, time.Now(); ; {
			r, err := e.holdEnd(ctx, h, "release", "")
			if err != nil {
				return err
			}
			switch r.code() {
			case "START":
			case "FINISH":
				if err := e.finishCommit(ctx, h); err != nil && !errors.Is(err, ErrPartialCommit) {
					return err
				}
				return ErrHoldCommitted
			case "COMMITTED":
				return ErrHoldCommitted
			case "BUSY":
				if !waitTurn(ctx, started, e.cfg.CommitGrace+e.cfg.RedisTimeout, &wait) {
					return fmt.Errorf("%w: a commit of this hold is in progress", ErrInProgress)
				}
				continue
			default:
				return fmt.Errorf("hold_end: unexpected reply %v", []any(r))
			}
			break
		}
	}
	out, errs := e.runParts(ctx, "release", h, h.actor, e.cfg.IdempotencyTTL.Milliseconds(), "", h.owner)
	if err := firstErr(errs); err != nil {
		return err
	}
	var ended error
	for i, ref := range h.refs {
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

// extend is Extend without its span.
func (e *Engine) extend(ctx context.Context, holdID string, ttl time.Duration, actor string) (int64, error) {
	h, err := e.parseHold(ctx, holdID, actor)
	if err != nil {
		return 0, err
	}
	if ttl < e.cfg.MinTTL || ttl > e.cfg.MaxTTL {
		return 0, invalid("ttl_ms", "must be %d..%d", e.cfg.MinTTL.Milliseconds(), e.cfg.MaxTTL.Milliseconds())
	}
	out, errs := e.runParts(ctx, "extend", h, e.nowMs()+ttl.Milliseconds(), h.actor, e.cfg.IdempotencyTTL.Milliseconds(), h.owner)
	if err := firstErr(errs); err != nil {
		return 0, err
	}
	var exp int64
	for i, ref := range h.refs {
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

// getHold is GetHold without its span.
func (e *Engine) getHold(ctx context.Context, holdID, actor string) (*Hold, error) {
	hr, err := e.parseHold(ctx, holdID, actor)
	if err != nil {
		return nil, err
	}
	cmds := make([]redis.Cmder, len(hr.refs))
	for i, ref := range hr.refs {
		cmds[i] = redis.NewSliceCmd(ctx, "hmget", e.ks.holdsKey(ref.Partition), hr.key.part(ref), "d:"+hr.key.part(ref))
	}
	if err := e.plain(ctx, cmds...); err != nil {
		return nil, err
	}
	if err := nativeErr(cmds...); err != nil {
		return nil, fmt.Errorf("read hold: %w", err)
	}
	h := &Hold{ID: holdID, Parts: make([]HoldPart, len(hr.refs))}
	statuses := map[string]bool{}
	found := false
	for i, ref := range hr.refs {
		part := HoldPart{Shard: ref.Shard, Partition: ref.Partition, Status: "UNKNOWN"}
		v := cmds[i].(*redis.SliceCmd).Val()
		partOwner := ""
		if rec, ok := v[0].(string); ok {
			r, ok := decodeHoldRecord(rec)
			if !ok {
				return nil, fmt.Errorf("part %s: malformed record %q", hr.key.part(ref), rec)
			}
			part.Location, part.SKU, part.Qty, part.Status = r.Location, r.SKU, r.Qty, StatusActive
			part.Backordered = r.Backordered
			h.ExpiresAt, h.Customer, partOwner = max(h.ExpiresAt, r.ExpiresAt), r.Customer, r.Owner
			if r.ExpiresAt <= e.nowMs() {
				part.Status = StatusExpired // overdue; the sweeper restores it soon
			}
		} else if s, ok := v[1].(string); ok {
			t := decodeTomb(s)
			switch t.outcome {
			case StatusCommitted, StatusReleased, StatusExpired:
				part.Status, part.Location, part.SKU, part.Qty = t.outcome, t.loc, t.sku, t.qty
				part.Backordered = t.code == "B"
				h.ExpiresAt, partOwner = max(h.ExpiresAt, t.exp), t.owner
			default:
				continue // voided, refused or sent on: no hold part was ever given out here
			}
		} else {
			statuses[part.Status] = true
			h.Parts[i] = part
			continue
		}
		if partOwner != "" && hr.owner != "*" && partOwner != hr.owner {
			return nil, ErrHoldNotFound
		}
		found = true
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
