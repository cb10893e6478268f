package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

func TestMigrate(t *testing.T) {
	s, _ := newStore(t)
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	v, err := Migrate(context.Background(), s.pool) // again: nothing to do
	if err != nil || v != int64(len(files)) {
		t.Fatalf("version %d, want %d: %v", v, len(files), err)
	}
	for _, table := range []string{"inventory_events", "dead_letters", "integrity_alarms", "vendors", "locations", "pools",
		"reconcile_runs", "reconcile_findings", "checkpoints", "webhook_subscriptions", "webhook_deliveries"} {
		var n int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

// TestPersistExactlyOnce: while a concurrent workload runs, the persister copies the streams;
// afterwards the ledger holds every event exactly once, gap-free per partition, chained to
// the head in Redis. Against standalone Redis and a 3-master cluster.
func TestPersistExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		name      string
		client    func(testing.TB) redis.UniversalClient
		linger    time.Duration
		claimIdle time.Duration // 0: every pass is full
	}{{"standalone", testredis.Standalone, 0, 0}, {"cluster", clusterClient, 0, 0},
		{"lingering", testredis.Standalone, 5 * time.Millisecond, 0}, {"partial passes", testredis.Standalone, 0, 15 * time.Second}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, c.client(t))
			s, _ := newStore(t)
			makePool(t, e, "hot", 8, 100000)
			makePool(t, e, "one", 1, 1000)
			ctx, cancel := context.WithCancel(context.Background())
			cfg := persistConfig()
			cfg.Linger, cfg.ClaimIdle = c.linger, c.claimIdle
			p := NewPersister(e, s, cfg)
			done := make(chan struct{})
			go func() { p.Run(ctx); close(done) }()
			var wg sync.WaitGroup
			for _, sku := range []string{"hot", "one"} {
				wg.Add(1)
				go func() { defer wg.Done(); workload(t, e, sku, 100, 10, sku) }()
			}
			wg.Wait()
			cancel()
			<-done
			drain(t, p)
			n := checkLedger(t, e, s)
			if _, err := e.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d events persisted", n)
		})
	}
}

// TestPartialPasses: between full passes a pass reads only the partitions whose head moved,
// and a pass that failed leaves its entries pending for the full pass that follows.
func TestPartialPasses(t *testing.T) {
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	makePool(t, e, "a", 1, 1000)
	workload(t, e, "a", 4, 5, "w")
	cfg := persistConfig()
	cfg.ClaimIdle = time.Hour // full passes only when due
	p := NewPersister(e, s, cfg)
	ctx := context.Background()
	pass, err := p.RunOnce(ctx)
	if err != nil || pass.Polled != e.Partitions() || pass.Read == 0 {
		t.Fatalf("the first pass is full: %+v, %v", pass, err)
	}
	drain(t, p)
	if pass, err = p.RunOnce(ctx); err != nil || pass.Polled != 0 {
		t.Fatalf("nothing moved, yet the pass read %d partitions (%v)", pass.Polled, err)
	}
	reserve := func(key string) {
		t.Helper()
		if _, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "a", Qty: 1}},
			IdempotencyKey: key, Actor: "shop"}); err != nil {
			t.Fatal(err)
		}
	}
	reserve("one")
	if pass, err = p.RunOnce(ctx); err != nil || pass.Polled != 1 || pass.Inserted != 1 {
		t.Fatalf("one partition moved by one event: %+v, %v", pass, err)
	}
	reserve("two")
	p.beforeCommit = func() error { return errors.New("postgres went away") }
	if _, err = p.RunOnce(ctx); err == nil {
		t.Fatal("the pass should have failed")
	}
	p.beforeCommit = nil
	if pass, err = p.RunOnce(ctx); err != nil || pass.Polled != e.Partitions() || pass.Inserted != 1 {
		t.Fatalf("after a failure the pass is full and persists what stayed pending: %+v, %v", pass, err)
	}
	drain(t, p)
	// Under steady load every pass is a prefetch (own false); a full pass still comes when due.
	p.lastFull = time.Time{}
	b, err := p.fetch(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if b.polled != e.Partitions() {
		t.Fatalf("a prefetch due for a full pass read %d partitions", b.polled)
	}
	checkLedger(t, e, s)
}

