package ledger

import (
	"context"
	"fmt"

	"github.com/flashhold/flashhold/engine"
)

// ForkFencePrefix starts the reason of the fence raised on a forked partition.
const ForkFencePrefix = "ledger fork at seq"

// stillForked says whether the stream still holds the event of f as this batch read it.
// Reconciliation may have rebuilt the partition since the batch was read (removing the
// forked entries and lifting the fence): a fence raised now would stop a repaired partition.
// What this batch holds of such a partition stays unacknowledged and is read again.
func (p *Persister) stillForked(ctx context.Context, f Fork, batch []engine.Event) bool {
	var read string
	for i := range batch {
		if batch[i].Partition == f.Partition && batch[i].Seq == f.Seq {
			read = batch[i].Hash
			break
		}
	}
	now, err := p.eng.ReadEvents(ctx, f.Partition, f.Seq-1, 1)
	if err != nil || read == "" {
		return true // when in doubt, fence
	}
	if len(now) == 1 && now[0].Seq == f.Seq && now[0].Hash == read {
		return true
	}
	p.log.Warn().Int("partition", f.Partition).Int64("seq", f.Seq).
		Msg("a batch read before the partition was rebuilt contradicts the ledger; the stream no longer holds it: not fenced")
	return false
}

// fork stops persisting a partition whose stream contradicts the ledger and fences it: Redis
// lost acknowledged writes, and only reconciliation may decide what happens next.
func (p *Persister) fork(ctx context.Context, f Fork) {
	p.mu.Lock()
	p.forks[f.Partition] = f
	p.mu.Unlock()
	p.alarms.Inc()
	p.log.Error().Int("partition", f.Partition).Int64("seq", f.Seq).Str("kind", f.Kind).Str("detail", f.Detail).
		Msg("INTEGRITY ALARM: the stream contradicts the ledger (Redis lost acknowledged writes); partition fenced, run reconcile --repair")
	reason := fmt.Sprintf("%s %d (%s)", ForkFencePrefix, f.Seq, f.Kind)
	if err := p.eng.Fence(ctx, f.Partition, reason); err != nil {
		p.log.Error().Err(err).Int("partition", f.Partition).Msg("could not fence the forked partition")
	}
}

// Forks lists the partitions this persister found forked.
func (p *Persister) Forks() []Fork {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Fork, 0, len(p.forks))
	for _, f := range p.forks {
		out = append(out, f)
	}
	return out
}
