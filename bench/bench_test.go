package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// testEnv is a bench environment over the test's own key prefix and schema.
func testEnv(t testing.TB) Env {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	rdb := testredis.Standalone(t)
	pg, _ := testpg.Schema(t)
	cfg.Engine = testengine.Config(testredis.Prefix(t, rdb))
	cfg.Sweep.Interval = 20 * time.Millisecond
	return Env{Redis: rdb, Postgres: pg, Engine: cfg.Engine, API: cfg.API, Sweep: cfg.Sweep, Persist: cfg.Persist, Log: zerolog.Nop()}
}

// smallOptions is every scenario for a few seconds with small stock: a smoke run of the
// invariants and the report's shape, not of speed.
func smallOptions() Options {
	return Options{Duration: 1500 * time.Millisecond, BaselineDuration: 400 * time.Millisecond, OpenDuration: time.Second,
		Clients: 16, Stock: 400, Shards: 4, SKUs: 300, SKUStock: 5, CartSKUs: 40, StormHolds: 300,
		ImportRows: 3000, ImportPools: 300, ImportCheckoutRate: 100}
}

func TestEveryScenarioSmoke(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	r, err := Run(ctx, env, smallOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Scenarios {
		s := r.Scenarios[name]
		if s == nil {
			t.Fatalf("scenario %s missing from the report", name)
		}
		if s.Oversold != 0 || s.Undersold != 0 || len(s.Invariants.Violations) > 0 {
			t.Errorf("%s: oversold %d, undersold %d: %v", name, s.Oversold, s.Undersold, s.Invariants.Violations)
		}
		if s.Errors != 0 {
			t.Errorf("%s: %d errors", name, s.Errors)
		}
		if s.ThroughputRPS <= 0 || s.P99Ms <= 0 || s.Invariants.Stock <= 0 {
			t.Errorf("%s: empty figures: %+v", name, s)
		}
		if s.Invariants.Committed != s.Invariants.ClientCommitted || s.Invariants.Held != 0 {
			t.Errorf("%s: invariants %+v", name, s.Invariants)
		}
	}
	if sp := r.Scenarios[Spike].Spike; sp == nil || !sp.ServerUp || sp.CapacityRPS <= 0 || len(sp.Phases) != 4 || sp.Phases[1].GoodputRPS <= 0 {
		t.Errorf("spike: %+v", sp)
	}
	fs := r.Scenarios[FlashSale]
	if fs.Phases[0].OK != smallOptions().Stock {
		t.Errorf("flash-sale granted %d of %d units", fs.Phases[0].OK, smallOptions().Stock)
	}
	if len(fs.Phases) != 2 || fs.Phases[1].Name != "sold out" || fs.Phases[1].Refused == 0 {
		t.Errorf("flash-sale phases: %+v", fs.Phases)
	}
	if fs.OpenLoop == nil || fs.OpenLoop.Requests == 0 || fs.OpenLoop.Hello == nil || fs.OpenLoop.Hello.Requests == 0 || fs.OpenLoop.InProcess == nil || fs.OpenLoop.InProcess.Requests == 0 || fs.PersisterLag == nil {
		t.Errorf("flash-sale open loop %+v, persister lag %+v", fs.OpenLoop, fs.PersisterLag)
	}
	for _, b := range []string{HTTPHello, PostgresRowLock, RedisScript, EngineInProcess} {
		if r.Baselines[b].ThroughputRPS <= 0 || r.Baselines[b].Errors != 0 {
			t.Errorf("baseline %s: %+v", b, r.Baselines[b])
		}
	}
	// The row-lock baseline ran through the fastest pool probed (1, 2, 4, 8 and 16 for 16
	// clients).
	if c := r.RowLockPool; c == nil || len(c.Probed) != 5 || c.Probed[0].Conns != 1 || c.Probed[4].Conns != 16 {
		t.Errorf("row-lock pool: %+v", c)
	} else {
		for _, p := range c.Probed {
			if p.ThroughputRPS <= 0 || p.ThroughputRPS > c.best() {
				t.Errorf("row-lock pool of %d conns: %.0f/s, chosen %d at %.0f/s", p.Conns, p.ThroughputRPS, c.Conns, c.best())
			}
		}
	}
	// Every closed loop is costed in CPU; the engine's runs spend Redis time too.
	costed := map[string]*Stats{}
	for i, p := range fs.Phases {
		costed[p.Name] = &fs.Phases[i].Stats
	}
	if fs.OpenLoop != nil {
		costed["open loop"] = &fs.OpenLoop.Stats
	}
	for _, b := range []string{HTTPHello, PostgresRowLock, RedisScript, EngineInProcess} {
		st := r.Baselines[b]
		costed[b] = &st
	}
	for name, st := range costed {
		c := st.CPU
		if c == nil || c.ProcessUs <= 0 || c.RedisUs < 0 || (runtime.GOOS == "linux" && (c.MachineUs <= 0 || c.Busy <= 0 || c.Busy > 1)) {
			t.Errorf("%s: CPU %+v", name, c)
		}
	}
	for _, b := range []string{RedisScript, EngineInProcess} {
		if c := r.Baselines[b].CPU; c != nil && c.RedisUs <= 0 {
			t.Errorf("%s: no Redis CPU: %+v", b, c)
		}
	}
	// The coalescer's grouping is told where it ran, and only there.
	if g := r.Baselines[EngineInProcess].Coalescing; g == nil || g.ReservesPerRoundTrip < 1 || g.ReservesPerCall < 1 || g.ReservesPerCall > g.ReservesPerRoundTrip {
		t.Errorf("engine_in_process coalescing: %+v", g)
	}
	if g := fs.Phases[0].Coalescing; g == nil || g.ReservesPerRoundTrip < 1 {
		t.Errorf("selling coalescing: %+v", g)
	}
	for _, b := range []string{HTTPHello, PostgresRowLock, RedisScript} {
		if g := r.Baselines[b].Coalescing; g != nil {
			t.Errorf("%s went through no coalescer but reports %+v", b, g)
		}
	}
	if r.Memory.PeakRSSMiB <= 0 || r.Memory.OpenHolds == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
	if r.Scenarios[ExpiryStorm].SweeperLagMaxS == nil {
		t.Error("expiry-storm: no sweeper lag")
	}

	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	checkReportShape(t, dir)
}

// checkReportShape reads report.json as a stranger would and looks for every field the
// report promises, and for the Markdown table and the plots.
func checkReportShape(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios map[string]map[string]json.RawMessage `json:"scenarios"`
		Targets   []struct {
			Name     string   `json:"name"`
			Goal     string   `json:"goal"`
			Measured *float64 `json:"measured"`
			Met      *bool    `json:"met"`
			Ceiling  *float64 `json:"ceiling"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ceilings := 0
	for _, tg := range doc.Targets {
		if tg.Name == "" || tg.Goal == "" || tg.Measured == nil || tg.Met == nil {
			t.Errorf("report.json: target %+v", tg)
		}
		if tg.Ceiling != nil {
			ceilings++
		}
	}
	if len(doc.Targets) < 6 || ceilings == 0 { // http_vs_postgres always has one
		t.Errorf("report.json: %d targets, %d with a ceiling", len(doc.Targets), ceilings)
	}
	for _, name := range Scenarios {
		s := doc.Scenarios[name]
		for _, field := range []string{"throughput_rps", "p50_ms", "p99_ms", "p999_ms", "errors", "oversold", "undersold", "baselines", "ratios"} {
			if _, ok := s[field]; !ok {
				t.Errorf("report.json: scenario %s has no %s", name, field)
			}
		}
		var base map[string]map[string]float64
		if err := json.Unmarshal(s["baselines"], &base); err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{HTTPHello, PostgresRowLock, RedisScript} {
			if _, ok := base[b]["throughput_rps"]; !ok {
				t.Errorf("report.json: %s baselines lack %s.throughput_rps", name, b)
			}
		}
		var ratios map[string]float64
		if err := json.Unmarshal(s["ratios"], &ratios); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"http_vs_hello", "http_vs_postgres", "engine_vs_redis_script"} {
			if ratios[k] <= 0 {
				t.Errorf("report.json: %s ratio %s = %v", name, k, ratios[k])
			}
		}
	}
	files := []string{"report.md", "latency.svg", "baselines.svg"}
	for _, name := range Scenarios {
		files = append(files, throughputPlot(name))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) < 200 {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
	}
}

// TestCheckCatchesOversell changes a counter behind the engine's back and tells the check of
// a sale the system did not make: both must be reported.
func TestCheckCatchesOversell(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	b, err := start(ctx, env, smallOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	pool := engine.PoolConfig{Location: "bench", SKU: "check", Vendor: "bench", Shards: 1}
	if err := b.makePools(ctx, []engine.PoolConfig{pool}, 10); err != nil {
		t.Fatal(err)
	}
	h, err := b.eng.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "bench", SKU: "check", Qty: 3}}, IdempotencyKey: "k1", Actor: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.eng.Commit(ctx, h.ID, "bench"); err != nil {
		t.Fatal(err)
	}
	clean, err := b.check(ctx, []expectation{{pool: pool, stock: 10, committed: 3}}, false)
	if err != nil || clean.Oversold != 0 || clean.Undersold != 0 || len(clean.Violations) != 0 {
		t.Fatalf("clean pool: %+v, %v", clean, err)
	}
	key := fmt.Sprintf("%s:{p%d}:stock", env.Engine.Prefix, b.eng.PartitionOf("bench", "check", 0))
	if err := env.Redis.HIncrBy(ctx, key, "bench|check|0", 2).Err(); err != nil {
		t.Fatal(err)
	}
	iv, err := b.check(ctx, []expectation{{pool: pool, stock: 10, committed: 4}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// 2 units appeared from nowhere, and a client believes it bought one unit more than sold.
	if iv.Oversold != 3 || iv.Undersold != 0 || len(iv.Violations) != 2 {
		t.Fatalf("got %+v", iv)
	}
}

// BenchmarkSoldOut measures the sold-out path over HTTP against http_hello, with the same
// clients and load generator, one after the other: b.N requests each. Every request to the
// sold-out pool must be refused with 409 and leave its counters as they were.
func BenchmarkSoldOut(b *testing.B) {
	env := testEnv(b)
	ctx := context.Background()
	opts := smallOptions()
	opts.Clients = 128
	opts.NoPersister = true // nothing to persist: a refusal writes no event
	bn, err := start(ctx, env, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer bn.stop()
	pool := engine.PoolConfig{Location: "bench", SKU: "gone", Vendor: "bench", Shards: 8}
	if err := bn.makePools(ctx, []engine.PoolConfig{pool}, 0); err != nil {
		b.Fatal(err)
	}
	before, err := bn.eng.Availability(ctx, pool.Location, pool.SKU)
	if err != nil {
		b.Fatal(err)
	}
	hello, stopHello, err := bn.helloOp(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer stopHello()
	sold := bn.newReserveOp("so", pool.Location, pool.SKU, time.Minute)
	defer sold.cl.close()

	drive := func(op Op) Stats {
		var sent atomic.Int64
		n := int64(b.N)
		run := Drive(ctx, Load{Workers: opts.Clients, Duration: time.Hour, Done: func() bool { return sent.Add(1) >= n }}, op)
		return summarize(run.Samples, run.Elapsed, nil)
	}
	b.ResetTimer()
	h := drive(hello)
	s := drive(sold.op)
	b.StopTimer()
	if h.Errors != 0 || s.Errors != 0 || s.OK != 0 {
		b.Fatalf("hello %d errors; sold out %d errors, %d granted", h.Errors, s.Errors, s.OK)
	}
	after, err := bn.eng.Availability(ctx, pool.Location, pool.SKU)
	if err != nil {
		b.Fatal(err)
	}
	if fmt.Sprint(after.Shards) != fmt.Sprint(before.Shards) {
		b.Fatalf("refusals changed the pool: %v, then %v", before.Shards, after.Shards)
	}
	b.ReportMetric(h.ThroughputRPS, "hello_req/s")
	b.ReportMetric(s.ThroughputRPS, "soldout_req/s")
	b.ReportMetric(s.ThroughputRPS/h.ThroughputRPS, "soldout/hello")
	b.ReportMetric(s.P99Ms, "soldout_p99_ms")
	if st := bn.eng.Stats(); st.LookupBatches.Load() > 0 {
		b.ReportMetric(float64(st.Lookups.Load())/float64(st.LookupBatches.Load()), "lookups/pipeline")
	}
}

func TestRowLockPoolOptions(t *testing.T) {
	if d := Defaults(); d.PGConns != 0 {
		t.Errorf("the standard suite fixes the row-lock pool at %d; it should probe", d.PGConns)
	}
	o := Options{PGConns: -1}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "pg-conns") {
		t.Errorf("pg-conns -1: %v", err)
	}
	o = Options{}
	if err := o.Validate(); err != nil || o.PGConns != 0 {
		t.Errorf("defaults: pg-conns %d, %v", o.PGConns, err)
	}

	probed := &PoolChoice{Conns: 2, ProbeSeconds: 0.5, Probed: []Probe{{1, 900}, {2, 1200.4}, {4, 700}}}
	if got, want := probed.describe(), "postgres_row_lock ran through a pool of 2 connections, the fastest of the pools probed for 0.5 s each (connections: req/s 1: 900/s, 2: 1200/s, 4: 700/s)."; got != want {
		t.Errorf("describe:\n got %s\nwant %s", got, want)
	}
	if probed.best() != 1200.4 {
		t.Errorf("best %v", probed.best())
	}
	if got, want := (&PoolChoice{Conns: 1}).describe(), "postgres_row_lock ran through a pool of 1 connection (--pg-conns)."; got != want {
		t.Errorf("describe:\n got %s\nwant %s", got, want)
	}
}

// TestCeilings bounds targets by a made-up run's own figures: http_vs_postgres by
// http_hello / postgres_row_lock, and a flash-sale phase by its CPU cost when it kept the
// machine busy, and not when it left the machine half idle.
func TestCeilings(t *testing.T) {
	r := &Report{
		Machine:   Machine{CPUs: 2},
		Baselines: map[string]Stats{HTTPHello: {ThroughputRPS: 60000}, PostgresRowLock: {ThroughputRPS: 3000}},
		Scenarios: map[string]*Scenario{FlashSale: {Name: FlashSale,
			Ratios: map[string]float64{"http_vs_hello": 0.25, "sold_out_vs_hello": 0.5, "http_vs_postgres": 5, "engine_vs_redis_script": 1.9},
			Phases: []Phase{
				{Name: "selling", Stats: Stats{CPU: &CPU{Busy: 0.9, MachineUs: 100}}},
				{Name: "sold out", Stats: Stats{CPU: &CPU{Busy: 0.5, MachineUs: 60}}},
			}}},
	}
	want := map[string]float64{"flash-sale http_vs_hello (selling)": 2e6 / 100 / 60000, "flash-sale http_vs_postgres": 20}
	for _, tg := range r.Targets() {
		w, ok := want[tg.Name]
		switch {
		case !ok && tg.Ceiling != nil:
			t.Errorf("%s: ceiling %v (%s), want none", tg.Name, *tg.Ceiling, tg.CeilingBy)
		case ok && (tg.Ceiling == nil || math.Abs(*tg.Ceiling-w) > 1e-9 || tg.CeilingBy == ""):
			t.Errorf("%s: ceiling %v, want %v", tg.Name, tg.Ceiling, w)
		}
		delete(want, tg.Name)
	}
	if len(want) > 0 {
		t.Errorf("targets missing: %v", want)
	}
	md := r.Markdown()
	for _, s := range []string{"| flash-sale http_vs_postgres | >= 25 | 5 | **no** | 20.00 |",
		"so the ratio is at most 20.00 here", "| flash-sale sold_out_vs_hello | >= 0.9 | 0.5 | **no** | – |"} {
		if !strings.Contains(md, s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
}