func clusterClient(t testing.TB) redis.UniversalClient { return testredis.Cluster(t) }

// TestPersisterCrash: a persister that dies before its commit, or after it but before its
// acknowledgement, is replaced by another; the ledger still holds every event exactly once.
func TestPersisterCrash(t *testing.T) {
	for _, point := range []string{"before commit", "after commit, before ack", "context cancelled"} {
		t.Run(point, func(t *testing.T) {
			rdb := testredis.Standalone(t)
			e := newEngine(t, rdb)
			s, _ := newStore(t)
			makePool(t, e, "a", 4, 10000)
			workload(t, e, "a", 20, 10, "w")
			crash := errors.New("killed")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := persistConfig()
			cfg.Lease = 50 * time.Millisecond
			first := NewPersister(e, s, cfg, WithConsumer("first"))
			switch point {
			case "before commit":
				first.beforeCommit = func() error { return crash }
			case "after commit, before ack":
				first.beforeAck = func() error { return crash }
			case "context cancelled":
				first.beforeCommit = func() error { cancel(); return nil }
			}
			if _, err := first.RunOnce(ctx); err == nil {
				t.Fatal("the first persister should have died")
			}
			second := NewPersister(e, s, cfg, WithConsumer("second"))
			pass := drainCaughtUp(t, second, e, s, rdb) // once the dead persister's leases lapse
			n := checkLedger(t, e, s)
			if point == "after commit, before ack" && pass.Duplicates == 0 {
				t.Fatal("the replacement should have met the rows already committed")
			}
			if pass.Inserted+pass.Duplicates != n {
				t.Fatalf("inserted %d + duplicates %d, ledger %d", pass.Inserted, pass.Duplicates, n)
			}
			// Nothing is left pending in the group.
			for part := range e.Partitions() {
				if pend, err := rdb.XPending(context.Background(), e.StreamKey(part), "ledger").Result(); err == nil && pend.Count != 0 {
					t.Fatalf("partition %d: %d entries still pending", part, pend.Count)
				}
			}
		})
	}
}

// TestPersistOnlyReplicated: with FLASHHOLD_REDIS_WAIT_REPLICAS, an event the primary wrote
// but no replica has (its writer was answered 503) does not reach the ledger until a replica
// has it: a failover to the replica would lose it, and a ledger ahead of Redis fences the
// partition until a repair. Once the replica is back, it is persisted.
func TestPersistOnlyReplicated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := testredis.StartServer(t)
	replica := testredis.StartReplica(t, primary)
	e := testengine.New(t, primary.Client(t), func(c *engine.Config) {
		c.SoldOutMemory, c.RedisWaitReplicas, c.RedisWaitTimeout, c.RedisTimeout = 0, 1, 100*time.Millisecond, time.Second
	})
	s, _ := newStore(t)
	makePool(t, e, "a", 1, 100)
	p := NewPersister(e, s, persistConfig())
	drain(t, p)
	before := checkLedger(t, e, s)
	replica.Kill()
	_, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "a", Qty: 1}}, IdempotencyKey: "k", Actor: "shop"})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("reserve with the replica down: %v, want unavailable", err)
	}
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ledgerRows(t, s); n != before {
		t.Fatalf("the ledger holds %d events, %d before: it took an event no replica has", n, before)
	}
	replica.Start()
	testwait.Until(t, 10*time.Second, "the event is persisted once the replica has it", func() bool {
		p.RunOnce(ctx)
		return ledgerRows(t, s) == before+1
	})
}

