package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/engine"
)

// Baseline names.
const (
	HTTPHello       = "http_hello"
	PostgresRowLock = "postgres_row_lock"
	RedisScript     = "redis_script"
	EngineInProcess = "engine_in_process"
)

// baselines measures, with the same clients and load generator as the scenarios, what the
// machine and the usual alternatives do.
func (b *bench) baselines(ctx context.Context) (map[string]Stats, error) {
	out := map[string]Stats{}
	d := b.opts.BaselineDuration
	closed := func(name string, op Op) Stats {
		return b.drive(ctx, Load{Workers: b.opts.Clients, Duration: d, Progress: b.progress(name)}, op).summary()
	}

	// http_hello: the same request as a flash-sale reserve, to a handler that does nothing.
	op, stop, err := b.helloOp(ctx)
	if err != nil {
		return nil, err
	}
	out[HTTPHello] = closed(HTTPHello, op)
	stop()

	pg, err := b.rowLock(ctx, closed)
	if err != nil {
		return nil, err
	}
	out[PostgresRowLock] = pg

	// redis_script: the reserve script once per reservation, no coalescing; then the engine
	// as flashhold runs it. Both in process, each on its own hot pool.
	cfg := b.env.Engine
	cfg.Coalesce = false
	single, err := engine.New(ctx, b.env.Redis, cfg, engine.WithLogger(b.env.Log))
	if err != nil {
		return nil, err
	}
	defer single.Close()
	for _, x := range []struct {
		name string
		eng  *engine.Engine
	}{{RedisScript, single}, {EngineInProcess, b.eng}} {
		b.settle(ctx, 30*time.Second)
		pool := engine.PoolConfig{Location: "bench", SKU: "base-" + x.name, Vendor: "bench", Shards: b.opts.Shards}
		if err := b.makePools(ctx, []engine.PoolConfig{pool}, 1_000_000_000); err != nil {
			return nil, err
		}
		keys := newKeys(x.name, b.opts.Clients)
		out[x.name] = closed(x.name, func(ctx context.Context, w int) (Outcome, Kind) {
			_, err := x.eng.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: pool.Location, SKU: pool.SKU, Qty: 1}},
				IdempotencyKey: string(keys.next(w)), TTL: holdTTL, Actor: "bench"})
			if err != nil {
				return Failed, Reserve
			}
			return OK, Reserve
		})
	}
	return out, nil
}

// rowLock is the postgres_row_lock baseline: the usual single-row decrement on one hot row,
// UPDATE ... SET qty = qty - $1 WHERE id = $2 AND qty >= $1, through a pool of PGConns.
func (b *bench) rowLock(ctx context.Context, closed func(string, Op) Stats) (Stats, error) {
	cfg := b.env.Postgres.Config().Copy()
	cfg.MaxConns = int32(b.opts.PGConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return Stats{}, err
	}
	defer pool.Close()
	table := "bench_stock_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, qty bigint NOT NULL)", table)); err != nil {
		return Stats{}, err
	}
	defer pool.Exec(context.WithoutCancel(ctx), "DROP TABLE "+table)
	if _, err := pool.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1, 1000000000000)", table)); err != nil {
		return Stats{}, err
	}
	update := fmt.Sprintf("UPDATE %s SET qty = qty - $1 WHERE id = $2 AND qty >= $1", table)
	return closed(PostgresRowLock, func(ctx context.Context, _ int) (Outcome, Kind) {
		tag, err := pool.Exec(ctx, update, 1, 1)
		switch {
		case err != nil:
			return Failed, Reserve
		case tag.RowsAffected() == 1:
			return OK, Reserve
		}
		return Refused, Reserve
	}), nil
}

// helloOp sends the flash-sale reserve request to a fasthttp handler that does nothing (the
// HTTP ceiling of this machine, and the floor of its latency). stop closes client and server.
func (b *bench) helloOp(ctx context.Context) (Op, func(), error) {
	addr, stopServer, err := helloServer(ctx)
	if err != nil {
		return nil, nil, err
	}
	hello := newClient(addr, "hello", b.opts.Clients)
	hk := newKeys("hello", b.opts.Clients)
	body := reserveBody("bench", "flash", holdTTL)
	op := func(_ context.Context, w int) (Outcome, Kind) {
		status, _, err := hello.post(w, "/v1/holds", body, hk.next(w))
		if err != nil || status != 201 {
			return Failed, Reserve
		}
		return OK, Reserve
	}
	return op, func() { hello.close(); stopServer() }, nil
}
