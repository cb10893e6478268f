package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/reconcile"
	"github.com/flashhold/flashhold/sweeper"
)

func serveCmd(ctx context.Context, args []string) error {
	fs := newFlags("serve", "", `Serve the HTTP API on FLASHHOLD_HTTP_ADDR, with the background services that
FLASHHOLD_SWEEPER, FLASHHOLD_PERSISTER, FLASHHOLD_ALERTS and FLASHHOLD_RECONCILE_EVERY turn
on, until interrupted.`)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	e, cfg, err := openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	log := cfg.Logger()
	keys, err := api.LoadKeys(cfg.API.KeysFile, cfg.API.Keys)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		log.Warn().Msg("no API keys configured (FLASHHOLD_API_KEYS_FILE, FLASHHOLD_API_KEYS): authenticated endpoints will answer 401")
	}
	opts := []api.Option{api.WithLogger(log)}
	var store *ledger.Store
	var persister *ledger.Persister
	var scheduler *reconcile.Scheduler
	var detector *alerts.Detector
	var deliverer *alerts.Deliverer
	if cfg.PostgresURL != "" {
		pool, err := ledger.OpenPool(ctx, cfg.PostgresURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if cfg.MigrateOnStart {
			v, err := ledger.Migrate(ctx, pool)
			if err != nil {
				return err
			}
			log.Info().Int64("version", v).Msg("ledger schema migrated")
		}
		store = ledger.NewStore(pool)
		opts = append(opts, api.WithReadiness("postgres", pool.Ping), api.WithEventSource(ledgerEvents{store}),
			api.WithPoolStore(store))
		if cfg.Persister {
			persister = ledger.NewPersister(e, store, cfg.Persist, ledger.WithPersistLogger(log))
			opts = append(opts, api.WithReadiness("ledger", persister.Check))
		}
		if cfg.Reconcile.Every > 0 {
			scheduler = reconcile.NewScheduler(reconcile.New(e, store), cfg.Reconcile, log)
		}
		policy, err := alerts.NewURLPolicy(cfg.Alerts.Allow)
		if err != nil {
			return err
		}
		hooks := alerts.NewStore(pool, policy, alerts.WithMaxSubscriptions(cfg.Alerts.MaxSubscriptions))
		opts = append(opts, api.WithWebhooks(hooks))
		if cfg.AlertsOn {
			detector = alerts.NewDetector(e, hooks, cfg.Alerts, log, time.Now)
			deliverer = alerts.NewDeliverer(hooks, cfg.Alerts, log)
		}
	}
	if nothing, ok := e.KeepsNothing(ctx); ok && nothing {
		log.Warn().Msg("Redis keeps nothing on disk (appendonly no, no snapshots): a restart loses every hold and stops the service until `flashhold reconcile --repair` restores it from the ledger; run Redis with an append-only file")
	}
	guard := ledger.NewGuard(e, store, log)
	if err := guard.Check(ctx); err != nil && !errors.Is(err, engine.ErrKeyspaceLost) {
		return err
	}
	opts = append(opts, api.WithReadiness("keyspace", guard.Check))
	if soft, _, err := api.RaiseOpenFilesLimit(); err != nil {
		log.Warn().Err(err).Msg("could not raise the open-files limit")
	} else if cfg.API.MaxConns <= 0 {
		log.Info().Uint64("open_files_limit", soft).Int("max_connections", api.DefaultMaxConns()).Msg("connection cap from the open-files limit")
	}
	srv, err := api.New(cfg.API, e, keys, opts...)
	if err != nil {
		return err
	}
	if err := guard.Register(srv.Registry()); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		return err
	}
	// Background work runs until the HTTP server has drained, then stops.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var workers sync.WaitGroup
	workers.Go(func() { guard.Run(bg) })
	if cfg.Sweeper {
		sw := sweeper.New(e, cfg.Sweep, sweeper.WithLogger(log))
		if err := sw.Register(srv.Registry()); err != nil {
			return err
		}
		workers.Go(func() { sw.Run(bg) })
	}
	if persister != nil {
		if err := persister.Register(srv.Registry()); err != nil {
			return err
		}
		workers.Go(func() { persister.Run(bg) })
	}
	if scheduler != nil {
		if err := scheduler.Register(srv.Registry()); err != nil {
			return err
		}
		workers.Go(func() { scheduler.Run(bg) })
	}
	if detector != nil {
		if err := detector.Register(srv.Registry()); err != nil {
			return err
		}
		if err := deliverer.Register(srv.Registry()); err != nil {
			return err
		}
		workers.Go(func() { detector.Run(bg) })
		workers.Go(func() { deliverer.Run(bg) })
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Int("api_keys", len(keys)).Bool("sweeper", cfg.Sweeper).
		Bool("persister", persister != nil).Bool("alerts", detector != nil).Msg("serving")
	select {
	case err := <-served:
		stopBackground()
		workers.Wait()
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	stopBackground()
	workers.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// ledgerEvents serves the events API from the Postgres ledger.
type ledgerEvents struct{ store *ledger.Store }

func (l ledgerEvents) Events(ctx context.Context, q api.EventQuery) (api.EventPage, error) {
	if len(q.Hold) > 0 {
		evs, err := l.store.HoldEvents(ctx, q.Vendor, q.Hold)
		return api.EventPage{Events: evs, Source: "postgres"}, err
	}
	evs, err := l.store.Events(ctx, q.Vendor, q.AfterPartition, q.AfterSeq, q.Limit)
	if err != nil {
		return api.EventPage{}, err
	}
	page := api.EventPage{Events: evs, Source: "postgres"}
	if len(evs) == q.Limit {
		last := evs[len(evs)-1]
		page.Next = fmt.Sprintf("%d:%d", last.Partition, last.Seq)
	}
	return page, nil
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
