package ledger

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// batch is what one fetch read.
type batch struct {
	entries []engine.GroupEntries
	events  []engine.Event
	dead    []DeadLetter
	read    int
	polled  int // partitions read
}

// RunOnce makes one pass: reads what each leased, unfenced partition has for this consumer
// (its own pending entries first, then entries claimed from dead consumers, then new ones),
// writes them in one transaction, acknowledges them, fences forked partitions and trims
// streams below what Postgres holds.
func (p *Persister) RunOnce(ctx context.Context) (PersistPass, error) {
	b, err := p.fetch(ctx, true)
	if err != nil || b.read == 0 {
		var polled int
		if b != nil {
			polled = b.polled
		}
		return PersistPass{Polled: polled}, err
	}
	pass, err := p.write(ctx, b)
	if err != nil {
		p.failed()
	}
	return pass, err
}

// fetch claims partitions and reads and decodes their entries. With own false it leaves out
// this consumer's pending entries (a batch being written).
//
// Most passes read only the partitions whose head moved since their stream was last found
// drained, and only entries never delivered: with one hot partition of 64, a pass is a few
// commands instead of three per partition. A full pass reads every leased partition: entries
// claimed from consumers idle for ClaimIdle, and new ones, and (unless own is false) this
// consumer's own pending entries first. A full pass is made at least every fullEvery (under
// steady load too, when every pass is a prefetch), and while a pass keeps finding entries
// delivered before (more may remain); own entries are read first, after any failure or fork,
// and every fullEvery.
func (p *Persister) fetch(ctx context.Context, own bool) (*batch, error) {
	if err := p.syncPools(ctx); err != nil {
		return nil, err
	}
	parts, heads, err := p.claimPartitions(ctx)
	if err != nil || len(parts) == 0 {
		return &batch{}, err
	}
	p.mu.Lock()
	periodic := time.Since(p.lastFull) >= p.fullEvery()
	readOwn := own && (p.ownDue || periodic)
	full := readOwn || periodic || p.claimDue
	if readOwn {
		p.ownDue = false
	}
	if full {
		p.claimDue, p.lastFull = false, time.Now()
	} else {
		moved := parts[:0:0]
		for _, part := range parts {
			if p.drained[part] != heads[part] {
				moved = append(moved, part)
			}
		}
		parts = moved
	}
	p.mu.Unlock()
	if len(parts) == 0 {
		return &batch{}, nil
	}
	read := engine.GroupRead{Group: p.cfg.Group, Consumer: p.owner, Start: "0", Count: p.cfg.Batch,
		Budget: p.cfg.MaxRows, SkipOwn: !readOwn}
	if full {
		read.ClaimIdle = max(p.cfg.ClaimIdle, time.Millisecond)
	}
	entries, err := p.eng.ReadGroup(ctx, read, parts)
	if err != nil {
		p.failed()
		return nil, err
	}
	entries = p.replicatedOnly(ctx, entries)
	n := p.noteRead(parts, heads, entries, readOwn)
	b := &batch{entries: entries, events: make([]engine.Event, 0, n), polled: len(parts)}
	for _, en := range entries {
		for _, m := range en.Messages {
			b.read++
			if m.Values == nil {
				continue // trimmed after it was persisted: only its acknowledgement is missing
			}
			c, _ := m.Values["e"].(string)
			h, _ := m.Values["h"].(string)
			ev, err := engine.ParseEvent(c, h)
			if err == nil && ev.Partition != en.Partition {
				err = fmt.Errorf("event of partition %d in the stream of partition %d", ev.Partition, en.Partition)
			}
			if err == nil && m.ID != strconv.FormatInt(ev.Seq, 10)+"-0" {
				err = fmt.Errorf("entry id %s does not match seq %d", m.ID, ev.Seq)
			}
			if err != nil {
				b.dead = append(b.dead, DeadLetter{Partition: en.Partition, StreamID: m.ID, Payload: m.Values, Err: err.Error()})
				continue
			}
			b.events = append(b.events, ev)
		}
	}
	return b, nil
}

