package ledger

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// noteRead records what a read of parts (whose heads were read before it) found, and returns
// the number of entries. A partition that returned nothing is marked drained at its head: its
// stream held nothing undelivered up to there (unless the read was cut short by MaxRows, when
// partitions without entries may not have been read at all). Entries delivered before mean
// more may be pending than one pass reads: the next pass is full too.
func (p *Persister) noteRead(parts []int, heads []engine.PartitionHead, entries []engine.GroupEntries, readOwn bool) int {
	n := 0
	got := make(map[int]bool, len(entries))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, en := range entries {
		n += len(en.Messages)
		got[en.Partition] = true
		p.groups[en.Partition] = true
		if en.Delivered {
			p.ownDue, p.claimDue = p.ownDue || readOwn, true
		}
	}
	if n < p.cfg.MaxRows {
		for _, part := range parts {
			if !got[part] {
				p.drained[part] = heads[part]
			}
		}
	}
	return n
}

// claimPartitions returns the partitions this pass handles, unfenced, not found forked and
// leased to this persister (several persisters share the partitions between them), and every
// partition's head as read before.
func (p *Persister) claimPartitions(ctx context.Context) ([]int, []engine.PartitionHead, error) {
	heads, err := p.eng.PartitionHeads(ctx)
	if err != nil {
		return nil, nil, err
	}
	var cand []int
	p.mu.Lock()
	for part, h := range heads {
		if h.Fence != "" {
			continue // fenced: nothing is persisted until reconciliation repairs and unfences it
		}
		if _, was := p.forks[part]; was {
			delete(p.forks, part) // repaired since: persist again, from what Postgres holds
			delete(p.watermark, part)
			delete(p.ahead, part)
			p.ownDue = true // what was read of it before the fork is still pending
		}
		cand = append(cand, part)
	}
	p.mu.Unlock()
	if len(cand) == 0 {
		return nil, heads, nil
	}
	out, err := p.holdLeases(ctx, cand)
	return out, heads, err
}

// holdLeases returns those of cand whose lease this persister holds. A lease held is renewed
// once a third of its length has passed, and one held by another is asked for again after a
// third of its length: most passes make no lease call at all.
func (p *Persister) holdLeases(ctx context.Context, cand []int) ([]int, error) {
	now := time.Now()
	every := p.cfg.Lease / 3
	var out, ask []int
	var names []string
	p.mu.Lock()
	for _, part := range cand {
		until, held := p.leases[part]
		switch {
		case held && until.Sub(now) > p.cfg.Lease-every:
			out = append(out, part)
		case !held && now.Before(p.leaseTry[part]):
		default:
			ask = append(ask, part)
			names = append(names, "persist:"+strconv.Itoa(part))
		}
	}
	p.mu.Unlock()
	if len(ask) == 0 {
		return out, nil
	}
	ok, err := p.eng.Leases(ctx, names, p.owner, p.cfg.Lease)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, part := range ask {
		if ok[i] {
			p.leases[part] = now.Add(p.cfg.Lease) // measured from before the call: never late
			out = append(out, part)
		} else {
			delete(p.leases, part)
			p.leaseTry[part] = now.Add(every)
		}
	}
	slices.Sort(out)
	return out, nil
}
