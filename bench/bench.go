package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/app"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/sweeper"
)

// Scenario names.
const (
	FlashSale   = "flash-sale"
	Catalog     = "catalog"
	Cart        = "cart"
	ExpiryStorm = "expiry-storm"
	Spike       = "spike"
	Import      = "import"
	Regional    = "regional"
)

// Scenarios lists every scenario in the order the standard suite runs them.
var Scenarios = []string{FlashSale, Catalog, Cart, Regional, ExpiryStorm, Spike, Import}

// Options configure a bench run. Zero values take the defaults in Defaults.
type Options struct {
	// Scenarios to run (default: all).
	Scenarios []string `json:"scenarios"`
	// Duration of each scenario's measured load; BaselineDuration of each baseline.
	Duration         time.Duration `json:"duration"`
	BaselineDuration time.Duration `json:"baseline_duration"`
	// Clients is the closed-loop concurrency of every scenario and baseline.
	Clients int `json:"clients"`
	// Rate is the open-loop arrival rate of the flash-sale latency run (0: half of the
	// selling phase's measured throughput); OpenDuration is how long it runs.
	Rate         float64       `json:"rate"`
	OpenDuration time.Duration `json:"open_duration"`
	// Stock and Shards of the flash-sale pool.
	Stock  int64 `json:"stock"`
	Shards int   `json:"shards"`
	// SKUs in the catalog scenario, each with SKUStock units; CartSKUs in the cart scenario.
	SKUs     int   `json:"skus"`
	SKUStock int64 `json:"sku_stock"`
	CartSKUs int   `json:"cart_skus"`
	// StormHolds is how many holds the expiry storm leaves to expire.
	StormHolds int `json:"storm_holds"`
	// ImportRows rows over ImportPools pools make the import scenario's file; checkout beside
	// it runs at ImportCheckoutRate holds a second.
	ImportRows         int64   `json:"import_rows"`
	ImportPools        int     `json:"import_pools"`
	ImportCheckoutRate float64 `json:"import_checkout_rate"`
	// ImportNoYield runs the import at full speed, not pausing while checkout waits
	// (FLASHHOLD_IMPORT_YIELD=false).
	ImportNoYield bool `json:"import_no_yield,omitempty"`
	// ImportBatch is FLASHHOLD_IMPORT_BATCH (0: its default).
	ImportBatch int `json:"import_batch,omitempty"`
	// PGConns is the Postgres pool of the row-lock baseline. 0 (the default) probes pools of
	// 1, 2, 4, … connections, up to 32 and to Clients, and measures the fastest: the
	// baseline is the alternative at its best on this machine, not at an arbitrary size.
	PGConns int `json:"pg_conns"`
	// Seed makes the request mix repeatable.
	Seed uint64 `json:"seed"`
	// NoPersister leaves the ledger persister off (to measure what it costs; the standard
	// suite runs it, as serve does).
	NoPersister bool `json:"no_persister,omitempty"`
}

// Defaults returns the standard suite's options.
func Defaults() Options {
	return Options{Scenarios: Scenarios, Duration: 20 * time.Second, BaselineDuration: 8 * time.Second, Clients: 128,
		OpenDuration: 10 * time.Second, Stock: 100_000, Shards: 8, SKUs: 100_000, SKUStock: 100, CartSKUs: 1000,
		StormHolds: 100_000, ImportRows: 1_000_000, ImportPools: 100_000, ImportCheckoutRate: 500, Seed: 1}
}