// replicatedOnly keeps, with FLASHHOLD_REDIS_WAIT_REPLICAS, the entries of the partitions
// whose node's replicas have them: the others stay pending, to be read again (only what the
// replicas have reaches the ledger; see Engine.WaitReplicated). A node without replicas holds
// back its own partitions, not the others'.
func (p *Persister) replicatedOnly(ctx context.Context, entries []engine.GroupEntries) []engine.GroupEntries {
	var read []int
	for _, en := range entries {
		if len(en.Messages) > 0 {
			read = append(read, en.Partition)
		}
	}
	behind := p.eng.WaitReplicated(ctx, read)
	if len(behind) == 0 {
		return entries
	}
	p.failed()
	kept := entries[:0:0]
	for _, en := range entries {
		if _, held := behind[en.Partition]; !held {
			kept = append(kept, en)
		}
	}
	p.mu.Lock()
	warn := time.Since(p.lastBehindLog) > 10*time.Second
	if warn {
		p.lastBehindLog = time.Now()
	}
	p.mu.Unlock()
	if warn {
		for part, err := range behind {
			p.log.Warn().Err(err).Int("partition", part).Int("partitions_held_back", len(behind)).
				Msg("events held back from the ledger until the replicas have them")
			break
		}
	}
	return kept
}

// write stores a fetched batch, acknowledges it, handles forks and trims. Partitions found
// forked since the batch was read are left out (and stay pending): nothing read after a fork
// may reach the ledger.
func (p *Persister) write(ctx context.Context, b *batch) (PersistPass, error) {
	pass, forked, err := p.commit(ctx, b)
	if err != nil {
		return pass, err
	}
	return pass, p.settle(ctx, b, forked)
}

// commit stores a fetched batch in one transaction and fences what it found forked; it
// returns the forked partitions, whose entries stay pending.
func (p *Persister) commit(ctx context.Context, b *batch) (PersistPass, map[int]bool, error) {
	pass := PersistPass{Polled: b.polled, Read: b.read}
	p.mu.Lock()
	if len(p.forks) > 0 {
		keep := b.entries[:0:0]
		for _, en := range b.entries {
			if _, bad := p.forks[en.Partition]; !bad {
				keep = append(keep, en)
			}
		}
		evs := b.events[:0:0]
		for _, ev := range b.events {
			if _, bad := p.forks[ev.Partition]; !bad {
				evs = append(evs, ev)
			}
		}
		b.entries, b.events = keep, evs
	}
	p.mu.Unlock()
	res, err := p.append(ctx, b.events, b.dead)
	if err != nil {
		return pass, nil, err
	}
	pass.Inserted, pass.Duplicates, pass.DeadLetters, pass.Forks = res.Inserted, res.Duplicates, res.DeadLetters, res.Forks
	p.persisted.Add(float64(res.Inserted))
	p.batchSize.Observe(float64(len(b.events)))
	p.deadTotal.Add(float64(res.DeadLetters))
	forked := map[int]bool{}
	if len(res.Forks) > 0 {
		p.failed() // what is left pending is read again once the partition is repaired
	}
	for _, f := range res.Forks {
		forked[f.Partition] = true
		if p.stillForked(ctx, f, b.events) {
			p.fork(ctx, f)
		}
	}
	return pass, forked, nil
}

// settle advances the watermarks over a committed batch, acknowledges it (but for forked
// partitions) and trims the streams below the watermarks. The watermarks move first: they say
// what the ledger holds, which the commit settled; an acknowledgement that fails may still
// have taken effect on some partitions, whose entries are then never read again.
func (p *Persister) settle(ctx context.Context, b *batch, forked map[int]bool) error {
	p.advance(b.events, forked)
	if p.beforeAck != nil {
		if err := p.beforeAck(); err != nil {
			return err
		}
	}
	if err := p.ack(ctx, b.entries, forked); err != nil {
		return err
	}
	if p.afterAck != nil {
		if err := p.afterAck(); err != nil {
			return err
		}
	}
	return p.trim(ctx)
}

func (p *Persister) append(ctx context.Context, events []engine.Event, dead []DeadLetter) (AppendResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if p.beforeCommit != nil {
		if err := p.beforeCommit(); err != nil {
			return AppendResult{}, err
		}
	}
	ctx, span := p.startAppend(ctx, events, dead)
	res, err := p.store.Append(ctx, events, dead, p.cfg.Mode)
	endAppend(span, res, err)
	return res, err
}

// fullEvery is the longest time between full passes.
func (p *Persister) fullEvery() time.Duration {
	return min(p.cfg.ClaimIdle/2, time.Second)
}

// failed makes the next pass that may read this consumer's own pending entries do so: entries
// read by a pass that failed stay pending.
func (p *Persister) failed() {
	p.mu.Lock()
	p.ownDue = true
	p.mu.Unlock()
}
