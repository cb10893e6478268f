// Package config reads flashhold's configuration from the environment.
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
	"github.com/flashhold/flashhold/ledger"
	"github.com/flashhold/flashhold/reconcile"
	"github.com/flashhold/flashhold/sweeper"
)

// Config is everything the flashhold binary reads from its environment. Defaults are listed
// in the README.
type Config struct {
	Engine engine.Config
	API    api.Config
	Sweep  sweeper.Config
	// Sweeper runs the sweeper inside serve.
	Sweeper bool `env:"FLASHHOLD_SWEEPER" envDefault:"true"`
	Persist ledger.PersistConfig
	// Persister runs the ledger persister inside serve (when FLASHHOLD_POSTGRES_URL is set).
	Persister bool `env:"FLASHHOLD_PERSISTER" envDefault:"true"`
	Alerts    alerts.Config
	// Reconcile is the scheduled reconciliation inside serve (off unless FLASHHOLD_RECONCILE_EVERY is set).
	Reconcile reconcile.ScheduleConfig
	// AlertsOn runs the stock-alert detector and webhook deliverer inside serve (with a ledger).
	AlertsOn bool `env:"FLASHHOLD_ALERTS" envDefault:"true"`
	// MigrateOnStart applies the ledger migrations when serve starts.
	MigrateOnStart bool `env:"FLASHHOLD_MIGRATE_ON_START" envDefault:"false"`
	// PostgresURL is the ledger database (also checked by /readyz); empty disables it.
	PostgresURL string `env:"FLASHHOLD_POSTGRES_URL" envDefault:"postgres://postgres@127.0.0.1:5432/flashhold?sslmode=disable"`
	// ShutdownTimeout bounds how long serve waits for requests in flight when stopping.
	ShutdownTimeout time.Duration `env:"FLASHHOLD_SHUTDOWN_TIMEOUT" envDefault:"15s"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `env:"FLASHHOLD_LOG_LEVEL" envDefault:"info"`
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
		PostgresURL:     "postgres://postgres@127.0.0.1:5432/flashhold?sslmode=disable",
		ShutdownTimeout: 15 * time.Second,
		LogLevel:        "info",
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	for _, v := range []interface{ Validate() error }{&c.Engine, c.API, c.Sweep, c.Persist, c.Alerts, c.Reconcile} {
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

// Load parses the environment.
func Load() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
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
