package reconcile

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
	"github.com/flashhold/flashhold/ledger"
)

func TestMain(m *testing.M) { testredis.Main(m) }

type fixture struct {
	rdb   redis.UniversalClient
	e     *engine.Engine
	store *ledger.Store
	p     *ledger.Persister
	r     *Reconciler
	// grace is the transfer grace of the fixture's runs.
	grace time.Duration
}

func setup(t *testing.T) *fixture {
	t.Helper()
	rdb := testredis.Standalone(t)
	e := testengine.New(t, rdb, func(c *engine.Config) { c.SoldOutMemory = 0 })
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	st := ledger.NewStore(pool)
	cfg := ledger.PersistConfig{Group: "ledger", Batch: 1000, MaxRows: 20000, Interval: time.Millisecond, Mode: ledger.ModeCopy,
		ClaimIdle: time.Millisecond, Lease: time.Second, Keep: 1 << 40, BackoffMax: 100 * time.Millisecond, Timeout: 10 * time.Second, LagAlarm: 1 << 40}
	f := &fixture{rdb: rdb, e: e, store: st, p: ledger.NewPersister(e, st, cfg), r: New(e, st), grace: time.Second}
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "a", Shards: 4}, 1000)
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: "b", Shards: 1}, 100)
	f.workload(t, "w", 40)
	return f
}

// workload reserves, commits and releases on both pools, then persists everything.
func (f *fixture) workload(t *testing.T, tag string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		for _, sku := range []string{"a", "b"} {
			h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: 1}},
				IdempotencyKey: fmt.Sprintf("%s-%s-%d", tag, sku, i), Actor: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			switch i % 3 {
			case 0:
				f.e.Commit(ctx, h.ID, "shop")
			case 1:
				f.e.Release(ctx, h.ID, "shop")
			}
		}
	}
	for range 100 {
		pass, err := f.p.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pass.Read == 0 {
			return
		}
	}
}

func (f *fixture) run(t *testing.T) *Report {
	t.Helper()
	rep, err := f.r.Run(context.Background(), Options{TransferGrace: f.grace})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// only asserts the report holds exactly one finding, and returns it.
func only(t *testing.T, rep *Report, kind string) Finding {
	t.Helper()
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != kind {
		t.Fatalf("want exactly one %s finding, got %+v", kind, rep.Findings)
	}
	return rep.Findings[0]
}

func TestCleanRun(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rep := f.run(t)
	if !rep.Clean() || rep.Partitions != 16 || rep.Pools != 2 || rep.Events == 0 {
		t.Fatalf("report %+v", rep)
	}
	var status string
	var events int64
	f.store.Pool().QueryRow(context.Background(), `SELECT status, events_replayed FROM reconcile_runs WHERE id = $1`, rep.RunID).Scan(&status, &events)
	if status != "clean" || events != rep.Events {
		t.Fatalf("recorded run: %s, %d events", status, events)
	}
}

// TestCleanUnderTraffic: runs made while shoppers buy and the persister copies (the cut is
// per partition and atomic; what the ledger lacks yet comes from the stream) find nothing,
// and afterwards the counters hold every sale once.
func TestCleanUnderTraffic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	const stock = 100000
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s3", SKU: "hot", Shards: 8}, stock)
	tr := f.traffic(t, "s3", "hot", 6, 400)
	var events int64
	runs := 0
	for shopping := true; shopping; runs++ {
		select {
		case <-tr.finished:
			shopping = false // one more run, then stop
		case <-time.After(50 * time.Millisecond):
		}
		rep := f.run(t)
		if !rep.Clean() {
			t.Fatalf("run %d under traffic: %+v", runs+1, rep.Findings)
		}
		events += rep.Events
	}
	sold := tr.stop()
	if sold == 0 || events == 0 || runs < 2 {
		t.Fatalf("%d sold, %d events replayed in %d runs", sold, events, runs)
	}
	f.workload(t, "persist", 0)
	if rep := f.run(t); !rep.Clean() {
		t.Fatalf("after traffic: %+v", rep.Findings)
	}
	var avail, held, committed int64
	for s := range 8 {
		snap, _ := f.e.Snapshot(ctx, f.e.PartitionOf("s3", "hot", s))
		sc := snap.Shards[engine.ShardKey{Location: "s3", SKU: "hot", Shard: s}]
		avail, held, committed = avail+sc.Available, held+sc.Held, committed+sc.Committed
	}
	if held != 0 || committed != sold || avail+committed != stock {
		t.Fatalf("available %d, held %d, committed %d; %d sold", avail, held, committed, sold)
	}
}

