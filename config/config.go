// Package config reads flashhold's configuration from the environment. Every variable is
// listed once, in variables.txt; the defaults are the packages' own (engine.DefaultConfig, …), and
// docs/configuration.md is written from the list (go run ./config/cmd/gendoc).
package config

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/reconcile"
	"github.com/flashhold/flashhold/schedules"
	"github.com/flashhold/flashhold/sweeper"
)

// Config is everything the flashhold binary reads from its environment (see Vars).
type Config struct {
	Engine engine.Config
	API    api.Config
	Sweep  sweeper.Config
	// Sweeper runs the sweeper inside serve.
	Sweeper bool
	Persist ledger.PersistConfig
	// Persister runs the ledger persister inside serve (when FLASHHOLD_POSTGRES_URL is set).
	Persister bool
	Alerts    alerts.Config
	// Reconcile is the scheduled reconciliation inside serve (off unless FLASHHOLD_RECONCILE_EVERY is set).
	Reconcile reconcile.ScheduleConfig
	// AlertsOn runs the stock-alert detector and webhook deliverer inside serve (with a ledger).
	AlertsOn bool
	// Schedule is the runner of the vendors' stock schedules; SchedulesOn runs it inside serve
	// (with a ledger).
	Schedule    schedules.Config
	SchedulesOn bool
	// Guard is the limits of a vendor's stock changes for vendors without their own (0: off).
	Guard guardrails.Limits
	// Import is the vendors' asynchronous imports; ImportsOn applies them inside serve (with a
	// ledger).
	Import    imports.Config
	ImportsOn bool
	// Feed is the runner of the vendors' feeds; FeedsOn runs it inside serve (with a ledger).
	Feed    feeds.Config
	FeedsOn bool
	// MigrateOnStart applies the ledger migrations when serve starts.
	MigrateOnStart bool
	// PostgresURL is the ledger database (also checked by /readyz); empty disables it.
	PostgresURL string
	// ShutdownTimeout bounds how long serve waits for requests in flight when stopping.
	ShutdownTimeout time.Duration
	// LogLevel is one of debug, info, warn, error.
	LogLevel string
}

// Default is the configuration when the environment sets nothing: every package's defaults.
func Default() Config {
	return Config{
		Engine:          engine.DefaultConfig(),
		API:             api.DefaultConfig(),
		Sweep:           sweeper.DefaultConfig(),
		Sweeper:         true,
		Persist:         ledger.DefaultPersistConfig(),
		Persister:       true,
		Alerts:          alerts.DefaultConfig(),
		Reconcile:       reconcile.DefaultScheduleConfig(),
		AlertsOn:        true,
		Schedule:        schedules.DefaultConfig(),
		SchedulesOn:     true,
		Import:          imports.DefaultConfig(),
		ImportsOn:       true,
		Feed:            feeds.DefaultConfig(),
		FeedsOn:         true,
		PostgresURL:     "postgres://postgres@127.0.0.1:5432/flashhold?sslmode=disable",
		ShutdownTimeout: 15 * time.Second,
		LogLevel:        "info",
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	for _, v := range []interface{ Validate() error }{&c.Engine, c.API, c.Sweep, c.Persist, c.Alerts, c.Reconcile, c.Schedule, c.Guard, c.Import, c.Feed} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("FLASHHOLD_SHUTDOWN_TIMEOUT must be positive, got %s", c.ShutdownTimeout)
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("FLASHHOLD_LOG_LEVEL: %w", err)
	}
	return nil
}

// Load reads the process's environment over Default() and validates the result.
func Load() (Config, error) { return load(env.ToMap(os.Environ())) }

func load(environ map[string]string) (Config, error) {
	cfg := Default()
	if err := read(&cfg, environ); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

// Logger returns the JSON logger the configuration asks for, writing to stderr.
func (c Config) Logger() zerolog.Logger { return c.logger(os.Stderr) }

// logger builds the logger and makes it go-redis's too: go-redis otherwise prints plain-text
// lines (pool dial failures, truncated TTLs) to stderr, in between the JSON.
func (c Config) logger(w io.Writer) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(c.LogLevel)
	zerolog.TimeFieldFormat = time.RFC3339Nano
	log := zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "flashhold").Logger()
	redis.SetLogger(redisLogger{log.With().Str("component", "go-redis").Logger()})
	return log
}

// redisLogger writes go-redis's package-level messages as warnings.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Msg(strings.TrimRight(fmt.Sprintf(format, v...), "\n"))
}
