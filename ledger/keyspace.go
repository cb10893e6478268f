package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// Keyspace reads the settings the ledger recorded for the keyspace under prefix; ok is
// false when it recorded none.
func (s *Store) Keyspace(ctx context.Context, prefix string) (engine.Settings, bool, error) {
	var ks engine.Settings
	err := s.pool.QueryRow(ctx, `SELECT epoch, partitions, id_secret FROM keyspaces WHERE prefix = $1`, prefix).
		Scan(&ks.Epoch, &ks.Partitions, &ks.IDSecret)
	if errors.Is(err, pgx.ErrNoRows) {
		return ks, false, nil
	}
	if err != nil {
		return ks, false, fmt.Errorf("ledger: read keyspace %s: %w", prefix, err)
	}
	return ks, true, nil
}

// RecordKeyspace records a keyspace's settings, unless some are recorded already; it returns
// the recorded ones.
func (s *Store) RecordKeyspace(ctx context.Context, prefix string, ks engine.Settings) (engine.Settings, error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO keyspaces (prefix, epoch, partitions, id_secret) VALUES ($1, $2, $3, $4)
		ON CONFLICT (prefix) DO NOTHING`, prefix, ks.Epoch, ks.Partitions, ks.IDSecret); err != nil {
		return ks, fmt.Errorf("ledger: record keyspace %s: %w", prefix, err)
	}
	got, _, err := s.Keyspace(ctx, prefix)
	return got, err
}

// Alarm records an integrity alarm (partition -1: the whole keyspace).
func (s *Store) Alarm(ctx context.Context, partition int, seq int64, kind, detail string) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO integrity_alarms (partition, seq, kind, detail) VALUES ($1, $2, $3, $4)`,
		partition, seq, kind, detail); err != nil {
		return fmt.Errorf("ledger: record alarm: %w", err)
	}
	return nil
}

// Pools lists the pool configurations the ledger holds.
func (s *Store) Pools(ctx context.Context) ([]engine.PoolConfig, error) {
	rows, err := s.pool.Query(ctx, `SELECT location, sku, vendor_id, shards, low_stock, customer_limit, best_before, substitutes,
		  safety_stock, customer_window_ms, inventory_policy, backorder_limit, release_at
		FROM pools ORDER BY location, sku`)
	if err != nil {
		return nil, fmt.Errorf("ledger: read pools: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (engine.PoolConfig, error) {
		var p engine.PoolConfig
		err := row.Scan(&p.Location, &p.SKU, &p.Vendor, &p.Shards, &p.LowStock, &p.CustomerLimit, &p.BestBefore, &p.Substitutes,
			&p.SafetyStock, &p.CustomerWindow, &p.Policy, &p.BackorderLimit, &p.ReleaseAt)
		if len(p.Substitutes) == 0 {
			p.Substitutes = nil
		}
		return p, err
	})
}

// Guard watches that Redis still holds the keyspace the ledger knows: the first time, it
// records the keyspace's settings in the ledger; every check after, it compares Redis's
// epoch with them. A Redis that lost its data (restarted empty, or a replica promoted without
// it) is fenced whole, alarmed once (integrity_alarms, kind keyspace_lost), counted in
// flashhold_keyspace_lost and fails readiness until reconcile --repair restores it; then the
// engine adopts the restored settings. Without a ledger, the guard compares with the epoch
// the engine started with.
type Guard struct {
	e     *engine.Engine
	store *Store // nil: no ledger
	log   zerolog.Logger
	lost  prometheus.Gauge

	mu      sync.Mutex
	want    string // the epoch Redis must have
	alarmed bool
}

// NewGuard builds a guard of e's keyspace; store may be nil.
func NewGuard(e *engine.Engine, store *Store, log ...zerolog.Logger) *Guard {
	g := &Guard{e: e, store: store, log: zerolog.Nop(),
		lost: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashhold_keyspace_lost",
			Help: "1 while Redis is found without its data (restarted empty): writes are refused until reconcile --repair."})}
	if len(log) > 0 {
		g.log = log[0]
	}
	return g
}

