package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ShardCount is one shard's counters.
type ShardCount struct {
	Shard     int   `json:"shard"`
	Partition int   `json:"partition"`
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
	Committed int64 `json:"committed"`
	// Backordered is the units the shard owes backordered parts (see PoolConfig.Policy).
	Backordered int64 `json:"backordered,omitempty"`
}

// Stock statuses reported by Availability.
const (
	InStock    = "IN_STOCK"
	Limited    = "LIMITED"
	OutOfStock = "OUT_OF_STOCK"
)

// Availability is a pool's stock, summed over its shards.
type Availability struct {
	PoolConfig
	// Available is what shoppers can hold: the units neither held, sold nor kept back as
	// safety stock.
	Available int64 `json:"available"`
	// Buffered is the safety stock on hand: units neither held nor sold that no hold may
	// take (at most the pool's SafetyStock). Available+Buffered is the counters' available.
	Buffered int64 `json:"buffered"`
	// Allotted is units on hand that backorders waiting in the queue take when enough have
	// come (fewer than the first of them needs): no new hold takes them.
	Allotted int64 `json:"allotted"`
	// OnHand is every unit not sold: available, buffered, allotted and held.
	OnHand int64 `json:"on_hand"`
	// Backordered is the units owed to backordered parts, open or sold; Backorderable the
	// units shoppers can still get backordered now (the policy's limit less Backordered).
	Backordered   int64  `json:"backordered"`
	Backorderable int64  `json:"backorderable"`
	Held          int64  `json:"held"`
	Committed     int64  `json:"committed"`
	Status        string `json:"status"`
	// Shards are the shards' counters as kept (their available counts include the buffer).
	Shards []ShardCount `json:"shards"`
}

// Unsold is the units neither held nor sold, safety stock and units allotted to backorders
// included: what the vendor's stock counts and changes (SET, guardrails) work on.
func (a *Availability) Unsold() int64 { return a.Available + a.Buffered + a.Allotted }

// Sellable is what a shopper can get a hold of now: from stock, or backordered.
func (a *Availability) Sellable() int64 { return a.Available + a.Backorderable }

// shardCounts reads every shard of a pool in one pipeline (each shard is in its own
// partition, so the reads are not one atomic cut; each shard's three counters are).
func (e *Engine) shardCounts(ctx context.Context, p *pool) ([]ShardCount, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := e.queueCounts(ctx, pipe, p)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read shards of %s: %w", p.Key(), redisErr(err))
	}
	return countsOf(p, cmds), nil
}

// queueCounts queues on pipe the reads of every shard's counters of p (each one atomic).
func (e *Engine) queueCounts(ctx context.Context, pipe redis.Pipeliner, p *pool) []*redis.SliceCmd {
	cmds := make([]*redis.SliceCmd, p.Shards)
	for s, part := range p.partitions {
		f := shardField(p.Location, p.SKU, s)
		cmds[s] = pipe.HMGet(ctx, e.ks.stockKey(part), f, f+"|h", f+"|c", f+"|b")
	}
	return cmds
}

// countsOf reads what queueCounts queued.
func countsOf(p *pool, cmds []*redis.SliceCmd) []ShardCount {
	out := make([]ShardCount, len(cmds))
	for s, cmd := range cmds {
		v := cmd.Val()
		out[s] = ShardCount{Shard: s, Partition: p.partitions[s], Available: toInt(v[0]), Held: toInt(v[1]), Committed: toInt(v[2]),
			Backordered: toInt(v[3])}
	}
	return out
}

func toInt(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// availability is Availability without its span.
func (e *Engine) availability(ctx context.Context, location, sku string) (*Availability, error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return nil, err
	}
	shards, err := e.shardCounts(ctx, p)
	if err != nil {
		return nil, err
	}
	return summarize(p.PoolConfig, shards, e.nowMs()), nil
}

// Availabilities reads many pools in one pipeline.
func (e *Engine) Availabilities(ctx context.Context, configs []PoolConfig) ([]*Availability, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	pools := make([]*pool, len(configs))
	cmds := make([][]*redis.SliceCmd, len(configs))
	for i, c := range configs {
		pools[i] = e.newPool(c)
		cmds[i] = e.queueCounts(ctx, pipe, pools[i])
	}
	if len(configs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read availability: %w", redisErr(err))
		}
	}
	out := make([]*Availability, len(configs))
	for i, p := range pools {
		out[i] = summarize(p.PoolConfig, countsOf(p, cmds[i]), e.nowMs())
	}
	return out, nil
}

