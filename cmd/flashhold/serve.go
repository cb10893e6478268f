package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/sweeper"
)

func serveCmd(ctx context.Context) error {
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
	if cfg.PostgresURL != "" {
		pool, err := pgxpool.New(ctx, cfg.PostgresURL)
		if err != nil {
			return fmt.Errorf("FLASHHOLD_POSTGRES_URL: %w", err)
		}
		defer pool.Close()
		opts = append(opts, api.WithReadiness("postgres", pool.Ping))
	}
	srv, err := api.New(cfg.API, e, keys, opts...)
	if err != nil {
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
	if cfg.Sweeper {
		sw := sweeper.New(e, cfg.Sweep, sweeper.WithLogger(log))
		if err := sw.Register(srv.Registry()); err != nil {
			return err
		}
		workers.Go(func() { sw.Run(bg) })
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Int("api_keys", len(keys)).Bool("sweeper", cfg.Sweeper).Msg("serving")
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

// sweepCmd runs the sweeper alone until interrupted.
func sweepCmd(ctx context.Context) error {
	e, cfg, err := openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	return sweeper.New(e, cfg.Sweep, sweeper.WithLogger(cfg.Logger())).Run(ctx)
}