// TestPersistHoldsBackOneNode: on a cluster whose one master lost its replica, only that
// master's partitions wait; the others' events reach the ledger.
func TestPersistHoldsBackOneNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testredis.StartReplicatedCluster(t, 3, 5*time.Second)
	e := testengine.New(t, cl.Client(t), func(c *engine.Config) {
		c.SoldOutMemory, c.RedisWaitReplicas, c.RedisWaitTimeout, c.RedisTimeout = 0, 1, 100*time.Millisecond, time.Second
	})
	s, _ := newStore(t)
	master := func(sku string) *testredis.Server {
		p := e.PartitionOf("s1", sku, 0)
		m, err := cl.MasterOf(ctx, e.StreamKey(p))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	makePool(t, e, "victim", 1, 100)
	other := ""
	for i := 0; other == ""; i++ {
		sku := fmt.Sprint("other-", i)
		if master(sku) != master("victim") {
			other = sku
		}
	}
	makePool(t, e, other, 1, 100)
	p := NewPersister(e, s, persistConfig())
	drain(t, p)
	replica, err := cl.ReplicaOf(ctx, master("victim"))
	if err != nil {
		t.Fatal(err)
	}
	replica.Kill()
	before := ledgerRows(t, s)
	for i, sku := range []string{"victim", other} {
		// The answer does not matter here (the key's record may sit on the victim too): each
		// reservation writes its events on its pool's partition.
		e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: 1}}, IdempotencyKey: fmt.Sprint("k", i), Actor: "shop"})
	}
	for range 3 {
		if _, err := p.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var victimRows, otherRows int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE sku = 'victim'), count(*) FILTER (WHERE sku = $1)
		FROM inventory_events WHERE type <> 'RESTOCKED' AND type <> 'ADJUSTED'`, other).Scan(&victimRows, &otherRows); err != nil {
		t.Fatal(err)
	}
	if victimRows != 0 || otherRows == 0 {
		t.Fatalf("with the victim's replica down: %d of its events in the ledger, %d of the other master's (ledger %d, before %d)",
			victimRows, otherRows, ledgerRows(t, s), before)
	}
}

// TestLagAfterLostAck: a pass whose acknowledgements reached Redis but whose answer did not
// (a cluster node failing mid-pipeline acknowledges some partitions and not others) fails;
// the events are in the ledger all the same, and the lag says so. Before, the watermarks
// stayed where they were: the acknowledged entries are never read again, so the lag stayed
// up (and the streams untrimmed) until a restart.
func TestLagAfterLostAck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	makePool(t, e, "a", 4, 10000)
	p := NewPersister(e, s, persistConfig())
	workload(t, e, "a", 4, 5, "w1")
	drain(t, p) // the watermarks are known from here on
	workload(t, e, "a", 4, 5, "w2")
	p.afterAck = func() error { p.afterAck = nil; return errors.New("connection reset") }
	if _, err := p.RunOnce(ctx); err == nil {
		t.Fatal("the pass should have failed")
	}
	drain(t, p)
	if err := p.UpdateLag(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := p.Lag(); n != 0 {
		t.Fatalf("lag %d events with every event in the ledger (%d)", n, checkLedger(t, e, s))
	}
}

// TestPostgresOutage: Postgres refuses connections in the middle of the load and comes back;
// the streams buffer meanwhile, are never trimmed past what Postgres holds, and the persister
// catches up with nothing lost and nothing doubled.
func TestPostgresOutage(t *testing.T) {
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, schema := newStore(t)
	px := newProxy(t, testpg.Addr(t))
	via := NewStore(poolVia(t, px.addr, schema))
	makePool(t, e, "b", 8, 100000)
	cfg := persistConfig()
	cfg.Keep = 50 // trim eagerly, to catch any trim past the ledger
	p := NewPersister(e, via, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	stop := make(chan struct{})
	var violations []string
	var mu sync.Mutex
	// The first entry left in each stream must not be past the ledger's watermark+1. The
	// stream is read first: the watermark only grows, so one read after it is at least the
	// watermark any trim before it used.
	watch := func() {
		for part := range e.Partitions() {
			msgs, err := rdb.XRangeN(context.Background(), e.StreamKey(part), "-", "+", 1).Result()
			if err != nil || len(msgs) == 0 {
				continue
			}
			w, err := s.Watermark(context.Background(), part)
			if err != nil {
				continue
			}
			first, _ := strconv.ParseInt(msgs[0].ID[:len(msgs[0].ID)-2], 10, 64)
			if first > w+1 {
				mu.Lock()
				violations = append(violations, fmt.Sprintf("partition %d trimmed to %d, ledger holds up to %d", part, first, w))
				mu.Unlock()
			}
		}
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				watch()
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	workload(t, e, "b", 50, 10, "before")
	waitCaughtUp(t, e, s)
	px.cut()
	workload(t, e, "b", 50, 20, "during")
	// The persister reads what the traffic wrote and fails to write it.
	testwait.Until(t, 10*time.Second, "the persister has read the entries written during the outage", func() bool {
		var pending int64
		for part := range e.Partitions() {
			if pend, err := rdb.XPending(context.Background(), e.StreamKey(part), "ledger").Result(); err == nil {
				pending += pend.Count
			}
		}
		return pending > 0
	})
	seqs, _, _ := e.Heads(context.Background())
	var inRedis, inLedger int64
	for _, q := range seqs {
		inRedis += q
	}
	s.pool.QueryRow(context.Background(), `SELECT count(*) FROM inventory_events`).Scan(&inLedger)
	if inLedger >= inRedis {
		t.Fatalf("during the outage the ledger kept up (%d of %d): Postgres was not cut off", inLedger, inRedis)
	}
	t.Logf("outage: %d of %d events buffered in Redis", inRedis-inLedger, inRedis)
	px.restore()
	workload(t, e, "b", 50, 10, "after")
	waitCaughtUp(t, e, s)
	cancel()
	<-done
	close(stop)
	drain(t, p)
	watch()
	if len(violations) > 0 {
		t.Fatalf("a stream was trimmed past the ledger: %v", violations[0])
	}
	t.Logf("%d events persisted across the outage", checkLedger(t, e, s))
}

// waitCaughtUp waits until the ledger holds as many events as Redis has written.
func waitCaughtUp(t testing.TB, e *engine.Engine, s *Store) {
	t.Helper()
	testwait.Until(t, 10*time.Second, "the persister catches up", func() bool { return caughtUp(e, s) })
}

// TestTwoPersisters: two persisters with leases so short they keep contending share the
// streams; every event is in the ledger exactly once.
func TestTwoPersisters(t *testing.T) {
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	makePool(t, e, "c", 8, 100000)
	cfg := persistConfig()
	cfg.Lease = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ps := []*Persister{NewPersister(e, s, cfg, WithConsumer("one")), NewPersister(e, s, cfg, WithConsumer("two"))}
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.Run(ctx) }()
	}
	workload(t, e, "c", 100, 10, "x")
	waitCaughtUp(t, e, s)
	cancel()
	wg.Wait()
	for _, p := range ps {
		drain(t, p)
	}
	checkLedger(t, e, s)
}

// TestLag: a persister measures the lag of every partition, also of those it never read
// (another persister's, or before its first pass), from what the ledger holds of them.
func TestLag(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	makePool(t, e, "lag", 8, 100000)
	workload(t, e, "lag", 20, 5, "lag")
	seqs, _, err := e.Heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	for _, n := range seqs {
		events += n
	}
	worker, watcher := NewPersister(e, s, persistConfig(), WithConsumer("worker")), NewPersister(e, s, persistConfig(), WithConsumer("watcher"))
	if err := watcher.UpdateLag(ctx); err != nil {
		t.Fatal(err)
	}
	if n, age := watcher.Lag(); n != events || age <= 0 {
		t.Fatalf("before any pass: lag %d events, %s; want %d events, a positive age", n, age, events)
	}
	drain(t, worker)
	for _, p := range []*Persister{worker, watcher} {
		if err := p.UpdateLag(ctx); err != nil {
			t.Fatal(err)
		}
		if n, age := p.Lag(); n != 0 || age != 0 {
			t.Fatalf("after the worker persisted everything: lag %d events, %s", n, age)
		}
	}
}

// TestWatermark: the gap-free watermark is found from a reconciliation checkpoint whose row is
// still the one verified (the rows below it are not searched again), else from seq 1.
func TestWatermark(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	p := NewPersister(e, s, persistConfig())
	makePool(t, e, "wm", 1, 1000)
	part := e.PartitionOf("s1", "wm", 0)
	workload(t, e, "wm", 4, 5, "wm")
	drain(t, p)
	seqs, _, err := e.Heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head := seqs[part]
	if w, err := s.Watermark(ctx, part); err != nil || w != head {
		t.Fatalf("watermark %d, %v; want the head, %d", w, err, head)
	}
	const at = 5
	var hash string
	if err := s.pool.QueryRow(ctx, `SELECT hash FROM inventory_events WHERE partition = $1 AND seq = $2`, part, at).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO checkpoints (partition, seq, hash) VALUES ($1, $2, $3)`, part, at, hash)
	exec(`DELETE FROM inventory_events WHERE partition = $1 AND seq IN (2, $2)`, part, at+3)
	for _, c := range []struct {
		name, hash string
		want       int64
	}{{"verified checkpoint", hash, at + 2}, {"checkpoint row changed since", "other", 1}} {
		exec(`UPDATE checkpoints SET hash = $2 WHERE partition = $1`, part, c.hash)
		if w, err := s.Watermark(ctx, part); err != nil || w != c.want {
			t.Fatalf("%s: watermark %d, %v; want %d", c.name, w, err, c.want)
		}
	}
}