// Register adds the guard's metric to reg.
func (g *Guard) Register(reg prometheus.Registerer) error { return reg.Register(g.lost) }

// Run checks every second until ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	return loop.Run(ctx, time.Second, 100*time.Millisecond, g.Check, func(err error) {
		if !errors.Is(err, engine.ErrKeyspaceLost) {
			g.log.Warn().Err(err).Msg("keyspace check failed")
		}
	})
}

// Check compares Redis's keyspace with the one the ledger knows, acting as Guard says; it
// returns engine.ErrKeyspaceLost while Redis lacks it (for readiness).
func (g *Guard) Check(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, err := g.e.KeyspaceSettings(ctx)
	if err != nil {
		return err
	}
	if g.want == "" {
		g.want = g.e.Epoch()
		if g.store != nil {
			rec := engine.Settings{Epoch: g.e.Epoch(), Partitions: g.e.Partitions()}
			if g.e.Config().IDSecret == "" {
				rec.IDSecret = cur.IDSecret
			}
			if cur.Epoch != g.e.Epoch() { // Redis moved under the engine already: record nothing from it
				rec.Epoch = ""
			}
			known, ok, err := g.store.Keyspace(ctx, g.e.Config().Prefix)
			if err != nil {
				return err
			}
			switch {
			case ok:
				g.want = known.Epoch
			case rec.Epoch != "":
				if known, err = g.store.RecordKeyspace(ctx, g.e.Config().Prefix, rec); err != nil {
					return err
				}
				g.want = known.Epoch
			}
		}
	}
	if cur.Epoch == g.want {
		if g.e.Epoch() != g.want || g.alarmed {
			if err := g.e.Adopt(ctx); err != nil {
				return err
			}
			g.log.Info().Str("epoch", g.want).Msg("keyspace restored: serving again")
		}
		g.alarmed = false
		g.lost.Set(0)
		return g.e.CheckKeyspace(ctx)
	}
	g.e.MarkLost()
	g.lost.Set(1)
	if err := g.e.RaiseLostFences(ctx); err != nil {
		return fmt.Errorf("%w (fencing it failed: %w)", engine.ErrKeyspaceLost, err)
	}
	if !g.alarmed {
		detail := fmt.Sprintf("keyspace %s: Redis holds epoch %q, the ledger knows %q: Redis lost its data; every partition is fenced until reconcile --repair",
			g.e.Config().Prefix, cur.Epoch, g.want)
		g.log.Error().Str("redis_epoch", cur.Epoch).Str("epoch", g.want).Msg("Redis lost its data: every partition fenced; run flashhold reconcile --repair")
		if g.store != nil {
			if err := g.store.Alarm(ctx, -1, 0, "keyspace_lost", detail); err != nil {
				return err
			}
		}
		g.alarmed = true
	}
	return engine.ErrKeyspaceLost
}

// Reservation is a hold part's RESERVED (or BACKORDERED) event in the ledger, and whether it
// was voided since.
type Reservation struct {
	Partition   int
	Part        string
	Qty         int64
	ExpiresAt   int64 // the event's reason, when it is a number (0 otherwise)
	TS          int64
	Voided      bool
	Backordered bool
}

// Reservations lists the hold parts reserved since sinceMs (unix ms), oldest first.
func (s *Store) Reservations(ctx context.Context, sinceMs int64) ([]Reservation, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.partition, r.hold, r.qty, r.reason, r.ts,
		  EXISTS (SELECT 1 FROM inventory_events v WHERE v.hold = r.hold AND v.partition = r.partition AND v.type = 'VOIDED'),
		  r.type = 'BACKORDERED'
		FROM inventory_events r WHERE r.type IN ('RESERVED', 'BACKORDERED') AND r.ts >= $1 ORDER BY r.ts`, sinceMs)
	if err != nil {
		return nil, fmt.Errorf("ledger: read reservations: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reservation, error) {
		var r Reservation
		var reason string
		err := row.Scan(&r.Partition, &r.Part, &r.Qty, &reason, &r.TS, &r.Voided, &r.Backordered)
		fmt.Sscan(reason, &r.ExpiresAt)
		return r, err
	})
}
