package ledger

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// UpdateLag measures, per partition, the events in Redis not yet in the ledger and the age of
// the oldest of them.
func (p *Persister) UpdateLag(ctx context.Context) error {
	seqs, _, err := p.eng.Heads(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	wm := make(map[int]int64, len(p.watermark))
	for k, v := range p.watermark {
		wm[k] = v
	}
	p.mu.Unlock()
	// Partitions this persister has not persisted (another's, or none yet): what the ledger
	// holds of them, by their highest persisted seq.
	var unknown []int
	for part := range seqs {
		if _, ok := wm[part]; !ok {
			unknown = append(unknown, part)
		}
	}
	if len(unknown) > 0 {
		held, err := p.store.Persisted(ctx, unknown)
		if err != nil {
			return err
		}
		maps.Copy(wm, held)
	}
	lag := make([]int64, len(seqs))
	var oldest time.Duration
	for part, seq := range seqs {
		w := wm[part]
		lag[part] = max(seq-w, 0)
		label := strconv.Itoa(part)
		p.lagGauge.WithLabelValues(label).Set(float64(lag[part]))
		age := 0.0
		if lag[part] > 0 {
			if evs, err := p.eng.ReadEvents(ctx, part, w, 1); err == nil && len(evs) == 1 {
				d := time.Since(time.UnixMilli(evs[0].TS))
				age, oldest = d.Seconds(), max(oldest, d)
			}
		}
		p.lagSecs.WithLabelValues(label).Set(age)
	}
	p.mu.Lock()
	p.lag, p.lagAge = lag, oldest
	p.mu.Unlock()
	return nil
}

// Lag is what the last UpdateLag measured: events waiting to be persisted over all partitions,
// and the age of the oldest of them.
func (p *Persister) Lag() (entries int64, oldest time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lag {
		entries += l
	}
	return entries, p.lagAge
}

// Check is the persister's readiness: it fails while a partition is forked or while more
// events than LagAlarm wait to be persisted.
func (p *Persister) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.forks) > 0 {
		var parts []string
		for part, f := range p.forks {
			parts = append(parts, fmt.Sprintf("partition %d at seq %d (%s)", part, f.Seq, f.Kind))
		}
		return fmt.Errorf("ledger fork: %s; run flashhold reconcile --repair", strings.Join(parts, ", "))
	}
	var total int64
	for _, l := range p.lag {
		total += l
	}
	if total > p.cfg.LagAlarm {
		return fmt.Errorf("%d events wait to be persisted", total)
	}
	return nil
}