// TestCounterDrift: a counter changed behind the engine's back is found on its shard, with
// the amount.
func TestCounterDrift(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := f.e.PartitionOf("s1", "a", 2)
	f.rdb.HIncrBy(context.Background(), f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|a|2", 3)
	got := only(t, f.run(t), KindDrift)
	if got.Partition != p || got.Shard != 2 || got.SKU != "a" || got.Amount != 3 {
		t.Fatalf("finding %+v", got)
	}
}

// TestLedgerRowDeleted: a deleted ledger row is a gap at exactly its seq.
func TestLedgerRowDeleted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	f.store.Pool().Exec(context.Background(), `DELETE FROM inventory_events WHERE partition = $1 AND seq = 7`, p)
	got := only(t, f.run(t), KindGap)
	if got.Partition != p || got.SeqFrom != 7 || got.SeqTo != 7 || got.Amount != 1 {
		t.Fatalf("finding %+v", got)
	}
}

// TestLedgerRowEdited: a ledger row whose qty was edited breaks the chain at its seq.
func TestLedgerRowEdited(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	f.store.Pool().Exec(context.Background(), `UPDATE inventory_events SET qty = qty + 5 WHERE partition = $1 AND seq = 9`, p)
	got := only(t, f.run(t), KindChainBreak)
	if got.Partition != p || got.SeqFrom != 9 || got.Amount != 5 {
		t.Fatalf("finding %+v", got)
	}
}

// TestRedisLostWrites: Redis comes back from a restart without its last writes (the partition
// is restored from an earlier dump) while the ledger already holds them.
func TestRedisLostWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	restore := f.dumpPartition(t, p)
	before, _ := f.e.Snapshot(ctx, p)
	f.workload(t, "lost", 5) // persisted, then lost by Redis
	after, _ := f.e.Snapshot(ctx, p)
	restore()
	got := only(t, f.run(t), KindLedgerAhead)
	if got.Partition != p || got.SeqFrom != before.Seq+1 || got.SeqTo != after.Seq || got.Amount != after.Seq-before.Seq {
		t.Fatalf("finding %+v (Redis seq %d, ledger up to %d)", got, before.Seq, after.Seq)
	}
}

// shoppers is concurrent traffic on one pool (see traffic).
type shoppers struct {
	// gate is held for reading around each shopper's reserve and commit or release; a test
	// holds it to stop them for a moment.
	gate sync.RWMutex
	stop func() int64 // stops the shoppers and the persister; returns the units sold
	// sold counts the units sold so far.
	sold *atomic.Int64
	// finished is closed when every shopper has made its attempts.
	finished chan struct{}
}