func (o *Options) fill() {
	d := Defaults()
	if len(o.Scenarios) == 0 {
		o.Scenarios = d.Scenarios
	}
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&o.Duration, d.Duration)
	set(&o.BaselineDuration, d.BaselineDuration)
	set(&o.OpenDuration, d.OpenDuration)
	for _, f := range []struct {
		v   *int
		def int
	}{{&o.Clients, d.Clients}, {&o.Shards, d.Shards}, {&o.SKUs, d.SKUs}, {&o.CartSKUs, d.CartSKUs},
		{&o.StormHolds, d.StormHolds}, {&o.ImportPools, d.ImportPools}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if o.Stock <= 0 {
		o.Stock = d.Stock
	}
	if o.SKUStock <= 0 {
		o.SKUStock = d.SKUStock
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	if o.ImportRows <= 0 {
		o.ImportRows = d.ImportRows
	}
	if o.ImportCheckoutRate <= 0 {
		o.ImportCheckoutRate = d.ImportCheckoutRate
	}
}

// Validate reports the first option that cannot work.
func (o *Options) Validate() error {
	o.fill()
	for _, s := range o.Scenarios {
		known := false
		for _, k := range Scenarios {
			known = known || s == k
		}
		if !known {
			return fmt.Errorf("unknown scenario %q (known: %v)", s, Scenarios)
		}
	}
	switch {
	case o.Shards > engine.MaxShards:
		return fmt.Errorf("shards: at most %d", engine.MaxShards)
	case o.Clients > 4096:
		return errors.New("clients: at most 4096")
	case o.Rate < 0:
		return errors.New("rate: must not be negative")
	case o.ImportRows < int64(o.ImportPools):
		return errors.New("import-rows: at least one row per import pool")
	case o.PGConns < 0:
		return errors.New("pg-conns: must not be negative (0 probes pool sizes)")
	}
	return nil
}

// Env is what a bench run needs: Redis (with a key prefix no one else uses), and a Postgres
// pool whose search_path is a schema of the run's own.
type Env struct {
	Redis    redis.UniversalClient
	Postgres *pgxpool.Pool
	Engine   engine.Config
	API      api.Config
	Sweep    sweeper.Config
	Persist  ledger.PersistConfig
	Log      zerolog.Logger
	// Progress receives a line about once a second while load runs (nil: silent).
	Progress io.Writer
}

// bench is one run's live system: flashhold as `flashhold serve` assembles it (package app),
// in this process, with the API on a loopback port.
type bench struct {
	env       Env
	opts      Options
	app       *app.App
	eng       *engine.Engine
	addr      string
	apiKey    string
	sweeper   *sweeper.Sweeper
	persister *ledger.Persister
	stop      func()
}

// start brings the system up: the engine over the run's Redis prefix, the ledger in the run's
// schema (migrated), the sweeper and, unless NoPersister, the persister; no alerts and no
// scheduled reconciliation.
func start(ctx context.Context, env Env, opts Options) (*bench, error) {
	b := &bench{env: env, opts: opts, apiKey: randomHex(16)}
	cfg := config.Default()
	cfg.Engine, cfg.API, cfg.Sweep, cfg.Persist = env.Engine, env.API, env.Sweep, env.Persist
	cfg.API.Addr = "127.0.0.1:0"
	cfg.MigrateOnStart, cfg.Sweeper, cfg.Persister, cfg.AlertsOn = true, true, !opts.NoPersister, false
	cfg.Reconcile.Every = 0
	cfg.Import.Yield = !opts.ImportNoYield
	if opts.ImportBatch > 0 {
		cfg.Import.Batch = opts.ImportBatch
	}
	cfg.ShutdownTimeout = 5 * time.Second
	keys := []api.KeySpec{{ID: "bench", SHA256: api.HashKey(b.apiKey), Role: api.RoleAdmin, RateLimit: -1}}
	a, err := app.New(ctx, cfg, env.Log, app.WithRedis(env.Redis), app.WithPostgres(env.Postgres), app.WithKeys(keys))
	if err != nil {
		return nil, err
	}
	b.app, b.eng, b.addr, b.sweeper = a, a.Engine, a.Addr(), a.Sweeper
	// settle and the flash-sale report read the lag of a persister even when none runs.
	b.persister = a.Persister
	if b.persister == nil {
		b.persister = ledger.NewPersister(a.Engine, a.Store, env.Persist, ledger.WithPersistLogger(env.Log))
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(bg)
	}()
	b.stop = func() {
		cancel()
		<-done
		a.Close()
	}
	return b, nil
}

// settle waits (at most limit) until the persister has caught up, so one phase's backlog
// does not load the next phase.
func (b *bench) settle(ctx context.Context, limit time.Duration) {
	if b.opts.NoPersister {
		return
	}
	end := time.Now().Add(limit)
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := b.persister.UpdateLag(ctx); err == nil {
			if n, _ := b.persister.Lag(); n == 0 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// progress returns a Load.Progress that prints one line per call.
func (b *bench) progress(label string) func(time.Duration, int64) {
	if b.env.Progress == nil {
		return nil
	}
	var last int64
	var lastAt time.Duration
	return func(elapsed time.Duration, n int64) {
		rate := float64(n-last) / (elapsed - lastAt).Seconds()
		last, lastAt = n, elapsed
		fmt.Fprintf(b.env.Progress, "%-28s %6.1fs %10d requests %10.0f/s\n", label, elapsed.Seconds(), n, rate)
	}
}

func (b *bench) say(format string, args ...any) {
	if b.env.Progress != nil {
		fmt.Fprintf(b.env.Progress, format+"\n", args...)
	}
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}
