package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
)

// KindForkConflict: an event Redis wrote on a forked partition that cannot be carried over
// without a count going negative (a sale the rebuilt stock cannot cover). Reported, never
// applied: the operator settles it with the customer.
const KindForkConflict = "fork_conflict"

// rebuildFenceSuffix ends the reason of the fence a rebuild raises.
const rebuildFenceSuffix = ": rebuilding from the ledger"

// rebuildResult is what a rebuild did.
type rebuildResult struct {
	ledgerSeq int64 // the ledger's last event, where Redis was moved to (0: no rebase was needed)
	forkFrom  int64 // the first forked stream entry (0: none)
	carried   int
	skipped   int
	mended    int // transfers with another partition made whole again (see mendTransfers)
	conflicts []Finding
}

func (b *rebuildResult) String() string {
	var parts []string
	if b.ledgerSeq > 0 {
		parts = append(parts, fmt.Sprintf("Redis rebuilt from the ledger at seq %d", b.ledgerSeq))
	}
	if b.forkFrom > 0 {
		parts = append(parts, fmt.Sprintf("forked events from seq %d saved in forked_events", b.forkFrom))
	}
	parts = append(parts, fmt.Sprintf("%d forked events carried over, %d already in the ledger's account, %d in conflict",
		b.carried, b.skipped, len(b.conflicts)))
	if b.mended > 0 {
		parts = append(parts, fmt.Sprintf("%d transfers with other partitions made whole", b.mended))
	}
	return strings.Join(parts, "; ")
}