// TestForkDetected: Redis loses acknowledged writes of one partition (its keys are restored
// from an earlier dump) and new writes reuse the lost sequence numbers. The next batch finds
// the fork, the partition is fenced, an alarm is recorded, and the ledger is untouched.
// forkedPartition persists traffic on a one-shard pool, rolls its partition back to an
// earlier dump after more persisted traffic, and writes new events on it: a fork the
// persister has not read yet. It returns the partition and the ledger's hashes for it.
func forkedPartition(t *testing.T, rdb redis.UniversalClient, e *engine.Engine, s *Store, p *Persister) (int, []string) {
	ctx := context.Background()
	makePool(t, e, "d", 1, 1000)
	part := e.PartitionOf("s1", "d", 0)
	workload(t, e, "d", 5, 4, "early")
	drain(t, p)

	// Dump the partition: the state a replica had before the last writes reached it.
	keys, _ := rdb.Keys(ctx, e.Config().Prefix+":{p"+strconv.Itoa(part)+"}:*").Result()
	dumps := map[string]string{}
	for _, k := range keys {
		dumps[k], _ = rdb.Dump(ctx, k).Result()
	}
	workload(t, e, "d", 5, 4, "lost")
	drain(t, p)
	before := ledgerHashes(t, s, part)

	// Fail over: the partition rolls back, and new traffic writes different events.
	for k, d := range dumps {
		if err := rdb.RestoreReplace(ctx, k, 0, d).Err(); err != nil {
			t.Fatal(err)
		}
	}
	workload(t, e, "d", 3, 2, "after-failover")
	return part, before
}

