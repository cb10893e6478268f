package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolConfig is the configuration of a connection pool to the ledger at url, as every
// flashhold command opens it.
//
// Its connections plan every execution of a prepared statement for its own arguments and
// the table as it is then (plan_cache_mode force_custom_plan, unless url sets it). Otherwise
// Postgres settles on a generic plan after five executions and keeps it: a plan chosen while
// inventory_events was empty (a hash join over a sequential scan) would read the whole
// ledger on every batch once it holds millions of rows, and, with autovacuum off or behind,
// nothing would ever replace it (TestLedgerPlanTrap). Planning costs tens of microseconds a
// query.
func PoolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("FLASHHOLD_POSTGRES_URL: %w", err)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	return cfg, nil
}

// OpenPool opens a connection pool to the ledger at url (see PoolConfig).
func OpenPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := PoolConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("FLASHHOLD_POSTGRES_URL: %w", err)
	}
	return pool, nil
}
