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
// machine and the usual alternatives do. It also says how the row-lock baseline's pool was
// sized.
func (b *bench) baselines(ctx context.Context) (map[string]Stats, *PoolChoice, error) {
	out := map[string]Stats{}
	d := b.opts.BaselineDuration

	// http_hello: the same request as a flash-sale reserve, to a handler that does nothing.
	op, stop, err := b.helloOp(ctx)
	if err != nil {
		return nil, nil, err
	}
	out[HTTPHello] = b.closedLoop(ctx, HTTPHello, d, op).summary()
	stop()

	choice, err := b.rowLockPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	if out[PostgresRowLock], err = b.rowLock(ctx, choice.Conns, d, PostgresRowLock); err != nil {
		return nil, nil, err
	}

	// redis_script: the reserve script once per reservation, no coalescing; then the engine
	// as flashhold runs it. Both in process, each on its own hot pool. Their ratio is a
	// target, so they take turns (see alternate).
	cfg := b.env.Engine
	cfg.Coalesce = false
	single, err := engine.New(ctx, b.env.Redis, cfg, engine.WithLogger(b.env.Log))
	if err != nil {
		return nil, nil, err
	}
	defer single.Close()
	names := []string{RedisScript, EngineInProcess}
	ops := make([]Op, len(names))
	for i, eng := range []*engine.Engine{single, b.eng} {
		pool := engine.PoolConfig{Location: "bench", SKU: "base-" + names[i], Vendor: "bench", Shards: b.opts.Shards}
		if err := b.makePools(ctx, []engine.PoolConfig{pool}, 1_000_000_000); err != nil {
			return nil, nil, err
		}
		keys := newKeys(names[i], b.opts.Clients)
		ops[i] = func(ctx context.Context, w int) (Outcome, Kind) {
			_, err := eng.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: pool.Location, SKU: pool.SKU, Qty: 1}},
				IdempotencyKey: string(keys.next(w)), TTL: holdTTL, Actor: "bench"})
			if err != nil {
				return Failed, Reserve
			}
			return OK, Reserve
		}
	}
	for i, st := range b.alternate(ctx, names, ops) {
		out[names[i]] = st
	}
	return out, choice, nil
}

// Rounds is how many turns each of the alternating baselines takes.
const Rounds = 4

// alternate drives ops (named names) in turns for the baseline duration each: Rounds rounds
// of a Rounds-th of it, each round in the reverse order of the one before (A B, B A, …), so
// that a slow spell of the shared machine, or a drift over the minute they take, falls on
// all of them alike rather than on whichever ran then. Each op's rounds are summarized
// together (merged).
func (b *bench) alternate(ctx context.Context, names []string, ops []Op) []Stats {
	runs := make([][]*Recording, len(ops))
	d := b.opts.BaselineDuration / Rounds
	for round := range Rounds {
		for k := range ops {
			i := k
			if round%2 == 1 {
				i = len(ops) - 1 - k
			}
			b.settle(ctx, 30*time.Second)
			label := names[i] + " " + strconv.Itoa(round+1) + "/" + strconv.Itoa(Rounds)
			runs[i] = append(runs[i], b.closedLoop(ctx, label, d, ops[i]))
		}
	}
	out := make([]Stats, len(ops))
	for i := range runs {
		out[i] = merged(runs[i]).summary()
	}
	return out
}

// maxRowLockConns is the largest pool the row-lock baseline probes.
const maxRowLockConns = 32

// rowLockPool picks the row-lock baseline's pool: the one --pg-conns names, or else the
// fastest of pools of 1, 2, 4, … connections (up to maxRowLockConns and to the clients),
// each driven by the same clients for a quarter of the baseline duration (200 ms to 2 s).
// On one hot row more connections mostly queue on its lock, and past a few they cost
// Postgres more than they add, so a fixed size would understate the alternative.
func (b *bench) rowLockPool(ctx context.Context) (*PoolChoice, error) {
	if b.opts.PGConns > 0 {
		return &PoolChoice{Conns: b.opts.PGConns}, nil
	}
	probe := min(max(b.opts.BaselineDuration/4, 200*time.Millisecond), 2*time.Second)
	choice := &PoolChoice{ProbeSeconds: probe.Seconds()}
	for n := 1; n <= min(maxRowLockConns, b.opts.Clients); n *= 2 {
		st, err := b.rowLock(ctx, n, probe, PostgresRowLock+" "+strconv.Itoa(n)+" conns")
		if err != nil {
			return nil, err
		}
		choice.Probed = append(choice.Probed, Probe{Conns: n, ThroughputRPS: st.ThroughputRPS})
		if choice.Conns == 0 || st.ThroughputRPS > choice.best() {
			choice.Conns = n
		}
	}
	return choice, nil
}

// rowLock drives the postgres_row_lock baseline for d through a pool of conns connections,
// on a table of its own: the usual single-row decrement on one hot row,
// UPDATE ... SET qty = qty - $1 WHERE id = $2 AND qty >= $1.
func (b *bench) rowLock(ctx context.Context, conns int, d time.Duration, label string) (Stats, error) {
	cfg := b.env.Postgres.Config().Copy()
	cfg.MaxConns = int32(conns)
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
	if err := warm(ctx, pool, conns); err != nil {
		return Stats{}, err
	}
	update := fmt.Sprintf("UPDATE %s SET qty = qty - $1 WHERE id = $2 AND qty >= $1", table)
	op := func(ctx context.Context, _ int) (Outcome, Kind) {
		tag, err := pool.Exec(ctx, update, 1, 1)
		switch {
		case err != nil:
			return Failed, Reserve
		case tag.RowsAffected() == 1:
			return OK, Reserve
		}
		return Refused, Reserve
	}
	return b.closedLoop(ctx, label, d, op).summary(), nil
}

// warm opens all n connections of pool before load starts, so that no run pays for
// connecting.
func warm(ctx context.Context, pool *pgxpool.Pool, n int) error {
	held := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		held = append(held, c)
	}
	return nil
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
