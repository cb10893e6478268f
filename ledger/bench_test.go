package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testredis"
)

// chainedEvents makes n valid events over 16 partitions, continuing from next (seq per partition).
func chainedEvents(n int, next []int64, heads []string) []engine.Event {
	out := make([]engine.Event, 0, n)
	for i := range n {
		p := i % len(next)
		next[p]++
		ev := engine.Event{Partition: p, Seq: next[p], Type: engine.EventReserved, Location: "s1", SKU: "bench",
			Shard: 0, Delta: -1, After: 1000, HeldDelta: 1, Hold: fmt.Sprintf("%020x.0.0", i), Qty: 1,
			Customer: "c", Idem: "tok", Actor: "bench", TS: 1790000000000 + int64(i), PrevHash: heads[p]}
		ev.Hash = ev.ComputeHash()
		heads[p] = ev.Hash
		out = append(out, ev)
	}
	// Each partition's events in seq order, as the persister hands them over.
	byPart := make([][]engine.Event, len(next))
	for _, ev := range out {
		byPart[ev.Partition] = append(byPart[ev.Partition], ev)
	}
	out = out[:0]
	for _, evs := range byPart {
		out = append(out, evs...)
	}
	return out
}

// BenchmarkAppend compares the two ways a batch of 10,000 events reaches Postgres: COPY into
// the staging table, and multi-row INSERTs into it (the fork checks and the final
// INSERT … ON CONFLICT are the same).
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{ModeCopy, ModeInsert} {
		b.Run(mode, func(b *testing.B) {
			s, _ := newStore(b)
			next := make([]int64, 16)
			heads := make([]string, 16)
			for i := range heads {
				heads[i] = engine.GenesisHash
			}
			const batch = 10000
			var rows int64
			for b.Loop() {
				b.StopTimer()
				evs := chainedEvents(batch, next, heads)
				b.StartTimer()
				res, err := s.Append(context.Background(), evs, nil, mode)
				if err != nil || res.Inserted != batch || len(res.Forks) != 0 {
					b.Fatalf("append: %+v %v", res, err)
				}
				rows += res.Inserted
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkCatchUp: one persister (its Run loop, which reads the next batch while writing the
// current one) drains a backlog of b.N events buffered in Redis, as after a Postgres outage:
// read, decode, verify, COPY, acknowledge.
func BenchmarkCatchUp(b *testing.B) {
	e := newEngine(b, testredis.Standalone(b))
	s, _ := newStore(b)
	makePool(b, e, "backlog", 8, int64(b.N)+1)
	testengine.ReserveMany(b, e, "s1", "backlog", b.N-9, 0) // 9 events came from creating and stocking the pool
	cfg := persistConfig()
	cfg.Batch, cfg.MaxRows = 5000, 40000
	// As configured by default: only entries pending this long are claimed from another
	// consumer (a shorter idle time would claim the batch being written back from itself).
	cfg.ClaimIdle = 15 * time.Second
	p := NewPersister(e, s, cfg)
	seqs, _, _ := e.Heads(context.Background())
	var want int64
	for _, q := range seqs {
		want += q
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	go func() { p.Run(ctx); close(done) }()
	var got int64
	for got < want { // the persister's own counter: polling the table would load Postgres
		time.Sleep(2 * time.Millisecond)
		got = int64(testutil.ToFloat64(p.persisted))
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "events/s")
}
