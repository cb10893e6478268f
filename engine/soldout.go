package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The sold-out memory lets a stampede on an empty pool be refused without running a script,
// and without ever refusing while a unit could be had.
//
// Every shard counts how often units came back to it ("|r": release, expiry, restock,
// transfer in, ...). When a pool is found short, each shard's available units, units in
// flight to other shards ("|t") and that count are remembered. A later request for more than
// the remembered total is refused after one read of the counts of rises: if no shard's count
// moved, no shard gained a unit since (units only leave, or move between shards without
// changing available + in flight), so at the moment of that read the pool still had no more
// than it had. Holds that expire come back at their expiry, not when the sweeper gets to
// them, so the memory ends at the earliest expiry of the pool's partitions. A rise on any
// instance is seen by every instance's next read.

// shardReading is one shard read at one moment.
type shardReading struct {
	avail, rises, inFlight int64
	nextExpiry             int64 // the partition's earliest hold expiry (ms), -1: none
	fenced                 bool  // its partition is fenced: nothing moves in or out
}

// shortPool is what the memory keeps of a pool found short.
type shortPool struct {
	shards []shardReading
	total  int64     // available and in flight, over the shards, when read
	until  time.Time // the memory's end
}

// rememberShort records that a request for more than qty... found the pool with these
// readings (one per shard, in shard order).
func (e *Engine) rememberShort(p *pool, qty int64, shards []shardReading) {
	if e.cfg.SoldOutMemory <= 0 || len(shards) != p.Shards {
		return
	}
	m := &shortPool{shards: shards, until: e.now().Add(e.cfg.SoldOutMemory)}
	for _, s := range shards {
		m.total += s.avail + s.inFlight
		if s.nextExpiry >= 0 {
			if at := time.UnixMilli(s.nextExpiry); at.Before(m.until) {
				m.until = at
			}
		}
	}
	if m.total < qty {
		e.soldOut.Store(p.Key(), m)
	}
}

func (e *Engine) forgetSoldOut(k PoolKey) { e.soldOut.Delete(k) }

// fromSoldOut answers a one-item request from the sold-out memory when it can: done reports
// whether it did. It reads the pool's counts of rises and the request's key record in one
// round trip; if the key was used before, the path that knows its answer gives it. A proven
// refusal is recorded in the key record before it is given.
func (e *Engine) fromSoldOut(ctx context.Context, rs *reservation) (*Hold, error, bool) {
	p, qty := rs.pools[0], rs.req.Items[0].Qty
	v, ok := e.soldOut.Load(p.Key())
	if !ok {
		return nil, nil, false
	}
	m := v.(*shortPool)
	if !e.now().Before(m.until) || qty <= m.total {
		return nil, nil, false
	}
	rec := redis.NewStringCmd(ctx, "get", rs.record)
	rises := e.risesCmds(ctx, p)
	if err := e.plain(ctx, append([]redis.Cmder{rec}, rises...)...); err != nil {
		return nil, err, true
	}
	if err := nativeErr(append([]redis.Cmder{rec}, rises...)...); err != nil {
		return nil, err, true
	}
	if rec.Val() != "" {
		return e.followRecord(ctx, rs, rec.Val())
	}
	for s, c := range rises {
		n, _ := strconv.ParseInt(c.(*redis.StringCmd).Val(), 10, 64)
		if n != m.shards[s].rises {
			e.forgetSoldOut(p.Key())
			return nil, nil, false
		}
	}
	// Proven: when the rises were read, the pool had at most m.total units.
	refused := refusedRecord(rs.fp, "INSUFFICIENT", m.total, 0)
	set := redis.NewStringCmd(ctx, "set", rs.record, refused, "nx", "get", "px", e.refusalKeep(rs).Milliseconds())
	if err := e.plain(ctx, set); err != nil {
		return nil, err, true
	}
	if err := nativeErr(set); err != nil {
		return nil, err, true
	}
	if prior := set.Val(); prior != "" {
		return e.followRecord(ctx, rs, prior)
	}
	e.stats.SoldOutFast.Add(1)
	return nil, e.refusal(rs, 0, "INSUFFICIENT", m.total), true
}

