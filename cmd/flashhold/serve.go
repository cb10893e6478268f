package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/app"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/sweeper"
)

func serveCmd(ctx context.Context, args []string) error {
	fs := newFlags("serve", "", `Serve the HTTP API on FLASHHOLD_HTTP_ADDR, with the background services that
FLASHHOLD_SWEEPER, FLASHHOLD_PERSISTER, FLASHHOLD_ALERTS and FLASHHOLD_RECONCILE_EVERY turn
on, until interrupted.`)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, cfg.Logger())
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// openLedger connects to Postgres.
func openLedger(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, fmt.Errorf("FLASHHOLD_POSTGRES_URL is empty")
	}
	return ledger.OpenPool(ctx, url)
}

// migrateCmd applies the ledger migrations.
func migrateCmd(ctx context.Context, args []string) error {
	fs := newFlags("migrate", "", "Apply the ledger schema migrations to FLASHHOLD_POSTGRES_URL.")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	pool, err := openLedger(ctx, cfg.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	v, err := ledger.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Printf("ledger schema at version %d\n", v)
	return nil
}

// openEngineWithLedger opens the engine and the ledger; close releases both.
func openEngineWithLedger(ctx context.Context) (*engine.Engine, *ledger.Store, config.Config, func(), error) {
	e, cfg, err := openEngine(ctx)
	if err != nil {
		return nil, nil, cfg, nil, err
	}
	pool, err := openLedger(ctx, cfg.PostgresURL)
	if err != nil {
		e.Close()
		return nil, nil, cfg, nil, err
	}
	return e, ledger.NewStore(pool), cfg, func() { pool.Close(); e.Close() }, nil
}

// persistCmd runs only the ledger persister until interrupted.
func persistCmd(ctx context.Context, args []string) error {
	fs := newFlags("persist", "", "Run only the ledger persister (Redis streams to Postgres) until interrupted.")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	e, store, cfg, closeAll, err := openEngineWithLedger(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	return ledger.NewPersister(e, store, cfg.Persist, ledger.WithPersistLogger(cfg.Logger())).Run(ctx)
}

// sweepCmd runs the sweeper alone until interrupted.
func sweepCmd(ctx context.Context, args []string) error {
	fs := newFlags("sweep", "", `Run only the sweeper until interrupted: give back the units of expired holds,
rebalance sharded pools, complete interrupted transfers, write off perishable stock.`)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	e, cfg, err := openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	return sweeper.New(e, cfg.Sweep, sweeper.WithLogger(cfg.Logger())).Run(ctx)
}