// traffic starts workers that each make up to attempts attempts to buy one unit from pool
// loc/sku (three of four committed, one released; refused attempts count too), with the
// persister running alongside until stop.
func (f *fixture) traffic(t *testing.T, loc, sku string, workers, attempts int) *shoppers {
	t.Helper()
	ctx := context.Background()
	var sold atomic.Int64
	s := &shoppers{finished: make(chan struct{}), sold: &sold}
	done := make(chan struct{})
	var wg, shopping sync.WaitGroup
	for w := range workers {
		shopping.Add(1)
		wg.Go(func() {
			defer shopping.Done()
			for i := range attempts {
				select {
				case <-done:
					return
				default:
				}
				s.gate.RLock()
				h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: loc, SKU: sku, Qty: 1}},
					IdempotencyKey: fmt.Sprintf("t%d-%d", w, i), Actor: "shop"})
				if err == nil && i%4 == 3 {
					f.e.Release(ctx, h.ID, "shop")
				} else if err == nil && f.e.Commit(ctx, h.ID, "shop") == nil {
					sold.Add(1)
				}
				s.gate.RUnlock()
				if err != nil {
					time.Sleep(time.Millisecond) // fenced, or sold out
				}
			}
		})
	}
	go func() { shopping.Wait(); close(s.finished) }()
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			f.p.RunOnce(ctx)
			time.Sleep(2 * time.Millisecond)
		}
	})
	var once sync.Once
	s.stop = func() int64 {
		once.Do(func() { close(done); wg.Wait() })
		return sold.Load()
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// sells waits until the shoppers have sold n more units.
func (s *shoppers) sells(t *testing.T, n int64, when string) {
	t.Helper()
	from := s.sold.Load()
	testwait.Until(t, 10*time.Second, fmt.Sprintf("the shoppers sell %d units %s", n, when), func() bool { return s.sold.Load() >= from+n })
}

// dumpPartition saves partition p's keys; calling the returned function puts them back as
// they were, as a Redis restarted from that moment's dump would have them.
func (f *fixture) dumpPartition(t *testing.T, p int) func() {
	t.Helper()
	ctx := context.Background()
	keys, err := f.rdb.Keys(ctx, f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys of partition %d: %v", p, err)
	}
	// In one transaction, like the point-in-time copy a restarted Redis loads.
	cmds, err := f.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, k := range keys {
			pipe.Dump(ctx, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := f.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range keys {
				pipe.RestoreReplace(ctx, k, 0, cmds[i].(*redis.StringCmd).Val())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReportFiles: a run with findings writes the three report files, and the page states
// the summary numbers.
func TestReportFiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	f.rdb.HIncrBy(context.Background(), f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|b|0", 2)
	rep := f.run(t)
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(dir + "/report.html")
	csvRaw, _ := os.ReadFile(dir + "/findings.csv")
	jsonRaw, _ := os.ReadFile(dir + "/report.json")
	for _, want := range []string{`id="pools">2<`, `id="partitions">16<`, fmt.Sprintf(`id="events">%d<`, rep.Events),
		`id="findings">1<`, "1 discrepancy found", "available is"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if !strings.Contains(string(csvRaw), ",drift,") || !strings.Contains(string(jsonRaw), `"kind": "drift"`) {
		t.Fatalf("csv %s\njson %.200s", csvRaw, jsonRaw)
	}
}

// TestCheckpointReplaysOnlyNew: a clean run leaves a checkpoint per partition; the next run
// replays only the events after them, still finds a row edited after its checkpoint, and a
// full run also finds one edited before it.
func TestCheckpointReplaysOnlyNew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	first := f.run(t)
	var cps int
	f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM checkpoints WHERE state IS NOT NULL`).Scan(&cps)
	if !first.Clean() || cps == 0 || first.FromCheckpoint != 0 {
		t.Fatalf("first run: %+v, %d checkpoints", first, cps)
	}
	f.workload(t, "x", 10)
	var total int64
	f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM inventory_events`).Scan(&total)
	second := f.run(t)
	if !second.Clean() || second.FromCheckpoint != cps || second.Events != total-first.Events {
		t.Fatalf("second run replayed %d events from %d checkpoints; want %d from %d: %+v", second.Events, second.FromCheckpoint, total-first.Events, cps, second.Findings)
	}
	// An edit after the last checkpoint is found by the incremental run.
	f.workload(t, "y", 3)
	if _, err := f.store.Pool().Exec(ctx, `UPDATE inventory_events SET qty = qty + 5
		WHERE (partition, seq) = (SELECT partition, max(seq) FROM inventory_events GROUP BY partition ORDER BY partition LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	only(t, f.run(t), KindChainBreak)
	// An edit before a checkpoint is beyond an incremental run; a full run finds it.
	if _, err := f.store.Pool().Exec(ctx, `UPDATE inventory_events SET qty = qty + 5 WHERE seq = 1 AND partition =
		(SELECT partition FROM checkpoints ORDER BY partition DESC LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	full, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if full.ByKind[KindChainBreak] != 2 || full.FromCheckpoint != 0 {
		t.Fatalf("full run: %+v", full.Findings)
	}
}

// TestCheckpointOfAnotherShape: a checkpoint whose state was stored in another shape (an
// earlier version kept shards under "location|sku|shard" keys) is not read as an empty state:
// the run replays that partition from its first event, and finds it clean.
func TestCheckpointOfAnotherShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	if first := f.run(t); !first.Clean() {
		t.Fatalf("first run: %+v", first.Findings)
	}
	tag, err := f.store.Pool().Exec(ctx, `UPDATE checkpoints SET state = '{"shards": {"s1|a|0": {"a": 1, "h": 0, "c": 0}}, "open": {}}'
		WHERE state IS NOT NULL`)
	if err != nil || tag.RowsAffected() == 0 {
		t.Fatalf("rewrite checkpoints: %v, %v", tag, err)
	}
	again := f.run(t)
	if !again.Clean() || again.FromCheckpoint != 0 {
		t.Fatalf("with checkpoints of another shape: %d from checkpoints, %+v", again.FromCheckpoint, again.Findings)
	}
}

// TestSinceLeavesOutOlderFindings: --since hides a chain break in an event older than it.
func TestSinceLeavesOutOlderFindings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	if _, err := f.store.Pool().Exec(ctx, `UPDATE inventory_events SET qty = qty + 1 WHERE partition =
		(SELECT min(partition) FROM inventory_events) AND seq = 2`); err != nil {
		t.Fatal(err)
	}
	old, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Since: time.Now().Add(time.Hour)})
	if err != nil || !old.Clean() {
		t.Fatalf("since an hour ahead: %+v, %v", old, err)
	}
	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	only(t, rep, KindChainBreak)
}

// TestScheduler: a scheduled run records its result as metrics and writes its report; a
// second instance does not run while the first holds the lease.
func TestScheduler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	dir := t.TempDir()
	s := NewScheduler(f.r, ScheduleConfig{Every: time.Hour, Dir: dir, TransferGrace: time.Second}, zerolog.Nop())
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	rep, err := s.RunOnce(ctx)
	if err != nil || rep == nil || !rep.Clean() {
		t.Fatalf("scheduled run: %+v, %v", rep, err)
	}
	if got := testutil.ToFloat64(s.clean); got != 1 {
		t.Fatalf("clean metric %v", got)
	}
	if got := testutil.ToFloat64(s.events); got != float64(rep.Events) || got == 0 {
		t.Fatalf("events metric %v, report %d", got, rep.Events)
	}
	if _, err := os.Stat(dir + "/report.html"); err != nil {
		t.Fatal(err)
	}
	// A finding shows in the metrics of the next run.
	p := f.e.PartitionOf("s1", "b", 0)
	f.rdb.HIncrBy(ctx, f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|b|0", 2)
	if _, err := s.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(s.clean) != 0 || testutil.ToFloat64(s.findings.WithLabelValues(KindDrift)) != 1 {
		t.Fatal("drift not in the metrics")
	}
	// Another instance waits while the lease is held.
	other := NewScheduler(f.r, ScheduleConfig{Every: time.Hour}, zerolog.Nop())
	other.owner = "other"
	if ok, _ := f.e.Lease(ctx, leaseName, s.owner, time.Minute); !ok {
		t.Fatal("lease")
	}
	if rep, err := other.RunOnce(ctx); rep != nil || err != nil {
		t.Fatalf("second instance ran: %v, %v", rep, err)
	}
}

// TestSchedulerHoldsItsLease: a scheduled run keeps its lease while it goes on, however long
// (another instance does not start a run beside it), and the lease is short, so that the
// instance of a run cut off by its death holds the next runs off for seconds, not minutes.
func TestSchedulerHoldsItsLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	cfg := ScheduleConfig{Every: time.Hour, TransferGrace: time.Second}
	a, b := NewScheduler(f.r, cfg, zerolog.Nop()), NewScheduler(f.r, cfg, zerolog.Nop())
	a.leaseTTL, b.leaseTTL = 300*time.Millisecond, 300*time.Millisecond
	a.owner, b.owner = "a", "b"
	started, release := make(chan struct{}), make(chan struct{})
	a.during = func() { close(started); <-release }
	done := make(chan error, 1)
	go func() { _, err := a.RunOnce(ctx); done <- err }()
	<-started
	time.Sleep(3 * a.leaseTTL) // several lease lifetimes into a's run
	if rep, err := b.RunOnce(ctx); err != nil || rep != nil {
		t.Fatalf("b ran beside a's run: %v, %v", rep, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep, err := b.RunOnce(ctx); err != nil || rep == nil {
		t.Fatalf("b after a's run: %v, %v", rep, err)
	}
}
