package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/bench"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/rediskeys"
	"github.com/flashhold/flashhold/ledger"
)

// errDirty makes bench exit with 1: a scenario oversold, undersold or broke an invariant.
var errDirty = errors.New("invariants broken")

// benchCmd runs the bench suite against the configured Redis and Postgres, under a key prefix
// and a schema of its own that it removes afterwards.
func benchCmd(ctx context.Context, args []string) error {
	d := bench.Defaults()
	fs := newFlags("bench", "[flags]", `Drive flash-sale load at an in-process flashhold and at baselines, under a key
prefix and a Postgres schema of the run's own; write a report.
Exit 0 clean, 1 oversold, undersold or an invariant broken, 2 could not run.`)
	scenario := fs.String("scenario", "all", "flash-sale, catalog, cart, regional, expiry-storm, spike, import, or all (comma-separated list allowed)")
	out := fs.String("out", "bench-report", "directory for report.json, report.md and the SVG plots")
	opts := bench.Options{}
	fs.DurationVar(&opts.Duration, "duration", d.Duration, "measured load per scenario")
	fs.DurationVar(&opts.BaselineDuration, "baseline-duration", d.BaselineDuration, "measured load per baseline")
	fs.DurationVar(&opts.OpenDuration, "open-duration", d.OpenDuration, "length of the flash-sale open-loop latency run")
	fs.IntVar(&opts.Clients, "clients", d.Clients, "concurrent clients (closed loop) and senders (open loop)")
	fs.Float64Var(&opts.Rate, "rate", 0, "open-loop arrival rate per second (0: half the measured selling rate)")
	fs.Int64Var(&opts.Stock, "stock", d.Stock, "flash-sale stock")
	fs.IntVar(&opts.Shards, "shards", d.Shards, "sub-counters of the flash-sale pool")
	fs.IntVar(&opts.SKUs, "skus", d.SKUs, "SKUs in the catalog scenario")
	fs.Int64Var(&opts.SKUStock, "sku-stock", d.SKUStock, "units per catalog SKU (cart SKUs get ten times as many)")
	fs.IntVar(&opts.CartSKUs, "cart-skus", d.CartSKUs, "SKUs in the cart scenario")
	fs.IntVar(&opts.StormHolds, "storm-holds", d.StormHolds, "holds the expiry storm leaves to expire")
	fs.Int64Var(&opts.ImportRows, "import-rows", d.ImportRows, "rows of the import scenario's file")
	fs.IntVar(&opts.ImportPools, "import-pools", d.ImportPools, "pools the import scenario's file changes")
	fs.Float64Var(&opts.ImportCheckoutRate, "import-checkout-rate", d.ImportCheckoutRate, "holds a second placed on another pool beside the import (open loop)")
	fs.BoolVar(&opts.ImportNoYield, "import-no-yield", false, "run the import at full speed, not yielding to checkout (FLASHHOLD_IMPORT_YIELD=false)")
	fs.IntVar(&opts.ImportBatch, "import-batch", 0, "rows of an import between two records of progress (FLASHHOLD_IMPORT_BATCH; 0: its default)")
	fs.IntVar(&opts.PGConns, "pg-conns", d.PGConns, "Postgres connections of the row-lock baseline (0: probe 1, 2, 4, … 32 and keep the fastest)")
	fs.Uint64Var(&opts.Seed, "seed", d.Seed, "seed of the request mix")
	fs.BoolVar(&opts.NoPersister, "no-persister", false, "leave the ledger persister off (to measure its cost)")
	keep := fs.Bool("keep", false, "keep the run's Redis keys and Postgres schema")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	memProfile := fs.String("memprofile", "", "write the allocations of the whole run to this file (go tool pprof -sample_index=alloc_space)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *scenario != "all" {
		opts.Scenarios = strings.Split(*scenario, ",")
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	cfg.Engine.Prefix = "fhbench-" + run
	cfg.Engine.RedisPoolSize = max(cfg.Engine.RedisPoolSize, opts.Clients+32)
	rdb, err := engine.NewRedisClient(cfg.Engine)
	if err != nil {
		return err
	}
	defer rdb.Close()
	pg, dropSchema, err := benchSchema(ctx, cfg.PostgresURL, "fhbench_"+run, opts.Clients)
	if err != nil {
		return err
	}
	defer pg.Close()
	if !*keep {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := rediskeys.DeletePrefix(cctx, rdb, cfg.Engine.Prefix); err != nil {
				fmt.Fprintf(os.Stderr, "removing keys %s:*: %v\n", cfg.Engine.Prefix, err)
			}
			if err := dropSchema(cctx); err != nil {
				fmt.Fprintf(os.Stderr, "dropping schema: %v\n", err)
			}
		}()
	}
	stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	defer stopProfiles()
	log := cfg.Logger().Level(zerolog.WarnLevel)
	env := bench.Env{Redis: rdb, Postgres: pg, Engine: cfg.Engine, API: cfg.API, Sweep: cfg.Sweep, Persist: cfg.Persist, Log: log, Progress: os.Stderr}
	fmt.Fprintf(os.Stderr, "bench: keys under %s:*, ledger in schema fhbench_%s\n", cfg.Engine.Prefix, run)
	rep, err := bench.Run(ctx, env, opts)
	if err != nil {
		return err
	}
	if err := rep.Write(*out); err != nil {
		return err
	}
	fmt.Printf("report in %s (report.md, report.json, plots)\n", *out)
	for _, t := range rep.Targets() {
		met := "met"
		if !t.Met {
			met = "NOT met"
		}
		fmt.Printf("  %-42s %-8s measured %-10.3g %s\n", t.Name, t.Goal, t.Measured, met)
	}
	if !rep.Clean() {
		return errDirty
	}
	return nil
}

// benchSchema creates the run's own schema and returns a pool whose search_path is it.
func benchSchema(ctx context.Context, url, schema string, clients int) (*pgxpool.Pool, func(context.Context) error, error) {
	admin, err := openLedger(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	drop := func(ctx context.Context) error {
		defer admin.Close()
		_, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
		return err
	}
	pc, err := ledger.PoolConfig(url)
	if err != nil {
		_ = drop(ctx)
		return nil, nil, err
	}
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pc.MaxConns = int32(min(max(clients/4, 8), 40))
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		_ = drop(ctx)
		return nil, nil, err
	}
	return pool, drop, nil
}

// startProfiles starts a CPU profile into cpu (when named); the returned function stops it
// and writes the allocations into mem (when named).
func startProfiles(cpu, mem string) (func(), error) {
	stopCPU := func() {}
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
	}
	return func() {
		stopCPU()
		if mem != "" {
			writeHeapProfile(mem)
		}
	}, nil
}

// writeHeapProfile writes the heap profile, whose alloc_space and alloc_objects samples
// cover every allocation since the process started.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "memory profile: %v\n", err)
	}
}