func summarize(c PoolConfig, shards []ShardCount, now int64) *Availability {
	a := &Availability{PoolConfig: c, Shards: shards}
	for _, s := range shards {
		kept := min(c.SafetyStock, max(s.Available, 0)) // only a pool of one shard has a safety stock
		if s.Backordered > 0 {
			kept = max(s.Available, 0) // all waiting backorders' (a pool of one shard has a queue)
			a.Allotted += kept
		} else {
			a.Buffered += kept
		}
		a.Available += s.Available - kept
		a.Held += s.Held
		a.Committed += s.Committed
		a.Backordered += s.Backordered
	}
	a.OnHand = a.Available + a.Buffered + a.Allotted + a.Held
	if c.Backorders(now) {
		a.Backorderable = max(c.BackorderLimit-a.Backordered, 0)
	}
	switch {
	case a.Available <= 0:
		a.Status = OutOfStock
	case a.Available < c.LowStock:
		a.Status = Limited
	default:
		a.Status = InStock
	}
	return a
}

// SnapshotHold is an open hold part as a snapshot sees it.
type SnapshotHold struct {
	Part      string `json:"part"`
	Location  string `json:"location"`
	SKU       string `json:"sku"`
	Shard     int    `json:"shard"`
	Qty       int64  `json:"qty"`
	ExpiresAt int64  `json:"expires_at_ms"`
	Customer  string `json:"customer,omitempty"`
	// Record is the part as Redis keeps it.
	Record HoldRecord `json:"-"`
}

// PendingTransfer is a transfer taken out of a shard and not yet settled.
type PendingTransfer struct {
	ID            string `json:"id"`
	Location      string `json:"location"`
	SKU           string `json:"sku"`
	FromShard     int    `json:"from_shard"`
	Qty           int64  `json:"qty"`
	ToPartition   int    `json:"to_partition"`
	ToShard       int    `json:"to_shard"`
	TakenAt       int64  `json:"taken_at_ms"`
	FromPartition int    `json:"from_partition"`
}

// Snapshot is one partition read atomically: the consistent cut reconciliation uses.
type Snapshot struct {
	Partition int    `json:"partition"`
	Seq       int64  `json:"seq"`
	Head      string `json:"head"`
	Fence     string `json:"fence,omitempty"`
	// Shards maps each shard to its counters.
	Shards    map[ShardKey]ShardCount `json:"-"`
	Holds     []SnapshotHold          `json:"holds"`
	Transfers []PendingTransfer       `json:"transfers"`
	// Queues maps each shard with backorders to them, in the order they are filled.
	Queues map[ShardKey][]Backorder `json:"-"`
}

// Snapshot reads partition p's counters, open holds, pending transfers, seq and chain head
// in one atomic script call.
func (e *Engine) Snapshot(ctx context.Context, p int) (*Snapshot, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return nil, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	r, err := e.run(ctx, "snapshot", p, e.nowMs())
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Partition: p, Seq: r.int(0), Head: r.str(1), Fence: r.str(2), Shards: map[ShardKey]ShardCount{},
		Queues: map[ShardKey][]Backorder{}}
	stock, _ := r[3].([]any)
	for i := 0; i+1 < len(stock); i += 2 {
		f, _ := stock[i].(string)
		n := toInt(stock[i+1])
		parts := strings.Split(f, "|")
		key := ShardKey{Location: parts[0], SKU: parts[1]}
		key.Shard, _ = strconv.Atoi(parts[2])
		sc := snap.Shards[key]
		sc.Shard = key.Shard
		sc.Partition = p
		switch {
		case len(parts) == 3:
			sc.Available = n
		case parts[3] == "h":
			sc.Held = n
		case parts[3] == "c":
			sc.Committed = n
		case parts[3] == "b":
			sc.Backordered = n
		}
		snap.Shards[key] = sc
	}
	holds, _ := r[4].([]any)
	for i := 0; i+1 < len(holds); i += 2 {
		id, _ := holds[i].(string)
		rec, _ := holds[i+1].(string)
		if f, ok := strings.CutPrefix(id, "q:"); ok {
			k, q, err := parseQueue(f, rec)
			if err != nil {
				return nil, fmt.Errorf("partition %d: %w", p, err)
			}
			snap.Queues[k] = q
			continue
		}
		if strings.HasPrefix(id, "d:") || strings.HasPrefix(id, "i:") {
			continue // tombstones and idempotency records
		}
		hr, ok := decodeHoldRecord(rec)
		if !ok {
			return nil, fmt.Errorf("partition %d: hold part %s has a malformed record %q", p, id, rec)
		}
		snap.Holds = append(snap.Holds, SnapshotHold{Part: id, Location: hr.Location, SKU: hr.SKU, Shard: hr.Shard, Qty: hr.Qty,
			ExpiresAt: hr.ExpiresAt, Customer: hr.Customer, Record: hr})
	}
	xfer, _ := r[5].([]any)
	for i := 0; i+1 < len(xfer); i += 2 {
		id, _ := xfer[i].(string)
		v, _ := xfer[i+1].(string)
		if t, ok := parsePendingTransfer(p, id, v); ok {
			snap.Transfers = append(snap.Transfers, t)
		}
	}
	return snap, nil
}

