package ledger

import (
	"context"
	"fmt"
	"sort"

	"github.com/flashhold/flashhold/engine"
)

// ack acknowledges what was persisted; a forked partition's entries stay pending for repair.
func (p *Persister) ack(ctx context.Context, entries []engine.GroupEntries, forked map[int]bool) error {
	var done []engine.GroupEntries
	for _, en := range entries {
		if !forked[en.Partition] {
			done = append(done, en)
		}
	}
	return p.eng.AckGroup(ctx, p.cfg.Group, done)
}

// advance moves each partition's watermark over events now known to be in the ledger.
func (p *Persister) advance(events []engine.Event, forked map[int]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		if forked[ev.Partition] {
			continue
		}
		r := p.ahead[ev.Partition]
		if r == nil {
			r = &seqRanges{}
			p.ahead[ev.Partition] = r
		}
		r.add(ev.Seq)
	}
	for part, r := range p.ahead {
		w, ok := p.watermark[part]
		if !ok {
			continue // learned from Postgres before trimming
		}
		p.watermark[part] = r.advance(w)
	}
}

// seqRanges is a set of seqs kept as sorted, disjoint, non-adjacent ranges: batches are
// ranges, so a handful of them describes what was persisted past a watermark.
type seqRanges struct{ r [][2]int64 }

func (s *seqRanges) add(seq int64) {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= seq-1 })
	switch {
	case i < len(s.r) && s.r[i][0] <= seq && seq <= s.r[i][1]:
		return
	case i < len(s.r) && s.r[i][1] == seq-1:
		s.r[i][1] = seq
		if i+1 < len(s.r) && s.r[i+1][0] == seq+1 {
			s.r[i][1] = s.r[i+1][1]
			s.r = append(s.r[:i+1], s.r[i+2:]...)
		}
	case i < len(s.r) && s.r[i][0] == seq+1:
		s.r[i][0] = seq
	default:
		s.r = append(s.r, [2]int64{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = [2]int64{seq, seq}
	}
}

// advance returns the highest seq from w up to which every seq is in the set or at most w,
// and forgets the ranges at or below it.
func (s *seqRanges) advance(w int64) int64 {
	for len(s.r) > 0 && s.r[0][0] <= w+1 {
		w = max(w, s.r[0][1])
		s.r = s.r[1:]
	}
	return w
}

// trim removes stream entries older than Keep below what the ledger holds for certain, and
// below what every consumer group acknowledged.
func (p *Persister) trim(ctx context.Context) error {
	type cut struct {
		part  int
		minID int64
	}
	var cuts []cut
	p.mu.Lock()
	var unknown []int
	for part := range p.groups {
		if _, bad := p.forks[part]; bad {
			continue
		}
		w, ok := p.watermark[part]
		if !ok {
			unknown = append(unknown, part)
			continue
		}
		if minID := w - p.cfg.Keep + 1; minID > p.trimmed[part]+max(p.cfg.Keep/10, 1) {
			cuts = append(cuts, cut{part, minID})
		}
	}
	p.mu.Unlock()
	for _, part := range unknown { // learned from Postgres, which holds at least this much
		w, err := p.store.Watermark(ctx, part)
		if err != nil {
			return err
		}
		p.mu.Lock()
		if _, ok := p.watermark[part]; !ok {
			p.watermark[part] = w
		}
		p.mu.Unlock()
	}
	for _, c := range cuts {
		// Never past what another consumer group (the alert detector's) has acknowledged.
		if _, err := p.eng.TrimStream(ctx, c.part, c.minID+p.cfg.Keep-1, p.cfg.Keep); err != nil {
			return fmt.Errorf("trim partition %d: %w", c.part, err)
		}
		p.mu.Lock()
		p.trimmed[c.part] = c.minID
		p.mu.Unlock()
	}
	return nil
}