// followRecord answers a one-item request whose key record exists: a refusal or an answer it
// holds directly, otherwise the path that wrote it.
func (e *Engine) followRecord(ctx context.Context, rs *reservation, rec string) (*Hold, error, bool) {
	f := strings.Split(rec, "|")
	if f[0] != rs.fp && f[0] != anyRequest {
		return nil, ErrIdempotencyMismatch, true
	}
	switch {
	case len(f) == 5 && f[1] == "X":
		n, _ := strconv.ParseInt(f[3], 10, 64)
		line, _ := strconv.Atoi(f[4])
		if line < 0 || line >= len(rs.pools) {
			line = 0
		}
		return nil, e.refusal(rs, line, f[2], n), true
	case len(f) == 3 && f[1] == "A":
		h, err := e.decodeAnswer(f[2], rs)
		return h, err, true
	case f[1] == "P":
		h, err := e.slowPath(ctx, rs)
		return h, err, true
	}
	return nil, nil, false // "F": the fast path finds its part
}

// risesCmds reads every shard's count of rises.
func (e *Engine) risesCmds(ctx context.Context, p *pool) []redis.Cmder {
	cmds := make([]redis.Cmder, p.Shards)
	for s, part := range p.partitions {
		cmds[s] = redis.NewStringCmd(ctx, "hget", e.ks.stockKey(part), shardField(p.Location, p.SKU, s)+"|r")
	}
	return cmds
}

// readShards reads every shard of a pool (available, rises, in flight, and its partition's
// next expiry) in one round trip; each shard's values are one atomic read.
func (e *Engine) readShards(ctx context.Context, p *pool) ([]shardReading, error) {
	counts := make([]*redis.SliceCmd, p.Shards)
	next := make([]*redis.ZSliceCmd, p.Shards)
	fences := make([]*redis.StringCmd, p.Shards)
	cmds := make([]redis.Cmder, 0, 3*p.Shards)
	for s, part := range p.partitions {
		f := shardField(p.Location, p.SKU, s)
		counts[s] = redis.NewSliceCmd(ctx, "hmget", e.ks.stockKey(part), f, f+"|r", f+"|t", f+"|b")
		next[s] = redis.NewZSliceCmd(ctx, "zrange", e.ks.partition(part)[2], 0, 0, "withscores")
		fences[s] = redis.NewStringCmd(ctx, "hget", e.ks.partition(part)[5], "fence")
		cmds = append(cmds, counts[s], next[s], fences[s])
	}
	if err := e.plain(ctx, cmds...); err != nil {
		return nil, err
	}
	if err := nativeErr(cmds...); err != nil {
		return nil, err
	}
	out := make([]shardReading, p.Shards)
	for s := range out {
		v := counts[s].Val()
		if v[0] == nil {
			return nil, e.noShard(ctx, fmt.Sprintf("%s has no shard %d in Redis", p.Key(), s))
		}
		// What a hold could take: the units above the safety stock (a pool of one shard's), and
		// none while backorders wait there (whatever the pool's policy is now).
		out[s] = shardReading{avail: max(toInt(v[0])-p.SafetyStock, 0), rises: toInt(v[1]), inFlight: toInt(v[2]), nextExpiry: -1,
			fenced: fences[s].Val() != ""}
		if toInt(v[3]) > 0 {
			out[s].avail = 0
		}
		if z := next[s].Val(); len(z) > 0 {
			out[s].nextExpiry = int64(z[0].Score)
		}
	}
	return out, nil
}

// provenShort confirms that a pool read as readings (before) had at most their total units
// at one moment since: it reads the counts of rises again and reports whether none moved
// and no hold of the pool's partitions was due. The memory keeps what it proved.
func (e *Engine) provenShort(ctx context.Context, p *pool, qty int64, readings []shardReading) (bool, error) {
	now := e.nowMs()
	for _, r := range readings {
		if r.nextExpiry >= 0 && r.nextExpiry <= now {
			return false, nil // due holds: units the next reserve may reclaim
		}
	}
	rises := e.risesCmds(ctx, p)
	if err := e.plain(ctx, rises...); err != nil {
		return false, err
	}
	if err := nativeErr(rises...); err != nil {
		return false, err
	}
	for s, c := range rises {
		n, err := c.(*redis.StringCmd).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		if n != readings[s].rises {
			return false, nil
		}
	}
	e.rememberShort(p, qty, readings)
	return true, nil
}