func TestForkDetected(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, _ := newStore(t)
	p := NewPersister(e, s, persistConfig())
	part, before := forkedPartition(t, rdb, e, s, p)
	pass, err := p.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pass.Forks) != 1 || pass.Forks[0].Partition != part || pass.Forks[0].Kind != "conflict" {
		t.Fatalf("forks %+v", pass.Forks)
	}
	_, fences, _ := e.Heads(ctx)
	if fences[part] == "" {
		t.Fatal("the forked partition is not fenced")
	}
	_, err = e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "d", Qty: 1}}, IdempotencyKey: "x", Actor: "shop"})
	if !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("reserve on the fenced partition: %v", err)
	}
	if after := ledgerHashes(t, s, part); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("the ledger changed")
	}
	var alarms int
	s.pool.QueryRow(ctx, `SELECT count(*) FROM integrity_alarms WHERE partition = $1`, part).Scan(&alarms)
	if alarms != 1 || p.Check(ctx) == nil {
		t.Fatalf("alarms %d, readiness %v", alarms, p.Check(ctx))
	}
	// Later passes leave the fenced partition alone.
	if pass := drain(t, p); len(pass.Forks) != 0 {
		t.Fatalf("a fenced partition was read again: %+v", pass)
	}
}

// TestForkRepairedMeanwhile: a batch read from a forked partition that reconciliation
// rebuilds before the batch is written (the forked entries leave the stream) does not fence
// the repaired partition again.
func TestForkRepairedMeanwhile(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, _ := newStore(t)
	p := NewPersister(e, s, persistConfig())
	part, before := forkedPartition(t, rdb, e, s, p)
	b, err := p.fetch(ctx, true)
	if err != nil || len(b.events) == 0 {
		t.Fatalf("fetch: %v, %d events", err, len(b.events))
	}
	// What a rebuild does to the stream: the forked entries go.
	for _, ev := range b.events {
		if ev.Partition == part {
			rdb.XDel(ctx, e.StreamKey(part), strconv.FormatInt(ev.Seq, 10)+"-0")
		}
	}
	pass, err := p.write(ctx, b)
	if err != nil || len(pass.Forks) != 1 {
		t.Fatalf("write: %v, forks %+v", err, pass.Forks)
	}
	if _, fences, _ := e.Heads(ctx); fences[part] != "" || len(p.Forks()) != 0 || p.Check(ctx) != nil {
		t.Fatalf("fenced %q, forks %+v", fences[part], p.Forks())
	}
	if after := ledgerHashes(t, s, part); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("the ledger changed")
	}
}

