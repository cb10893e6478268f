package ledger

import (
	"fmt"
	"time"
)

// PersistConfig is the persister's configuration (package config reads it from the environment).
type PersistConfig struct {
	// Group is the Redis consumer group every persister joins.
	Group string
	// Batch is the most entries read from one partition per pass; MaxRows caps a transaction.
	Batch   int
	MaxRows int
	// Interval is the pause between passes that found nothing to do.
	Interval time.Duration
	// Linger (0: off) is the pause after a pass that found less than a quarter of MaxRows:
	// under steady traffic the next pass then takes a larger batch, which costs less per
	// event, and passes no longer follow each other with a few events each, every one with
	// its fixed Redis and Postgres round trips, which lengthened the reserve path's latency
	// tail (see docs/ledger.md). Passes that find more (catching up) follow each other at once.
	Linger time.Duration
	// Mode is how rows reach Postgres: copy (COPY) or insert (multi-row INSERT).
	Mode string
	// ClaimIdle: entries another consumer has had pending this long are claimed (XAUTOCLAIM).
	ClaimIdle time.Duration
	// Lease is how long a partition stays this persister's after it last read it.
	Lease time.Duration
	// Keep is how many persisted entries each stream keeps in Redis; older ones are trimmed.
	Keep int64
	// BackoffMax caps the wait between retries while Postgres fails.
	BackoffMax time.Duration
	// Timeout bounds one Postgres transaction.
	Timeout time.Duration
	// LagAlarm: readiness fails when more entries than this wait to be persisted.
	LagAlarm int64
	// SyncPoolsEvery: how often pool configuration is copied into Postgres.
	SyncPoolsEvery time.Duration
}

// DefaultPersistConfig is the persister's configuration when the environment sets nothing.
func DefaultPersistConfig() PersistConfig {
	return PersistConfig{
		Group:          "ledger",
		Batch:          2000,
		MaxRows:        50000,
		Interval:       100 * time.Millisecond,
		Linger:         20 * time.Millisecond,
		Mode:           ModeCopy,
		ClaimIdle:      15 * time.Second,
		Lease:          5 * time.Second,
		Keep:           5000,
		BackoffMax:     10 * time.Second,
		Timeout:        30 * time.Second,
		LagAlarm:       1000000,
		SyncPoolsEvery: 30 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c PersistConfig) Validate() error {
	switch {
	case c.Mode != ModeCopy && c.Mode != ModeInsert:
		return fmt.Errorf("FLASHHOLD_PERSIST_MODE must be copy or insert, got %q", c.Mode)
	case c.Group == "":
		return fmt.Errorf("FLASHHOLD_PERSIST_GROUP is empty")
	case c.Interval <= 0 || c.Lease <= 0 || c.Timeout <= 0 || c.BackoffMax <= 0:
		return fmt.Errorf("FLASHHOLD_PERSIST_INTERVAL, _LEASE, _TIMEOUT and _BACKOFF_MAX must be positive")
	case c.Linger < 0:
		return fmt.Errorf("FLASHHOLD_PERSIST_LINGER must not be negative, got %s", c.Linger)
	}
	return nil
}