// holdScan bounds the hold parts PoolHolds reads in each partition, earliest expiry first.
const holdScan = 1000

// PoolHolds is what holds a pool's units back beside its counters.
type PoolHolds struct {
	// Partitions are those its shards live in, Fences their fence reasons ("" when not
	// fenced), by shard.
	Partitions []int
	Fences     []string
	// NextExpiry (ms) is the earliest expiry of a hold part on the pool among the first
	// holdScan parts of each partition's expiry index; 0 when none was found there.
	NextExpiry int64
}

// Holds reads the fences of a pool's partitions and when its first hold part expires.
func (e *Engine) Holds(ctx context.Context, location, sku string) (*PoolHolds, error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	fences := make([]*redis.StringCmd, p.Shards)
	exps := make([]*redis.StringSliceCmd, p.Shards)
	for s, part := range p.partitions {
		keys := e.ks.partition(part)
		fences[s] = pipe.HGet(ctx, keys[5], "fence")
		exps[s] = pipe.ZRange(ctx, keys[2], 0, holdScan-1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read holds of %s: %w", p.Key(), redisErr(err))
	}
	out := &PoolHolds{Partitions: p.partitions, Fences: make([]string, p.Shards)}
	pipe = e.rdb.Pipeline()
	recs := make([]*redis.SliceCmd, p.Shards)
	for s, part := range p.partitions {
		out.Fences[s] = fences[s].Val()
		if parts := exps[s].Val(); len(parts) > 0 {
			recs[s] = pipe.HMGet(ctx, e.ks.partition(part)[1], parts...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read holds of %s: %w", p.Key(), redisErr(err))
	}
	for _, cmd := range recs {
		if cmd == nil {
			continue
		}
		for _, v := range cmd.Val() {
			raw, _ := v.(string)
			h, ok := decodeHoldRecord(raw)
			if ok && h.Location == location && h.SKU == sku {
				if out.NextExpiry == 0 || h.ExpiresAt < out.NextExpiry {
					out.NextExpiry = h.ExpiresAt
				}
				break // the index is in expiry order: the first is this shard's earliest
			}
		}
	}
	return out, nil
}

// parseQueue reads a shard's backorder queue, field f ("loc|sku|shard") holding v (see
// queue_push in lib.lua).
func parseQueue(f, v string) (ShardKey, []Backorder, error) {
	parts := strings.Split(f, "|")
	if len(parts) != 3 {
		return ShardKey{}, nil, fmt.Errorf("backorder queue field %q", f)
	}
	k := ShardKey{Location: parts[0], SKU: parts[1]}
	var err error
	if k.Shard, err = strconv.Atoi(parts[2]); err != nil {
		return k, nil, fmt.Errorf("backorder queue field %q", f)
	}
	var q []Backorder
	for _, e := range strings.Fields(v) {
		b := strings.Split(e, ":")
		n, err := strconv.ParseInt(b[min(1, len(b)-1)], 10, 64)
		if len(b) != 3 || err != nil || (b[2] != "o" && b[2] != "s") {
			return k, nil, fmt.Errorf("backorder queue of %s: malformed entry %q", f, e)
		}
		q = append(q, Backorder{Part: b[0], Qty: n, Sold: b[2] == "s"})
	}
	return k, q, nil
}

// encodeQueue is a queue's Redis form.
func encodeQueue(q []Backorder) string {
	s := make([]string, len(q))
	for i, b := range q {
		state := "o"
		if b.Sold {
			state = "s"
		}
		s[i] = b.Part + ":" + strconv.FormatInt(b.Qty, 10) + ":" + state
	}
	return strings.Join(s, " ")
}

// Owed reads, for each shard of a pool, the units owed to backorders and its partition's seq
// when it was read (the two in one atomic step per shard): the owed count includes the
// changes of every event up to that seq and of none after it.
func (e *Engine) Owed(ctx context.Context, location, sku string) (owed, seq []int64, err error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.TxPipeline()
	owedCmds := make([]*redis.StringCmd, p.Shards)
	seqCmds := make([]*redis.StringCmd, p.Shards)
	for s, part := range p.partitions {
		owedCmds[s] = pipe.HGet(ctx, e.ks.stockKey(part), shardField(location, sku, s)+"|b")
		seqCmds[s] = pipe.HGet(ctx, e.ks.partition(part)[5], "seq")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("read backorders: %w", redisErr(err))
	}
	owed, seq = make([]int64, p.Shards), make([]int64, p.Shards)
	for s := range owed {
		owed[s], _ = owedCmds[s].Int64()
		seq[s], _ = seqCmds[s].Int64()
	}
	return owed, seq, nil
}
