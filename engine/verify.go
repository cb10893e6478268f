package engine

import (
	"context"
	"fmt"
)

// Verification is what Verify read: every event of every partition, oldest first.
type Verification struct {
	Events map[int][]Event
}

// CountTypes counts the verified events by type.
func (v *Verification) CountTypes() map[string]int {
	n := map[string]int{}
	for _, evs := range v.Events {
		for _, ev := range evs {
			n[ev.Type]++
		}
	}
	return n
}

type shardTotals struct {
	available, held, committed int64
	vendor                     int64 // net of restock, spoilage and adjustment
	transfers                  int64
}

// Verify checks, at a quiet moment, everything the engine promises, by replaying the
// partitions' streams from their first event against the live counters: each partition's
// events form a gap-free, unbroken hash chain ending at its seq and head; each shard's
// available_after chain is continuous; replay gives exactly the live available, held and
// committed counts; no counter is negative; held equals the open holds' units; per pool,
// stock put in (restocks ± adjustments − spoilage) = available + held + committed, and
// transfers net to zero. It needs streams that still hold every event (not trimmed); the
// reconciliation job checks trimmed partitions against the ledger.
func (e *Engine) Verify(ctx context.Context) (*Verification, error) {
	v := &Verification{Events: map[int][]Event{}}
	pools := map[string]*shardTotals{}
	for p := range e.Partitions() {
		snap, err := e.Snapshot(ctx, p)
		if err != nil {
			return v, err
		}
		var evs []Event
		for after := int64(0); after < snap.Seq; {
			batch, err := e.ReadEvents(ctx, p, after, 5000)
			if err != nil {
				return v, err
			}
			if len(batch) == 0 {
				break
			}
			evs = append(evs, batch...)
			after = batch[len(batch)-1].Seq
		}
		v.Events[p] = evs
		if err := VerifyChain(evs, 0, GenesisHash, map[string]int64{}); err != nil {
			return v, err
		}
		if int64(len(evs)) != snap.Seq {
			return v, fmt.Errorf("partition %d: %d events in the stream, seq is %d (trimmed or lost)", p, len(evs), snap.Seq)
		}
		if len(evs) > 0 && evs[len(evs)-1].Hash != snap.Head {
			return v, fmt.Errorf("partition %d: head %s is not the last event's hash", p, snap.Head)
		}
		replay := map[string]*shardTotals{}
		for _, ev := range evs {
			f := shardField(ev.Location, ev.SKU, ev.Shard)
			r := replay[f]
			if r == nil {
				r = &shardTotals{}
				replay[f] = r
			}
			r.available = ev.After
			r.held += ev.HeldDelta
			switch ev.Type {
			case EventCommitted:
				r.committed += ev.Qty
			case EventRestocked, EventSpoiled, EventAdjusted:
				r.vendor += ev.Delta
			case EventTransferOut, EventTransferIn:
				r.transfers += ev.Delta
			}
		}
		openHeld := map[string]int64{}
		for _, h := range snap.Holds {
			openHeld[shardField(h.Location, h.SKU, h.Shard)] += h.Qty
		}
		for f, sc := range snap.Shards {
			if sc.Available < 0 || sc.Held < 0 || sc.Committed < 0 {
				return v, fmt.Errorf("shard %s: negative counter %+v", f, sc)
			}
			r := replay[f]
			if r == nil {
				r = &shardTotals{}
			}
			if r.available != sc.Available || r.held != sc.Held || r.committed != sc.Committed {
				return v, fmt.Errorf("shard %s: live available %d held %d committed %d, events replay to %d, %d, %d",
					f, sc.Available, sc.Held, sc.Committed, r.available, r.held, r.committed)
			}
			if openHeld[f] != sc.Held {
				return v, fmt.Errorf("shard %s: held counter %d, open holds %d", f, sc.Held, openHeld[f])
			}
			pk := f[:len(f)-len(fmt.Sprint(sc.Shard))-1]
			pt := pools[pk]
			if pt == nil {
				pt = &shardTotals{}
				pools[pk] = pt
			}
			pt.available += sc.Available
			pt.held += sc.Held
			pt.committed += sc.Committed
			pt.vendor += r.vendor
			pt.transfers += r.transfers
		}
	}
	for pk, pt := range pools {
		if pt.transfers != 0 {
			return v, fmt.Errorf("pool %s: transfers net %d units (a transfer is half done)", pk, pt.transfers)
		}
		if pt.vendor != pt.available+pt.held+pt.committed {
			return v, fmt.Errorf("pool %s: conservation broken: stock put in %d != available %d + held %d + committed %d",
				pk, pt.vendor, pt.available, pt.held, pt.committed)
		}
	}
	return v, nil
}