func ledgerHashes(t testing.TB, s *Store, part int) []string {
	rows, err := s.pool.Query(context.Background(), `SELECT hash FROM inventory_events WHERE partition = $1 ORDER BY seq`, part)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		rows.Scan(&h)
		out = append(out, h)
	}
	return out
}

// TestDeadLetters: an entry that is not an event goes to dead_letters with its raw payload and
// does not stop the partition.
func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, _ := newStore(t)
	makePool(t, e, "f", 1, 10)
	part := e.PartitionOf("s1", "f", 0)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.StreamKey(part), ID: "1000-0", Values: []any{"e", "not|an|event", "h", "x"}})
	p := NewPersister(e, s, persistConfig())
	pass := drain(t, p)
	var n int
	var payload string
	s.pool.QueryRow(ctx, `SELECT count(*), max(payload::text) FROM dead_letters`).Scan(&n, &payload)
	if n != 1 || pass.Inserted != 1 || payload == "" {
		t.Fatalf("dead letters %d (%s), inserted %d", n, payload, pass.Inserted)
	}
}

// TestEventsFromLedger: the ledger serves events by vendor in (partition, seq) pages.
func TestEventsFromLedger(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, testredis.Standalone(t))
	s, _ := newStore(t)
	makePool(t, e, "g", 2, 10)
	if err := e.CreatePool(ctx, engine.PoolConfig{Location: "s2", SKU: "other", Vendor: "v2", Shards: 1}, "t"); err != nil {
		t.Fatal(err)
	}
	e.Adjust(ctx, engine.AdjustRequest{Location: "s2", SKU: "other", Kind: engine.Restock, Qty: 5, TransactionID: "t", Actor: "t"})
	cfg := persistConfig()
	cfg.SyncPoolsEvery = time.Nanosecond
	per := NewPersister(e, s, cfg)
	drain(t, per)
	var got []string
	p, seq := 0, int64(0)
	for range 10 {
		evs, err := s.Events(ctx, "v1", p, seq, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		got = append(got, evs[0].SKU)
		p, seq = evs[0].Partition, evs[0].Seq
	}
	if fmt.Sprint(got) != "[g g g]" { // g's restock on one shard, and its spreading out (one transfer)
		t.Fatalf("vendor v1 events %v", got)
	}
	// One hold's history, by the hold id's parts.
	h, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s2", SKU: "other", Qty: 2}}, IdempotencyKey: "h", Actor: "t"})
	if err != nil {
		t.Fatal(err)
	}
	e.Commit(ctx, h.ID, "t")
	drain(t, per)
	parts, err := e.HoldParts(h.ID)
	if err != nil {
		t.Fatal(err)
	}
	for vendor, want := range map[string]string{"v2": "[RESERVED COMMITTED]", "": "[RESERVED COMMITTED]", "v1": "[]"} {
		evs, err := s.HoldEvents(ctx, vendor, parts)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
		}
		if fmt.Sprint(types) != want {
			t.Fatalf("vendor %q: hold events %v", vendor, types)
		}
	}
}

