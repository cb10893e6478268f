// Package app assembles flashhold from its configuration: the engine over Redis, the Postgres
// ledger, the HTTP API and the background services the configuration turns on. `flashhold
// serve` runs it as it is; the bench runs it over a Redis prefix and a schema of its own.
package app

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/reconcile"
	"github.com/flashhold/flashhold/schedules"
	"github.com/flashhold/flashhold/sweeper"
	"github.com/flashhold/flashhold/tracing"
)

// Service is the one shape of background work (see internal/loop): Run until ctx ends, and
// metrics for /metrics.
type Service interface {
	Run(ctx context.Context) error
	Register(reg prometheus.Registerer) error
}

// App is one flashhold: what New opened, and the services Run runs.
type App struct {
	Engine *engine.Engine
	Server *api.Server
	// Store is the ledger (nil without one); Sweeper and Persister are nil when turned off.
	Store     *ledger.Store
	Sweeper   *sweeper.Sweeper
	Persister *ledger.Persister

	cfg      config.Config
	log      zerolog.Logger
	keys     []api.KeySpec
	rdb      redis.UniversalClient
	pg       *pgxpool.Pool
	ln       net.Listener
	services []Service
	guards   *guardrails.Store
	imports  *imports.Store
	apiOpts  []api.Option
	closers  []func() // what New opened, in order
	// traces is the tracer provider (nil: tracing off); traceOpts change how it is built.
	traces    *tracing.Provider
	traceOpts []tracing.Option
}

// Option changes what New uses instead of opening it from the configuration.
type Option func(*App)

// WithRedis makes the app use rdb (which the caller closes) rather than connect to
// FLASHHOLD_REDIS_URL.
func WithRedis(rdb redis.UniversalClient) Option { return func(a *App) { a.rdb = rdb } }

// WithPostgres makes the app's ledger pg (which the caller closes) rather than
// FLASHHOLD_POSTGRES_URL.
func WithPostgres(pg *pgxpool.Pool) Option { return func(a *App) { a.pg = pg } }

// WithKeys makes keys the API keys rather than those of FLASHHOLD_API_KEYS_FILE and
// FLASHHOLD_API_KEYS.
func WithKeys(keys []api.KeySpec) Option { return func(a *App) { a.keys = keys } }

// WithSpanExporter makes spans go to exp instead of the OTLP endpoint when the OTEL_*
// variables turn tracing on (tests give the SDK's in-memory exporter).
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return func(a *App) { a.traceOpts = append(a.traceOpts, tracing.WithExporter(exp)) }
}

// New opens everything cfg asks for and listens on cfg.API.Addr; Run starts the work. On an
// error, what was opened is closed again.
func New(ctx context.Context, cfg config.Config, log zerolog.Logger, opts ...Option) (*App, error) {
	a := &App{cfg: cfg, log: log}
	for _, o := range opts {
		o(a)
	}
	if err := a.open(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) open(ctx context.Context) error {
	if err := a.openKeys(); err != nil {
		return err
	}
	if err := a.openTracing(ctx); err != nil {
		return err
	}
	if a.rdb == nil {
		rdb, err := engine.NewRedisClient(a.cfg.Engine)
		if err != nil {
			return err
		}
		a.rdb = rdb
		a.closers = append(a.closers, func() { rdb.Close() })
	}
	e, err := engine.New(ctx, a.rdb, a.cfg.Engine, engine.WithLogger(a.log),
		engine.WithTracer(a.traces.Tracer("github.com/flashhold/flashhold/engine")))
	if err != nil {
		return err
	}
	a.Engine = e
	a.closers = append(a.closers, e.Close)
	a.apiOpts = []api.Option{api.WithLogger(a.log), api.WithTracer(a.traces.Tracer("github.com/flashhold/flashhold/api"))}
	if err := a.openLedger(ctx); err != nil {
		return err
	}
	if nothing, ok := e.KeepsNothing(ctx); ok && nothing {
		a.log.Warn().Msg("Redis keeps nothing on disk (appendonly no, no snapshots): a restart loses every hold and stops the service until `flashhold reconcile --repair` restores it from the ledger; run Redis with an append-only file")
	}
	guard := ledger.NewGuard(e, a.Store, a.log)
	if err := guard.Check(ctx); err != nil && !errors.Is(err, engine.ErrKeyspaceLost) {
		return err
	}
	a.apiOpts = append(a.apiOpts, api.WithReadiness("keyspace", guard.Check))
	a.services = append([]Service{guard}, a.services...)
	if a.cfg.Sweeper {
		a.Sweeper = sweeper.New(e, a.cfg.Sweep, sweeper.WithLogger(a.log))
		a.services = append(a.services, a.Sweeper)
	}
	return a.openServer()
}

// openTracing starts OpenTelemetry tracing when the OTEL_* variables ask for it.
func (a *App) openTracing(ctx context.Context) error {
	settings := tracing.FromEnv(os.Getenv)
	tp, err := tracing.Start(ctx, settings, a.traceOpts...)
	if err != nil || tp == nil {
		return err
	}
	a.traces = tp
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			a.log.Warn().Err(err).Msg("traces not all sent")
		}
	})
	a.log.Info().Str("endpoint", settings.Endpoint).Msg("tracing on")
	return nil
}