// rebuild repairs partition p after Redis lost acknowledged writes. With the partition
// fenced, it saves the events Redis wrote after the loss (the fork) in Postgres, writes the
// state the ledger adds up to into Redis (counters, open holds, customer counts; seq and chain
// head at the ledger's last event), carries each saved event over as a new event where it
// still means something, and lifts the fence. Interrupted, it is run again: saved events are
// carried over once (each carry is idempotent by the event's hash).
func (r *Reconciler) rebuild(ctx context.Context, p int, run int64) (*rebuildResult, error) {
	if err := r.eng.Fence(ctx, p, fmt.Sprintf("reconcile run %d", run)+rebuildFenceSuffix); err != nil {
		return nil, err
	}
	snap, err := r.eng.Snapshot(ctx, p) // fenced: it stays this way until we write
	if err != nil {
		return nil, err
	}
	ledgerEvs, err := r.verifiedLedger(ctx, p)
	if err != nil {
		return nil, err
	}
	var ledgerSeq int64
	ledgerHead := engine.GenesisHash
	if n := len(ledgerEvs); n > 0 {
		ledgerSeq, ledgerHead = ledgerEvs[n-1].Seq, ledgerEvs[n-1].Hash
	}
	stream, err := r.streamFrom(ctx, p, 0, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	forkFrom, forked, continued := forkOf(stream, ledgerEvs)
	limits := map[engine.PoolKey]*engine.PoolConfig{}
	limitOf := func(k engine.PoolKey) *engine.PoolConfig {
		if l, ok := limits[k]; ok {
			return l
		}
		var l *engine.PoolConfig
		if pc, err := r.eng.Pool(ctx, k.Location, k.SKU); err == nil && pc.CustomerLimit > 0 {
			l = &pc
		}
		limits[k] = l
		return l
	}
	opts := engine.ReplayOptions{History: true, MaxTTL: r.eng.Config().MaxTTL.Milliseconds(),
		Limited: func(k engine.PoolKey) bool { return limitOf(k) != nil },
		Window: func(k engine.PoolKey) int64 {
			if l := limitOf(k); l != nil {
				return l.CustomerWindow
			}
			return 0
		}}
	replay := func(evs []engine.Event) *engine.Replay {
		st := engine.NewReplay(opts)
		for i := range evs {
			st.Apply(&evs[i])
		}
		return st
	}
	res := &rebuildResult{forkFrom: forkFrom}
	others, err := r.store.TransfersWith(ctx, p)
	if err != nil {
		return nil, err
	}
	var state *engine.Replay
	if forkFrom > 0 || snap.Seq < ledgerSeq {
		if err := r.store.SaveForked(ctx, run, forked); err != nil {
			return nil, err
		}
		state = replay(ledgerEvs)
		rb := rebaseOf(snap, state, ledgerSeq, ledgerHead, forkFrom, forked)
		since := time.Now().Add(-r.eng.Config().IdempotencyTTL).UnixMilli()
		rb.Ended, rb.Received = map[string]engine.Tombstone{}, map[string]int64{}
		for part, t := range state.Ended {
			if t.At >= since {
				rb.Ended[part] = t
			}
		}
		for _, q := range state.Queues { // sales still owed say so, as lib.lua's tombstones do
			for _, b := range q {
				if t, ok := rb.Ended[b.Part]; ok && b.Sold && t.Outcome == engine.EventCommitted {
					t.Owed = true
					rb.Ended[b.Part] = t
				}
			}
		}
		for _, ev := range ledgerEvs {
			if ev.Type == engine.EventTransferIn && ev.TS >= since {
				rb.Received[ev.Idem] = ev.TS
			}
		}
		if rb.Pending, err = r.pendingTransfers(ctx, p, ledgerEvs); err != nil {
			return nil, err
		}
		have := transfers(ledgerEvs)
		for _, t := range others {
			if t.Type == engine.EventTransferOut && !have[engine.EventTransferIn+" "+t.Idem] {
				// p gets these units below (mendTransfers): the record that it applied the
				// transfer keeps the source's completion of it from giving them again.
				rb.Received[t.Idem] = time.Now().UnixMilli()
			}
		}
		if err := r.eng.RebuildPartition(ctx, p, rb); err != nil {
			return nil, err
		}
		res.ledgerSeq = ledgerSeq
	} else {
		// Redis continues the ledger (an earlier rebuild got this far): carry over what is left.
		state = replay(append(ledgerEvs, continued...))
	}
	known := ledgerSeq // what state holds of Redis's partition
	if len(continued) > 0 {
		known = continued[len(continued)-1].Seq
	}
	if err := r.carryForked(ctx, p, run, known, snap, state, opts, res); err != nil {
		return nil, err
	}
	if err := r.mendTransfers(ctx, p, ledgerEvs, others, res); err != nil {
		return nil, err
	}
	if _, err := r.eng.Unfence(ctx, p); err != nil {
		return nil, err
	}
	return res, nil
}

// transfers is the set of transfer events in evs, by type and transfer id ("TRANSFER_IN x").
func transfers(evs ...[]engine.Event) map[string]bool {
	out := map[string]bool{}
	for _, list := range evs {
		for i := range list {
			if list[i].Type == engine.EventTransferIn || list[i].Type == engine.EventTransferOut {
				out[list[i].Type+" "+list[i].Idem] = true
			}
		}
	}
	return out
}

// mendTransfers completes, while partition p is still fenced, the transfers between p (just
// rebuilt from its ledger) and other partitions that kept their writes (others: their
// transfer events naming p), whose one side the ledger holds and whose other side p lost:
//   - another partition's TRANSFER_OUT to p with no TRANSFER_IN in p's account: p lost the
//     units; they are carried in as a TRANSFER_IN (the rebase wrote the record that p applied
//     the transfer, so the source's own completion of it gives nothing twice);
//   - another partition's TRANSFER_IN from p with no TRANSFER_OUT in p's account: the
//     destination has the units, p never gave them; they are carried out as a TRANSFER_OUT.
//     When p no longer has them (sold meanwhile), it is a conflict: reported, like a forked
//     sale that cannot be carried over.
//
// p's account is its ledger and what its stream holds past it (carried forked events, and the
// mends of an earlier run that stopped before lifting the fence). Each mend is carried with an
// id of its own, so a repeated run changes nothing more; the new event names the other side
// as transfer events do.
func (r *Reconciler) mendTransfers(ctx context.Context, p int, ledgerEvs, others []engine.Event, res *rebuildResult) error {
	if len(others) == 0 {
		return nil
	}
	var after int64
	if n := len(ledgerEvs); n > 0 {
		after = ledgerEvs[n-1].Seq
	}
	beyond, err := r.streamFrom(ctx, p, after, math.MaxInt64)
	if err != nil {
		return err
	}
	account := transfers(ledgerEvs, beyond)
	for _, ev := range others {
		_, shard, ok := ev.TransferPeer()
		if !ok {
			continue
		}
		c := engine.Carried{Location: ev.Location, SKU: ev.SKU, Shard: shard, Qty: ev.Qty, Token: ev.Idem, Actor: "reconcile",
			Reason: fmt.Sprintf("%d/%d", ev.Partition, ev.Shard)}
		switch {
		case ev.Type == engine.EventTransferOut && !account[engine.EventTransferIn+" "+ev.Idem]:
			c.ID, c.Type, c.Available = "mend-in-"+ev.Idem, engine.EventTransferIn, ev.Qty
		case ev.Type == engine.EventTransferIn && !account[engine.EventTransferOut+" "+ev.Idem]:
			c.ID, c.Type, c.Available = "mend-out-"+ev.Idem, engine.EventTransferOut, -ev.Qty
		default:
			continue
		}
		_, _, _, err := r.eng.Carry(ctx, p, c)
		var cc *engine.CarryConflict
		if errors.As(err, &cc) {
			res.conflicts = append(res.conflicts, Finding{Kind: KindForkConflict, Partition: p, Location: ev.Location, SKU: ev.SKU,
				Shard: shard, Amount: ev.Qty,
				Detail: fmt.Sprintf("transfer %s gave %d units to shard %d on partition %d; the rebuilt shard %d never gave them: %s",
					ev.Idem, ev.Qty, ev.Shard, ev.Partition, shard, cc.Why)})
			continue
		}
		if err != nil {
			return fmt.Errorf("mend transfer %s on partition %d: %w", ev.Idem, p, err)
		}
		res.mended++
	}
	return nil
}

// pendingTransfers are the transfers partition p's ledger took out of its shards whose
// TRANSFER_IN the destination partition's ledger does not hold: not applied, or not yet
// persisted (completing one that was applied changes nothing: the destination keeps its record
// of it until the source settles).
func (r *Reconciler) pendingTransfers(ctx context.Context, p int, ledgerEvs []engine.Event) ([]engine.PendingTransfer, error) {
	byDest := map[int][]engine.PendingTransfer{}
	for _, ev := range ledgerEvs {
		to, toShard, ok := ev.TransferPeer()
		if !ok || ev.Type != engine.EventTransferOut {
			continue
		}
		byDest[to] = append(byDest[to], engine.PendingTransfer{ID: ev.Idem, Location: ev.Location, SKU: ev.SKU,
			FromShard: ev.Shard, FromPartition: p, Qty: ev.Qty, ToPartition: to, ToShard: toShard, TakenAt: ev.TS})
	}
	var out []engine.PendingTransfer
	for to, ts := range byDest {
		ids := make([]string, len(ts))
		for i, t := range ts {
			ids[i] = t.ID
		}
		applied, err := r.store.TransfersIn(ctx, to, ids)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if !applied[t.ID] {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// forkOf splits partition's stream against its verified ledger: the fork starts at the first
// stream entry the ledger has otherwise (forked is it and all after it); continued are the
// entries before it that extend the ledger.
func forkOf(stream, ledgerEvs []engine.Event) (forkFrom int64, forked, continued []engine.Event) {
	ledgerSeq := int64(len(ledgerEvs))
	prev := engine.GenesisHash
	if ledgerSeq > 0 {
		prev = ledgerEvs[ledgerSeq-1].Hash
	}
	for i, ev := range stream {
		if ev.Seq <= ledgerSeq && ledgerEvs[ev.Seq-1].Hash != ev.Hash || ev.Seq > ledgerSeq && ev.PrevHash != prev {
			return ev.Seq, stream[i:], continued
		}
		if ev.Seq > ledgerSeq {
			continued = append(continued, ev)
			prev = ev.Hash
		}
	}
	return 0, nil, continued
}

// carryForked carries partition p's saved forked events over on top of state (what the
// ledger adds up to, and Redis up to seq known), each as carryOf decides, and settles each in
// the ledger. The fills Redis makes meanwhile (after the rebuild, after a carried event that
// gave units back) are added to state as they are written, so each event is decided on what
// Redis holds.
func (r *Reconciler) carryForked(ctx context.Context, p int, run int64, known int64, snap *engine.Snapshot, state *engine.Replay,
	opts engine.ReplayOptions, res *rebuildResult) error {
	all, err := r.store.ForkedEvents(ctx, p, false)
	if err != nil {
		return err
	}
	learn := func(after int64) error {
		for {
			page, err := r.eng.ReadEvents(ctx, p, after, 1000)
			if err != nil || len(page) == 0 {
				return err
			}
			for i := range page {
				if page[i].Type == engine.EventFilled {
					state.Apply(&page[i])
				}
			}
			after = page[len(page)-1].Seq
		}
	}
	if err := learn(known); err != nil {
		return err
	}
	recorded := map[string]engine.HoldRecord{}
	for _, h := range snap.Holds {
		recorded[h.Part] = h.Record
	}
	// Of every event this partition's forks wrote (settled in an earlier run or not): how the
	// fork ended each part, the parts it placed as backorders, and the event that placed each.
	fate, forkBackordered := map[string]string{}, map[string]bool{}
	placing := map[string]*ledger.ForkedEvent{}
	for i := range all {
		ev := &all[i]
		switch ev.Type {
		case engine.EventCommitted, engine.EventReleased, engine.EventExpired, engine.EventVoided:
			fate[ev.Hold] = ev.Type
		case engine.EventBackordered:
			forkBackordered[ev.Hold] = true
			placing[ev.Hold] = ev
		case engine.EventReserved:
			placing[ev.Hold] = ev
		}
	}
	// notify tells the storefront of what a client was told and the repair cannot keep (see
	// engine.LostHold). A notice is sent before the event that decides it is settled, and is
	// named by the event that placed the part (or sold it, when the fork did not place it):
	// a run that stops in between, and any later run, sends the same notice again, which the
	// notices take as one.
	notify := func(ev *engine.Event, why string, sold bool) error {
		if r.notices == nil {
			return nil
		}
		l := engine.LostHoldOf(ev, why)
		l.Backordered = l.Backordered || forkBackordered[ev.Hold] || state.Open[ev.Hold].Backordered ||
			ev.Type == engine.EventCommitted && ev.HeldDelta == 0 // a sale of a backorder
		l.Sold = sold
		if ev.Type == engine.EventCommitted {
			l.PlacedAt = 0 // when the hold was placed is not known here
			if h, ok := state.Open[ev.Hold]; ok && h.Owner != "" {
				l.Owner = h.Owner // the hold's, not the seller's
			} else if t, ok := state.Ended[ev.Hold]; ok && t.Owner != "" {
				l.Owner = t.Owner
			}
			if l.Owner == "-" {
				l.Owner = ""
			}
		}
		return r.notices.HoldLost(ctx, l)
	}
	// placedLost: the part's placing on the fork was not carried and the ledger's account has
	// no such part; told: its client was given it.
	placedLost := func(part string) (bool, error) {
		pl := placing[part]
		if pl == nil || pl.Carried() {
			return false, nil
		}
		if _, open := state.Open[part]; open {
			return false, nil
		}
		if _, ended := state.Ended[part]; ended {
			return false, nil
		}
		return r.eng.Told(ctx, part)
	}
	uncarried := func(ev *engine.Event, why string, conflict bool) error {
		switch ev.Type {
		case engine.EventReserved, engine.EventBackordered:
			if fate[ev.Hold] != "" {
				return nil // the fork ended it: a sale decides for itself; otherwise nobody holds it
			}
			if lost, err := placedLost(ev.Hold); err != nil || !lost {
				return err
			}
			return notify(ev, why, false)
		case engine.EventCommitted:
			lost, err := placedLost(ev.Hold)
			if err != nil {
				return err
			}
			if lost {
				return notify(&placing[ev.Hold].Event, placing[ev.Hold].Outcome+"; its sale: "+why, true)
			}
			if conflict {
				return notify(ev, why, true)
			}
		}
		return nil
	}
	for i := range all {
		if all[i].Outcome != ledger.ForkPending {
			continue
		}
		ev := all[i].Event
		c, skip := carryOf(&ev, state, recorded, opts)
		c.ID = "carry-" + ev.Hash
		c.Actor = "reconcile"
		c.Reason = fmt.Sprintf("carried over from forked seq %d by reconcile run %d", ev.Seq, run)
		if _, _, ok := ev.TransferPeer(); ok {
			c.Reason = ev.Reason // a transfer event names its other side (rebuilds of that side look it up)
		}
		settle := func(outcome, note string, seq int64) error {
			all[i].Outcome = outcome
			if note != "" {
				all[i].Outcome += ": " + note
			}
			return r.store.SettleForked(ctx, p, ev.Hash, outcome, note, seq)
		}
		// unkept settles an event that is not carried over: a conflict (acknowledged, and
		// reported) or a skip (nothing left to apply).
		unkept := func(outcome, why string) error {
			conflict := outcome == ledger.ForkConflict
			if conflict {
				res.conflicts = append(res.conflicts, Finding{Kind: KindForkConflict, Partition: p, Location: ev.Location, SKU: ev.SKU,
					Shard: ev.Shard, SeqFrom: ev.Seq, SeqTo: ev.Seq, Amount: ev.Qty,
					Detail: fmt.Sprintf("forked %s (hold %s, customer %q) was acknowledged but cannot be carried over: %s", ev.Type, ev.Hold,
						ev.Customer, why)})
			} else {
				res.skipped++
			}
			if err := uncarried(&ev, why, conflict); err != nil {
				return err
			}
			return settle(outcome, why, 0)
		}
		if why := backorderConflict(&ev, state, forkBackordered); why != "" {
			if err := unkept(ledger.ForkConflict, why); err != nil {
				return err
			}
			continue
		}
		if skip != "" {
			if err := unkept(ledger.ForkSkipped, skip); err != nil {
				return err
			}
			continue
		}
		seq, _, replayed, err := r.eng.Carry(ctx, p, c)
		var cc *engine.CarryConflict
		if errors.As(err, &cc) {
			if err := unkept(ledger.ForkConflict, cc.Why); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("carry forked seq %d over: %w", ev.Seq, err)
		}
		res.carried++
		if replayed {
			// Carried by an earlier run that stopped before it settled the event: state,
			// replayed from what Redis holds, has it and its fills already.
			if err := settle(ledger.ForkCarried, "", seq); err != nil {
				return err
			}
			continue
		}
		note(state, &ev, c)
		if err := settle(ledger.ForkCarried, "", seq); err != nil {
			return err
		}
		if err := learn(seq); err != nil { // the fills the carried event made
			return err
		}
	}
	return nil
}

// verifiedLedger reads partition p's whole ledger and checks it is gap-free from seq 1 with an
// unbroken hash chain: a rebuild trusts nothing else.
func (r *Reconciler) verifiedLedger(ctx context.Context, p int) ([]engine.Event, error) {
	var out []engine.Event
	prev := engine.GenesisHash
	for after := int64(0); ; {
		page, err := r.store.PartitionEvents(ctx, p, after, 10000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, ev := range page {
			if ev.Seq != int64(len(out))+1 || ev.PrevHash != prev || ev.ComputeHash() != ev.Hash {
				return nil, fmt.Errorf("the ledger of partition %d does not verify at seq %d: repair its rows first", p, int64(len(out))+1)
			}
			out = append(out, ev)
			prev = ev.Hash
		}
		after = page[len(page)-1].Seq
	}
}

// streamFrom reads what partition p's stream holds after seq, up to seq upTo.
func (r *Reconciler) streamFrom(ctx context.Context, p int, after, upTo int64) ([]engine.Event, error) {
	var out []engine.Event
	for after < upTo {
		page, err := r.eng.ReadEvents(ctx, p, after, 5000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			if ev.Seq <= upTo {
				out = append(out, ev)
			}
		}
		after = page[len(page)-1].Seq
	}
	return out, nil
}

// rebaseOf is the Redis state the ledger's replay describes. A part Redis still has keeps its
// own record (expiry, fingerprint); a part Redis lost is restored with the longest expiry it
// can have had. Shards Redis has and the ledger never saw are zeroed (carried events refill them).
func rebaseOf(snap *engine.Snapshot, st *engine.Replay, seq int64, head string, forkFrom int64, forked []engine.Event) engine.Rebase {
	rb := engine.Rebase{ExpectSeq: snap.Seq, ExpectHead: snap.Head, Seq: seq, Head: head, ForkFrom: forkFrom,
		Shards: map[engine.ShardKey]engine.ShardCount{}, Holds: map[string]engine.HoldRecord{}, Customers: st.Customers,
		Sales: st.Sales, Queues: st.Queues}
	for _, ev := range forked {
		rb.ForkSeqs = append(rb.ForkSeqs, ev.Seq)
	}
	for f := range snap.Shards {
		rb.Shards[f] = engine.ShardCount{}
	}
	for k, sc := range st.Shards {
		rb.Shards[k] = engine.ShardCount{Available: sc.Available, Held: sc.Held, Committed: sc.Committed, Backordered: sc.Backordered}
	}
	inRedis := map[string]engine.HoldRecord{}
	for _, h := range snap.Holds {
		if _, open := st.Open[h.Part]; !open {
			rb.Drop = append(rb.Drop, h.Part)
		}
		inRedis[h.Part] = h.Record
	}
	for part, op := range st.Open {
		h := op.HoldRecord
		if rec, ok := inRedis[part]; ok && rec.Location == h.Location && rec.SKU == h.SKU && rec.Shard == h.Shard && rec.Qty == h.Qty {
			// The customer counts and the queues are rebuilt with the ledger's view.
			rec.Limited, rec.Window, rec.Backordered = h.Limited, h.Window, h.Backordered
			h = rec
			st.Open[part] = engine.OpenPart{HoldRecord: rec, Seq: op.Seq}
		}
		rb.Holds[part] = h
	}
	return rb
}

// carryOf decides what forked event ev still means on top of st, or why it means nothing
// (skip). A hold's own events apply to it only while it is open; a sale the fork made of a
// hold the ledger's account ended otherwise takes its units from what is available; stock
// changes apply as they were.
func carryOf(ev *engine.Event, st *engine.Replay, recorded map[string]engine.HoldRecord, opts engine.ReplayOptions) (engine.Carried, string) {
	c := engine.Carried{Type: ev.Type, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard, Hold: ev.Hold, Qty: ev.Qty,
		Customer: ev.Customer, Token: ev.Idem}
	h, open := st.Open[ev.Hold]
	ended, isEnded := st.Ended[ev.Hold]
	// Backorders wait in a queue whose order the fork and the ledger's account may tell
	// differently: what the fork did with them is not carried (reconcile reports it).
	switch {
	case ev.Type == engine.EventBackordered || ev.Type == engine.EventFilled:
		return c, "backorders placed or filled on the fork are not carried over"
	case open && h.Backordered && ev.Type != engine.EventExtended:
		return c, "the hold is backordered in the ledger's account"
	case ev.Type == engine.EventCommitted && !open && ev.HeldDelta == 0 && st.Ended[ev.Hold].Outcome != engine.EventCommitted:
		return c, "a backordered sale on the fork is not carried over"
	}
	switch ev.Type {
	case engine.EventReserved:
		if open {
			return c, "the hold is open in the ledger's account already"
		}
		if isEnded {
			return c, "the ledger's account ended this hold already (" + ended.Outcome + ")"
		}
		rec, ok := recorded[ev.Hold]
		if !ok || rec.Qty != ev.Qty || rec.Shard != ev.Shard {
			// What the event alone says of the part, as a replay of it would open it.
			one := engine.NewReplay(opts)
			one.Apply(ev)
			rec = one.Open[ev.Hold].HoldRecord
		}
		rec.Limited = ev.Customer != "" && opts.Limited(engine.KeyOf(ev).Pool())
		if rec.Limited {
			rec.Window = opts.Window(engine.KeyOf(ev).Pool())
		}
		c.Available, c.Held, c.Op, c.Record, c.ExpiresAt = -ev.Qty, ev.Qty, engine.HoldOpen, rec, rec.ExpiresAt
		if rec.Limited {
			c.CustomerDelta = ev.Qty
		}
	case engine.EventCommitted:
		switch {
		case open: // in whole, or in part (the rest given back)
			c.Held, c.Committed, c.Available, c.Op = -h.Qty, ev.Qty, h.Qty-ev.Qty, engine.HoldClose
			if h.Limited && h.Qty > ev.Qty {
				c.CustomerDelta = ev.Qty - h.Qty
			}
		case isEnded && ended.Outcome == engine.EventCommitted:
			return c, "the ledger has this sale already"
		default: // sold on the fork only: the customer was told so
			c.Available, c.Committed = -ev.Qty, ev.Qty
			if pk := engine.KeyOf(ev).Pool(); ev.Customer != "" && opts.Limited(pk) {
				c.CustomerDelta = ev.Qty // bought: it counts against the customer's limit
				if w := opts.Window(pk); w > 0 {
					c.Op = engine.HoldSold
					c.Record = engine.HoldRecord{Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard, Customer: ev.Customer,
						Limited: true, Window: w}
				}
			}
		}
	case engine.EventReleased, engine.EventExpired, engine.EventVoided:
		if !open {
			return c, "the hold is not open in the ledger's account"
		}
		c.Available, c.Held, c.Op = h.Qty, -h.Qty, engine.HoldClose
		if h.Limited {
			c.CustomerDelta = -h.Qty
		}
	case engine.EventExtended:
		if !open {
			return c, "the hold is not open in the ledger's account"
		}
		c.Op, c.ExpiresAt = engine.HoldExtend, max(ev.ExpiresAt, h.ExpiresAt)
	case engine.EventReduced:
		if !open {
			return c, "the hold is not open in the ledger's account"
		}
		if ev.Qty >= h.Qty {
			return c, "the hold has no more units than the reduction gives back"
		}
		c.Available, c.Held, c.Op = ev.Qty, -ev.Qty, engine.HoldShrink
		if h.Limited {
			c.CustomerDelta = -ev.Qty
		}
	default: // stock changes
		if ev.Delta == 0 {
			return c, "it changed no available units"
		}
		if st.Changes[engine.StockChange{Type: ev.Type, ID: ev.Idem, Shard: engine.KeyOf(ev)}] {
			return c, "the ledger has this change already (transaction " + ev.Idem + ")"
		}
		c.Available = ev.Delta
	}
	return c, ""
}

// backorderConflict says why a forked event that changes a backorder is acknowledged and
// cannot be carried over ("" when it is not one): backorders wait in a queue whose order the
// fork and the ledger's account may tell differently, so what the fork placed as a backorder,
// and what it told of a hold the ledger's account has backordered, is reported instead.
func backorderConflict(ev *engine.Event, st *engine.Replay, forkBackordered map[string]bool) string {
	told := ev.Type == engine.EventCommitted || ev.Type == engine.EventReleased || ev.Type == engine.EventReduced ||
		ev.Type == engine.EventReserved
	switch h, open := st.Open[ev.Hold]; {
	case ev.Type == engine.EventBackordered:
		return "a backorder placed on the fork is not carried over (the queue's order is the ledger's)"
	case ev.Type == engine.EventCommitted && forkBackordered[ev.Hold]:
		// (Its release or reduction loses nothing: the placing is reported already.)
		return "the hold was a backorder placed on the fork, which is not carried over"
	case told && open && h.Backordered:
		return "the hold is backordered in the ledger's account"
	case ev.Type == engine.EventCommitted && !open && ev.HeldDelta == 0 && st.Ended[ev.Hold].Outcome != engine.EventCommitted:
		return "the fork sold a backorder that the ledger's account ended otherwise"
	}
	return ""
}

// note updates st with a carried event.
func note(st *engine.Replay, ev *engine.Event, c engine.Carried) {
	k := engine.ShardKey{Location: c.Location, SKU: c.SKU, Shard: c.Shard}
	if sc := st.Shards[k]; sc != nil {
		sc.Available += c.Available
		sc.Held += c.Held
		sc.Committed += c.Committed
	}
	switch c.Op {
	case engine.HoldOpen:
		st.Open[c.Hold] = engine.OpenPart{HoldRecord: c.Record, Seq: ev.Seq}
		delete(st.Ended, c.Hold)
	case engine.HoldClose:
		delete(st.Open, c.Hold)
		st.Ended[c.Hold] = engine.Tombstone{Outcome: ev.Type, At: ev.TS, Location: ev.Location, SKU: ev.SKU, Qty: ev.Qty}
	case engine.HoldExtend:
		h := st.Open[c.Hold]
		h.ExpiresAt = c.ExpiresAt
		st.Open[c.Hold] = h
	case engine.HoldShrink:
		h := st.Open[c.Hold]
		h.Qty -= c.Qty
		st.Open[c.Hold] = h
	}
	switch ev.Type {
	case engine.EventRestocked, engine.EventSpoiled, engine.EventAdjusted, engine.EventTransferIn, engine.EventTransferOut:
		st.Changes[engine.StockChange{Type: ev.Type, ID: ev.Idem, Shard: engine.KeyOf(ev)}] = true
	}
}
