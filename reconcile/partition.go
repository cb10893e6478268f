package reconcile

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// partition reconciles one partition and returns the events it replayed, whether it started
// from a checkpoint, and its findings: it assembles the events up to Redis's snapshot,
// verifies their chain, replays them and compares the result with the snapshot's counters,
// holds and transfers.
func (r *Reconciler) partition(ctx context.Context, p int, run int64, opts Options, pools map[engine.PoolKey]bool) (int64, bool, []Finding, error) {
	snap, err := r.eng.Snapshot(ctx, p)
	if err != nil {
		return 0, false, nil, err
	}
	cp := &checkpoint{State: newState()}
	if !opts.Full && !opts.Repair { // a repair weighs all the evidence
		if cp, err = r.loadCheckpoint(ctx, p, snap.Seq); err != nil {
			return 0, false, nil, err
		}
	}
	var found []Finding
	if snap.Fence != "" {
		found = append(found, Finding{Kind: KindFenced, Partition: p, Shard: -1, Detail: snap.Fence, rebuild: rebuildFence(snap.Fence)})
	}
	a, err := r.assemble(ctx, p, snap, cp.Seq)
	if err != nil {
		return 0, false, nil, err
	}
	found = append(found, a.found...)
	found = append(found, verify(p, a.events, cp)...)
	// Replay the counters and open holds, from the checkpoint's state.
	state := cp.State
	var atContig *engine.Replay
	for i := range a.events {
		state.Apply(&a.events[i])
		if a.events[i].Seq == a.contig {
			atContig = state.Clone()
		}
	}
	match := func(k engine.PoolKey) bool { return opts.Pool == nil || *opts.Pool == k }
	found = append(found, r.compareCounters(p, run, snap, state, match, pools)...)
	found = append(found, compareHolds(p, snap, state, match)...)
	found = append(found, r.compareTransfers(p, snap, time.Now().Add(-opts.TransferGrace), match)...)
	// A partition found clean moves its checkpoint to the last event the ledger holds
	// without a gap, so the next run starts there.
	if len(found) == 0 && !opts.Repair && opts.Pool == nil && atContig != nil {
		if err := r.saveCheckpoint(ctx, p, run, a.contig, a.ledger[a.contig].Hash, atContig); err != nil {
			return 0, false, nil, err
		}
	}
	if !opts.Since.IsZero() {
		found = since(found, a.events, opts.Since)
	}
	return int64(len(a.events)), cp.Seq > 0, found, nil
}

// assembly is a partition's events after a checkpoint, as the ledger and the stream give them.
type assembly struct {
	// events are those from the checkpoint up to the snapshot's seq: a ledger row that
	// verifies, else the stream's copy. What the ledger lacks or has altered is in found
	// either way; using the stream's copy keeps one fault from showing up again as drift.
	events []engine.Event
	ledger map[int64]engine.Event
	// contig is the last seq up to which the ledger holds every event: where the next
	// checkpoint may go.
	contig int64
	found  []Finding
}

