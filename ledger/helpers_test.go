package ledger

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func newEngine(t testing.TB, rdb redis.UniversalClient) *engine.Engine {
	return testengine.New(t, rdb, func(c *engine.Config) { c.SoldOutMemory = 0 })
}

// newStore makes a fresh schema with every migration applied.
func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	pool, schema := testpg.Schema(t)
	if _, err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return NewStore(pool), schema
}

// ledgerPool opens a pool of conns connections to a fresh, migrated schema, configured as
// flashhold opens the ledger (PoolConfig).
func ledgerPool(t testing.TB, conns int32) *pgxpool.Pool {
	t.Helper()
	_, schema := testpg.Schema(t)
	cfg, err := PoolConfig(testpg.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func persistConfig() PersistConfig {
	return PersistConfig{Group: "ledger", Batch: 500, MaxRows: 20000, Interval: 5 * time.Millisecond, Mode: ModeCopy,
		ClaimIdle: 0, Lease: 5 * time.Second, Keep: 1 << 40, BackoffMax: 200 * time.Millisecond, Timeout: 10 * time.Second,
		LagAlarm: 1000, SyncPoolsEvery: 0}
}

func makePool(t testing.TB, e *engine.Engine, sku string, shards int, stock int64) {
	t.Helper()
	testengine.Pool(t, e, engine.PoolConfig{Location: "s1", SKU: sku, Shards: shards}, stock)
}

// workload reserves from goroutines, committing or releasing half of what it gets.
func workload(t testing.TB, e *engine.Engine, sku string, goroutines, each int, tag string) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h, err := e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: 1}},
					IdempotencyKey: fmt.Sprintf("%s-%d-%d", tag, g, i), Actor: "shop"})
				if err != nil {
					continue
				}
				if i%2 == 0 {
					e.Commit(context.Background(), h.ID, "shop")
				} else if i%3 == 0 {
					e.Release(context.Background(), h.ID, "shop")
				}
			}
		}()
	}
	wg.Wait()
}

// drain runs passes until one reads nothing.
func drain(t testing.TB, p *Persister) PersistPass {
	t.Helper()
	var total PersistPass
	for range 1000 {
		pass, err := p.RunOnce(context.Background())
		if err != nil {
			t.Fatalf("persist: %v", err)
		}
		total.Read += pass.Read
		total.Inserted += pass.Inserted
		total.Duplicates += pass.Duplicates
		total.Forks = append(total.Forks, pass.Forks...)
		if pass.Read == 0 {
			return total
		}
	}
	t.Fatal("persister did not drain")
	return total
}

// drainCaughtUp runs passes of p until it has read entries and the ledger holds every event
// Redis has written (p may first have to wait for leases another persister left behind to
// lapse).
func drainCaughtUp(t testing.TB, p *Persister, e *engine.Engine, s *Store, rdb redis.UniversalClient) PersistPass {
	t.Helper()
	var total PersistPass
	// Caught up and nothing left pending in the group: a persister that died after its commit
	// leaves the ledger full while its entries still wait, on partitions whose leases lapse
	// one by one, to be read (as duplicates) and acknowledged.
	testwait.Until(t, 10*time.Second, "the persister catches up", func() bool {
		pass := drain(t, p)
		total.Read += pass.Read
		total.Inserted += pass.Inserted
		total.Duplicates += pass.Duplicates
		total.Forks = append(total.Forks, pass.Forks...)
		return total.Read > 0 && caughtUp(e, s) && pending(rdb, e) == 0
	})
	return total
}

// pending counts the entries delivered to the ledger group and not acknowledged.
func pending(rdb redis.UniversalClient, e *engine.Engine) int64 {
	var n int64
	for part := range e.Partitions() {
		if pend, err := rdb.XPending(context.Background(), e.StreamKey(part), "ledger").Result(); err == nil {
			n += pend.Count
		}
	}
	return n
}

// caughtUp says whether the ledger holds as many events as Redis has written.
func caughtUp(e *engine.Engine, s *Store) bool {
	seqs, _, _ := e.Heads(context.Background())
	var want, got int64
	for _, q := range seqs {
		want += q
	}
	s.pool.QueryRow(context.Background(), `SELECT count(*) FROM inventory_events`).Scan(&got)
	return got == want
}

// checkLedger asserts the ledger holds, per partition, exactly the events 1..seq, gap-free,
// hashes chained, ending at the partition's head in Redis.
func checkLedger(t testing.TB, e *engine.Engine, s *Store) int64 {
	t.Helper()
	ctx := context.Background()
	var total int64
	for p := range e.Partitions() {
		snap, err := e.Snapshot(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var evs []engine.Event
		for after := int64(0); ; {
			page, err := s.Events(ctx, "", p, after, 10000)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range page {
				if ev.Partition != p {
					break
				}
				evs = append(evs, ev)
				after = ev.Seq
				n++
			}
			if n < len(page) || len(page) == 0 {
				break
			}
		}
		if int64(len(evs)) != snap.Seq {
			t.Fatalf("partition %d: ledger has %d events, Redis seq is %d", p, len(evs), snap.Seq)
		}
		if err := engine.VerifyChain(evs, 0, engine.GenesisHash, map[engine.ShardKey]int64{}); err != nil {
			t.Fatalf("ledger chain: %v", err)
		}
		if len(evs) > 0 && evs[len(evs)-1].Hash != snap.Head {
			t.Fatalf("partition %d: ledger ends at %s, Redis head is %s", p, evs[len(evs)-1].Hash, snap.Head)
		}
		total += int64(len(evs))
	}
	var rows int64
	s.pool.QueryRow(ctx, `SELECT count(*) FROM inventory_events`).Scan(&rows)
	if rows != total {
		t.Fatalf("%d rows, %d events", rows, total)
	}
	return total
}

// proxy forwards TCP to a target until it is cut; while cut it refuses connections.
type proxy struct {
	target string
	ln     net.Listener
	addr   string
	mu     sync.Mutex
	conns  []net.Conn
	up     bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{target: target, ln: ln, addr: ln.Addr().String(), up: true}
	go px.serve()
	t.Cleanup(func() { px.ln.Close(); px.cut() })
	return px
}

func (px *proxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		px.mu.Lock()
		up := px.up
		px.mu.Unlock()
		if !up {
			c.Close() // refused
			continue
		}
		s, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, s)
		px.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

// cut drops every connection and refuses new ones until restore.
func (px *proxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.up = false
	for _, c := range px.conns {
		c.Close()
	}
	px.conns = nil
}

func (px *proxy) restore() {
	px.mu.Lock()
	px.up = true
	px.mu.Unlock()
}

// poolVia opens a pool to the test schema through addr.
func poolVia(t testing.TB, addr, schema string) *pgxpool.Pool {
	return testpg.Pool(t, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", addr), schema)
}
