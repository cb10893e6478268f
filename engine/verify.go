package engine

import (
	"context"
	"fmt"
	"slices"
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
	pools := map[PoolKey]*ShardTotals{}
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
		if err := VerifyChain(evs, 0, GenesisHash, map[ShardKey]int64{}); err != nil {
			return v, err
		}
		if int64(len(evs)) != snap.Seq {
			return v, fmt.Errorf("partition %d: %d events in the stream, seq is %d (trimmed or lost)", p, len(evs), snap.Seq)
		}
		if len(evs) > 0 && evs[len(evs)-1].Hash != snap.Head {
			return v, fmt.Errorf("partition %d: head %s is not the last event's hash", p, snap.Head)
		}
		replay := NewReplay(ReplayOptions{})
		for i := range evs {
			replay.Apply(&evs[i])
		}
		openHeld := map[ShardKey]int64{}
		openOwed := map[string]bool{} // backordered open parts
		for _, h := range snap.Holds {
			if h.Record.Backordered {
				openOwed[h.Part] = true
				continue
			}
			openHeld[ShardKey{h.Location, h.SKU, h.Shard}] += h.Qty
		}
		if err := verifyQueues(snap, replay, openOwed); err != nil {
			return v, err
		}
		for k, sc := range snap.Shards {
			if sc.Available < 0 || sc.Held < 0 || sc.Committed < 0 {
				return v, fmt.Errorf("shard %s: negative counter %+v", k, sc)
			}
			r := replay.Shard(k)
			if r.Available != sc.Available || r.Held != sc.Held || r.Committed != sc.Committed {
				return v, fmt.Errorf("shard %s: live available %d held %d committed %d, events replay to %d, %d, %d",
					k, sc.Available, sc.Held, sc.Committed, r.Available, r.Held, r.Committed)
			}
			if openHeld[k] != sc.Held {
				return v, fmt.Errorf("shard %s: held counter %d, open holds %d", k, sc.Held, openHeld[k])
			}
			if sc.Backordered < 0 || sc.Backordered != r.Backordered || sc.Backordered != QueueOwed(snap.Queues[k]) {
				return v, fmt.Errorf("shard %s: backordered counter %d, events replay to %d, its queue owes %d",
					k, sc.Backordered, r.Backordered, QueueOwed(snap.Queues[k]))
			}
			pt := pools[k.Pool()]
			if pt == nil {
				pt = &ShardTotals{}
				pools[k.Pool()] = pt
			}
			pt.Available += sc.Available
			pt.Held += sc.Held
			pt.Committed += sc.Committed
			pt.Vendor += r.Vendor
			pt.Transfers += r.Transfers
		}
	}
	for pk, pt := range pools {
		if pt.Transfers != 0 {
			return v, fmt.Errorf("pool %s: transfers net %d units (a transfer is half done)", pk, pt.Transfers)
		}
		if pt.Vendor != pt.Available+pt.Held+pt.Committed {
			return v, fmt.Errorf("pool %s: conservation broken: stock put in %d != available %d + held %d + committed %d",
				pk, pt.Vendor, pt.Available, pt.Held, pt.Committed)
		}
	}
	return v, nil
}

// verifyQueues checks each backorder queue of snap against the replay's (the same parts, in
// the same order, in the same state) and against the open parts marked backordered (each in
// its shard's queue, open, and nothing else open there).
func verifyQueues(snap *Snapshot, replay *Replay, openOwed map[string]bool) error {
	keys := map[ShardKey]bool{}
	for k := range snap.Queues {
		keys[k] = true
	}
	for k := range replay.Queues {
		keys[k] = true
	}
	for k := range keys {
		live, want := snap.Queues[k], replay.Queues[k]
		if !slices.Equal(live, want) {
			return fmt.Errorf("shard %s: backorder queue %q, events replay to %q", k, encodeQueue(live), encodeQueue(want))
		}
		for _, b := range live {
			if b.Sold {
				continue // its record is gone (the part id may be placed again)
			}
			if !openOwed[b.Part] {
				return fmt.Errorf("shard %s: backorder queue has part %s open, and its record is not backordered", k, b.Part)
			}
			delete(openOwed, b.Part)
		}
	}
	for part := range openOwed {
		return fmt.Errorf("partition %d: part %s is backordered and in no queue", snap.Partition, part)
	}
	return nil
}