// assemble reads partition p's ledger and stream after seq start and puts its events
// together, finding gaps, edited rows, forks and a ledger ahead of Redis.
func (r *Reconciler) assemble(ctx context.Context, p int, snap *engine.Snapshot, start int64) (*assembly, error) {
	a := &assembly{ledger: map[int64]engine.Event{}, contig: start}
	add := func(f Finding) { a.found = append(a.found, f) }
	ledgerMax, err := r.readLedger(ctx, p, start, a.ledger)
	if err != nil {
		return nil, err
	}
	if ledgerMax > snap.Seq {
		// Under traffic the persister copies events past the cut while the ledger is read:
		// the ledger is ahead only if Redis, read now, is still behind it.
		now, err := r.eng.Seq(ctx, p)
		if err != nil {
			return nil, err
		}
		if ledgerMax > now {
			add(Finding{Kind: KindLedgerAhead, Partition: p, Shard: -1, SeqFrom: now + 1, SeqTo: ledgerMax, Amount: ledgerMax - now,
				Detail:  fmt.Sprintf("the ledger holds events up to seq %d, Redis only up to %d: Redis lost acknowledged writes", ledgerMax, now),
				rebuild: true})
		}
	}
	stream, err := r.streamFrom(ctx, p, start, snap.Seq)
	if err != nil {
		return nil, err
	}
	streamRows := make(map[int64]engine.Event, len(stream))
	for _, ev := range stream {
		streamRows[ev.Seq] = ev
	}
	// restoreFix writes the stream's copies of seqs from..to back into the ledger, if the
	// stream still has every one of them.
	restoreFix := func(from, to int64) func(context.Context) error {
		var rows []engine.Event
		for seq := from; seq <= to; seq++ {
			sr, ok := streamRows[seq]
			if !ok {
				return nil
			}
			rows = append(rows, sr)
		}
		return func(ctx context.Context) error { return r.store.RestoreRows(ctx, rows) }
	}
	var gapFrom, forkFrom, forkTo int64
	closeGap := func(to int64) {
		if gapFrom > 0 {
			add(Finding{Kind: KindGap, Partition: p, Shard: -1, SeqFrom: gapFrom, SeqTo: to, Amount: to - gapFrom + 1,
				Detail: fmt.Sprintf("events %d to %d are missing from the ledger", gapFrom, to), fix: restoreFix(gapFrom, to)})
			gapFrom = 0
		}
	}
	for seq := start + 1; seq <= snap.Seq; seq++ {
		lr, inLedger := a.ledger[seq]
		sr, inStream := streamRows[seq]
		if inLedger && a.contig == seq-1 {
			a.contig = seq
		}
		switch {
		case inLedger:
			closeGap(seq - 1)
			if lr.ComputeHash() != lr.Hash {
				add(Finding{Kind: KindChainBreak, Partition: p, Location: lr.Location, SKU: lr.SKU, Shard: lr.Shard, SeqFrom: seq, SeqTo: seq,
					Amount: editedAmount(lr, sr, inStream), Detail: "the ledger row's content does not match its hash (edited)",
					fix: restoreFix(seq, seq)})
				if inStream {
					lr = sr
				}
			} else if inStream && sr.Hash != lr.Hash {
				forkTo = seq
				if forkFrom == 0 {
					forkFrom = seq
				}
			}
			a.events = append(a.events, lr)
		case seq <= ledgerMax: // a hole inside what the ledger holds
			if gapFrom == 0 {
				gapFrom = seq
			}
			if inStream {
				a.events = append(a.events, sr)
			}
		case inStream: // not persisted yet
			closeGap(seq - 1)
			a.events = append(a.events, sr)
		default: // neither side has it
			if gapFrom == 0 {
				gapFrom = seq
			}
		}
	}
	closeGap(snap.Seq)
	if forkFrom > 0 {
		add(Finding{Kind: KindFork, Partition: p, Shard: -1, SeqFrom: forkFrom, SeqTo: forkTo, Amount: forkTo - forkFrom + 1, rebuild: true,
			Detail: fmt.Sprintf("the stream and the ledger hold different events under seqs %d to %d: Redis lost acknowledged writes and wrote others", forkFrom, forkTo)})
	}
	return a, nil
}

// readLedger reads partition p's ledger rows after seq start into rows and returns the
// last seq read (start when there is none).
func (r *Reconciler) readLedger(ctx context.Context, p int, start int64, rows map[int64]engine.Event) (int64, error) {
	last := start
	for {
		page, err := r.store.PartitionEvents(ctx, p, last, 10000)
		if err != nil {
			return 0, err
		}
		if len(page) == 0 {
			return last, nil
		}
		for _, ev := range page {
			rows[ev.Seq] = ev
		}
		last = page[len(page)-1].Seq
	}
}

// compareCounters reports each shard (of the pools match selects) whose live counters differ
// from the replayed ones; --repair removes the drift with an audited event.
func (r *Reconciler) compareCounters(p int, run int64, snap *engine.Snapshot, state *engine.Replay, match func(engine.PoolKey) bool,
	pools map[engine.PoolKey]bool) []Finding {
	var found []Finding
	for k, sc := range snap.Shards {
		if !match(k.Pool()) {
			continue
		}
		pools[k.Pool()] = true
		st := state.Shards[k]
		if st == nil {
			st = &engine.ShardTotals{}
		}
		for _, c := range []struct {
			name       string
			live, want int64
		}{{engine.CounterAvailable, sc.Available, st.Available}, {engine.CounterHeld, sc.Held, st.Held},
			{engine.CounterCommitted, sc.Committed, st.Committed}} {
			if c.live == c.want {
				continue
			}
			fd := Finding{Kind: KindDrift, Partition: p, Location: k.Location, SKU: k.SKU, Shard: k.Shard, SeqTo: snap.Seq, Amount: c.live - c.want,
				Detail: fmt.Sprintf("%s is %d in Redis, %d by the ledger", c.name, c.live, c.want)}
			counter, drift, id := c.name, fd.Amount, fmt.Sprintf("rc-%d-%d-%d-%s", run, p, k.Shard, c.name)
			reason := fmt.Sprintf("reconcile run %d: %s drift of %+d removed", run, c.name, drift)
			fd.fix = func(ctx context.Context) error {
				_, _, err := r.eng.RepairDrift(ctx, k.Location, k.SKU, k.Shard, counter, drift, id, "reconcile", reason)
				return err
			}
			found = append(found, fd)
		}
		if sc.Backordered != st.Backordered || !slices.Equal(snap.Queues[k], state.Queues[k]) {
			// Not repaired here: no single counter is wrong alone. A rebuild of the partition
			// from the ledger (its repair after a loss) writes the queue the ledger tells.
			found = append(found, Finding{Kind: KindDrift, Partition: p, Location: k.Location, SKU: k.SKU, Shard: k.Shard, SeqTo: snap.Seq,
				Amount: sc.Backordered - st.Backordered,
				Detail: fmt.Sprintf("backorders: %d units owed in Redis (queue %d parts), %d by the ledger (queue %d parts)",
					sc.Backordered, len(snap.Queues[k]), st.Backordered, len(state.Queues[k]))})
		}
	}
	return found
}