// TestTrimSparesOtherGroups: the persister trims what the ledger holds, never what another
// consumer group (the alert detector's) has not acknowledged yet.
func TestTrimSparesOtherGroups(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, _ := newStore(t)
	makePool(t, e, "t", 1, 1000)
	part := e.PartitionOf("s1", "t", 0)
	if err := rdb.XGroupCreateMkStream(ctx, e.StreamKey(part), "alerts", "0").Err(); err != nil {
		t.Fatal(err)
	}
	workload(t, e, "t", 200, 1, "w")
	cfg := persistConfig()
	cfg.Keep = 10
	p := NewPersister(e, s, cfg)
	drain(t, p)
	workload(t, e, "t", 100, 1, "w1") // the persister trims after writing these
	drain(t, p)
	got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "alerts", Consumer: "c", Streams: []string{e.StreamKey(part), ">"}, Count: 100000}).Result()
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := e.Seq(ctx, part)
	if n := len(got[0].Messages); int64(n) != seq {
		t.Fatalf("the alerts group got %d of the partition's %d events: the persister trimmed what it had not read", n, seq)
	}
	// Once the group has acknowledged what it read, the persister trims below that: the
	// stream keeps Keep entries before it, and what the group has not read yet.
	var ids []string
	for _, m := range got[0].Messages {
		ids = append(ids, m.ID)
	}
	rdb.XAck(ctx, e.StreamKey(part), "alerts", ids...)
	workload(t, e, "t", 50, 1, "w2")
	drain(t, p)
	unread, _ := e.Seq(ctx, part)
	unread -= seq
	if n, _ := rdb.XLen(ctx, e.StreamKey(part)).Result(); n != cfg.Keep+unread {
		t.Fatalf("%d entries left; want %d kept below the group's acknowledgement and the %d it has not read", n, cfg.Keep, unread)
	}
}

// TestWatermarkPastClaimedEntries: a persister that persisted new entries while a dead
// consumer's entries (older ones) waited to be claimed knows, once it has claimed and
// persisted those too, that the ledger holds everything: its lag is nothing, and it trims.
func TestWatermarkPastClaimedEntries(t *testing.T) {
	ctx := context.Background()
	rdb := testredis.Standalone(t)
	e := newEngine(t, rdb)
	s, _ := newStore(t)
	makePool(t, e, "c", 1, 10000)
	part := e.PartitionOf("s1", "c", 0)
	cfg := persistConfig()
	cfg.Lease = 50 * time.Millisecond
	live := NewPersister(e, s, cfg, WithConsumer("live"))
	drain(t, live) // live knows where the ledger stands
	workload(t, e, "c", 10, 2, "old")
	dead := NewPersister(e, s, cfg, WithConsumer("dead"))
	dead.beforeCommit = func() error { return errors.New("killed") }
	// Once live's lease lapses, the dead one reads the entries, and dies before it commits.
	testwait.Until(t, 5*time.Second, "the dead persister reads", func() bool {
		pass, err := dead.RunOnce(ctx)
		if err == nil && pass.Inserted > 0 {
			t.Fatal("the dead persister wrote")
		}
		return err != nil
	})
	live.cfg.ClaimIdle = time.Hour // the dead one's entries wait: live persists the new ones first
	testwait.Until(t, 5*time.Second, "the dead one's lease lapses", func() bool {
		pass, err := live.RunOnce(ctx)
		return err == nil && pass.Polled > 0
	})
	workload(t, e, "c", 10, 2, "new")
	drain(t, live)
	live.cfg.ClaimIdle = time.Millisecond
	drain(t, live)
	workload(t, e, "c", 10, 2, "more")
	drain(t, live)
	if err := live.UpdateLag(ctx); err != nil {
		t.Fatal(err)
	}
	seq, _ := e.Seq(ctx, part)
	if n, _ := live.Lag(); n != 0 {
		t.Fatalf("lag %d with every one of the partition's %d events in the ledger", n, seq)
	}
	checkLedger(t, e, s)
}

// ledgerRows counts the events in the ledger.
func ledgerRows(t testing.TB, s *Store) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM inventory_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