// openKeys reads the API keys, unless the caller gave them.
func (a *App) openKeys() error {
	if a.keys != nil {
		return nil
	}
	keys, err := api.LoadKeys(a.cfg.API.KeysFile, a.cfg.API.Keys)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		a.log.Warn().Msg("no API keys configured (FLASHHOLD_API_KEYS_FILE, FLASHHOLD_API_KEYS): authenticated endpoints will answer 401")
	}
	a.keys = keys
	return nil
}

// openLedger opens the Postgres ledger (when there is one) and the services that need it:
// the persister, the scheduled reconciliation, the alert detector and deliverer.
func (a *App) openLedger(ctx context.Context) error {
	if a.pg == nil {
		if a.cfg.PostgresURL == "" {
			return nil
		}
		pool, err := ledger.OpenPool(ctx, a.cfg.PostgresURL)
		if err != nil {
			return err
		}
		a.pg = pool
		a.closers = append(a.closers, pool.Close)
	}
	if a.cfg.MigrateOnStart {
		v, err := ledger.Migrate(ctx, a.pg)
		if err != nil {
			return err
		}
		a.log.Info().Int64("version", v).Msg("ledger schema migrated")
	}
	a.Store = ledger.NewStore(a.pg)
	a.apiOpts = append(a.apiOpts, api.WithReadiness("postgres", a.pg.Ping), api.WithEventSource(ledgerEvents{a.Store}),
		api.WithPoolHistory(a.Store),
		api.WithPoolStore(a.Store))
	if a.cfg.Persister {
		a.Persister = ledger.NewPersister(a.Engine, a.Store, a.cfg.Persist, ledger.WithPersistLogger(a.log),
			ledger.WithPersistTracer(a.traces.Tracer("github.com/flashhold/flashhold/ledger")))
		a.apiOpts = append(a.apiOpts, api.WithReadiness("ledger", a.Persister.Check))
		a.services = append(a.services, a.Persister)
	}
	policy, err := alerts.NewURLPolicy(a.cfg.Alerts.Allow)
	if err != nil {
		return err
	}
	hooks := alerts.NewStore(a.pg, policy, alerts.WithMaxSubscriptions(a.cfg.Alerts.MaxSubscriptions))
	if a.cfg.Reconcile.Every > 0 {
		a.services = append(a.services, reconcile.NewScheduler(reconcile.New(a.Engine, a.Store).WithNotices(hooks), a.cfg.Reconcile, a.log))
	}
	a.apiOpts = append(a.apiOpts, api.WithWebhooks(hooks), api.WithVendorActivity(hooks))
	if a.cfg.AlertsOn {
		a.services = append(a.services, alerts.NewDetector(a.Engine, hooks, a.cfg.Alerts, a.log, time.Now),
			alerts.NewDeliverer(hooks, a.cfg.Alerts, a.log))
	}
	a.guards = guardrails.NewStore(a.pg, a.cfg.Guard)
	a.apiOpts = append(a.apiOpts, api.WithGuardrails(a.guards))
	a.imports = imports.NewStore(a.pg)
	a.apiOpts = append(a.apiOpts, api.WithImports(a.imports, a.cfg.Import))
	feedStore := feeds.NewStore(a.pg)
	a.apiOpts = append(a.apiOpts, api.WithFeeds(feedStore, policy))
	if a.cfg.FeedsOn {
		a.services = append(a.services, feeds.NewRunner(a.Engine, feedStore, a.imports, policy, a.cfg.Import, a.cfg.Feed, a.log))
	}
	sched := schedules.NewStore(a.pg)
	a.apiOpts = append(a.apiOpts, api.WithSchedules(sched))
	if a.cfg.SchedulesOn {
		a.services = append(a.services, schedules.NewRunner(a.Engine, sched, a.cfg.Schedule, a.log))
	}
	return nil
}

// openServer builds the HTTP API, registers every service's metrics with it and listens.
func (a *App) openServer() error {
	if soft, _, err := api.RaiseOpenFilesLimit(); err != nil {
		a.log.Warn().Err(err).Msg("could not raise the open-files limit")
	} else if a.cfg.API.MaxConns <= 0 {
		a.log.Info().Uint64("open_files_limit", soft).Int("max_connections", api.DefaultMaxConns()).Msg("connection cap from the open-files limit")
	}
	srv, err := api.New(a.cfg.API, a.Engine, a.keys, a.apiOpts...)
	if err != nil {
		return err
	}
	a.Server = srv
	if a.imports != nil && a.cfg.ImportsOn {
		limits := func(ctx context.Context, vendor string) (guardrails.Limits, error) {
			l, _, err := a.guards.Limits(ctx, vendor)
			return l, err
		}
		opts := []imports.Option{imports.WithFileCheck(a.Engine, limits)}
		if a.cfg.Import.Yield {
			opts = append(opts, imports.WithYield(srv.UnderPressure))
		}
		a.services = append(a.services, imports.NewRunner(a.imports, srv.ImportRows, a.cfg.Import, a.log, opts...))
	}
	for _, s := range a.services {
		if err := s.Register(srv.Registry()); err != nil {
			return err
		}
	}
	a.ln, err = net.Listen("tcp", a.cfg.API.Addr)
	return err
}

// Addr is where the API listens.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Close releases what New opened (not what the caller gave it). Call it after Run returns.
func (a *App) Close() {
	if a.ln != nil {
		a.ln.Close()
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