// compareHolds reports hold parts Redis has and no event placed, and parts the events leave
// open that Redis does not have.
func compareHolds(p int, snap *engine.Snapshot, state *engine.Replay, match func(engine.PoolKey) bool) []Finding {
	var found []Finding
	inRedis := map[string]bool{}
	for _, h := range snap.Holds {
		inRedis[h.Part] = true
		if _, ok := state.Open[h.Part]; !ok && match(engine.PoolKey{Location: h.Location, SKU: h.SKU}) {
			found = append(found, Finding{Kind: KindOrphanHold, Partition: p, Location: h.Location, SKU: h.SKU, Shard: h.Shard, Amount: h.Qty,
				Detail: fmt.Sprintf("hold part %s is in Redis but no event placed it", h.Part)})
		}
	}
	for part, h := range state.Open {
		if !inRedis[part] && match(engine.PoolKey{Location: h.Location, SKU: h.SKU}) {
			found = append(found, Finding{Kind: KindLostHold, Partition: p, Location: h.Location, SKU: h.SKU, Shard: h.Shard, SeqFrom: h.Seq,
				SeqTo: h.Seq, Amount: h.Qty, Detail: fmt.Sprintf("hold part %s is open in the ledger but Redis does not have it", part)})
		}
	}
	return found
}

// compareTransfers reports transfers taken out of a shard before cutoff and never completed;
// --repair completes them.
func (r *Reconciler) compareTransfers(p int, snap *engine.Snapshot, cutoff time.Time, match func(engine.PoolKey) bool) []Finding {
	var found []Finding
	for _, t := range snap.Transfers {
		if t.TakenAt <= cutoff.UnixMilli() && match(engine.PoolKey{Location: t.Location, SKU: t.SKU}) {
			found = append(found, Finding{Kind: KindHalfTransfer, Partition: p, Location: t.Location, SKU: t.SKU, Shard: t.FromShard, Amount: t.Qty,
				Detail: fmt.Sprintf("transfer %s took %d units out of shard %d for shard %d and was never completed", t.ID, t.Qty, t.FromShard, t.ToShard),
				fix:    func(ctx context.Context) error { return r.eng.FinishTransfer(ctx, t, "reconcile") }})
		}
	}
	return found
}

// since keeps the findings that concern events from t on, and those not about one event.
func since(found []Finding, replay []engine.Event, t time.Time) []Finding {
	ts := make(map[int64]int64, len(replay))
	for _, ev := range replay {
		ts[ev.Seq] = ev.TS
	}
	cut := t.UnixMilli()
	var out []Finding
	for _, f := range found {
		if at, ok := ts[f.SeqFrom]; ok && f.Kind != KindDrift && at < cut {
			continue
		}
		out = append(out, f)
	}
	return out
}

// editedAmount is how far an edited ledger row's qty is from the stream's copy (0 if unknown).
func editedAmount(ledgerRow, streamRow engine.Event, inStream bool) int64 {
	if !inStream {
		return 0
	}
	return ledgerRow.Qty - streamRow.Qty
}

// verify checks that each event links to the one before it (the first to the checkpoint)
// and continues its shard's available count (gaps and hashes are checked while the events
// are assembled).
func verify(p int, evs []engine.Event, cp *checkpoint) []Finding {
	var found []Finding
	prevSeq, prevHash := cp.Seq, cp.Hash
	if prevSeq == 0 {
		prevHash = engine.GenesisHash
	}
	after := map[engine.ShardKey]int64{}
	for k, st := range cp.State.Shards {
		after[k] = st.Available
	}
	for i := range evs {
		ev := &evs[i]
		if ev.Seq == prevSeq+1 && ev.PrevHash != prevHash {
			found = append(found, Finding{Kind: KindChainBreak, Partition: p, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard,
				SeqFrom: ev.Seq, SeqTo: ev.Seq, Detail: "prev_hash is not the previous event's hash (reordered or replaced)"})
		}
		f := engine.KeyOf(ev)
		if b, ok := after[f]; ok && ev.Seq == prevSeq+1 && b+ev.Delta != ev.After {
			found = append(found, Finding{Kind: KindChainBreak, Partition: p, Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard,
				SeqFrom: ev.Seq, SeqTo: ev.Seq, Amount: ev.After - (b + ev.Delta),
				Detail: fmt.Sprintf("available_after %d does not follow %d%+d", ev.After, b, ev.Delta)})
		}
		after[f] = ev.After
		prevSeq, prevHash = ev.Seq, ev.Hash
	}
	return found
}
