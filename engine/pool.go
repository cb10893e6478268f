package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// PoolKey names a pool: the stock of one SKU at one location.
type PoolKey struct {
	Location string `json:"location"`
	SKU      string `json:"sku"`
}

func (k PoolKey) String() string { return k.Location + "|" + k.SKU }

// PoolConfig is a pool's durable configuration.
type PoolConfig struct {
	Location string `json:"location"`
	SKU      string `json:"sku"`
	// Vendor owns the location; vendor API keys see only their own pools.
	Vendor string `json:"vendor"`
	// Shards is the number of sub-counters (1 for most pools, 4-64 for hot SKUs). Fixed at creation.
	Shards int `json:"shards"`
	// LowStock: availability below this is reported LIMITED (0: never).
	LowStock int64 `json:"low_stock"`
	// CustomerLimit caps the units one customer may hold or buy from this pool (0: none).
	CustomerLimit int64 `json:"customer_limit"`
	// CustomerWindow (ms; 0: for good) makes the limit one over a sliding window: units held
	// now and units sold in the last CustomerWindow count against it.
	CustomerWindow int64 `json:"customer_window_ms,omitempty"`
	// BestBefore (unix ms, 0: not perishable): after it, remaining stock is written off.
	BestBefore int64 `json:"best_before,omitempty"`
	// SafetyStock is a buffer of units never held or sold (pools of one shard only: shards
	// that each kept a share could not keep the pool's whole buffer once their counts drift
	// apart). The units are on hand, not available; lowering it makes them available at once.
	SafetyStock int64 `json:"safety_stock,omitempty"`
	// Substitutes: SKUs at the same location a shopper may take instead, in order (see
	// allocate.go): offered when a hold is refused for stock, held instead on request.
	Substitutes []string `json:"substitutes,omitempty"`
	// Policy says what a hold beyond stock gets: PolicyDeny (""), refused; PolicyBackorder,
	// granted as backordered while the pool's backordered units stay within BackorderLimit;
	// PolicyPreorder, the same until ReleaseAt (unix ms), refused after it. Backordered
	// parts are filled first come, first served as units come (pools of one shard only: one
	// queue keeps the order).
	Policy         string `json:"inventory_policy,omitempty"`
	BackorderLimit int64  `json:"backorder_limit,omitempty"`
	ReleaseAt      int64  `json:"release_at,omitempty"`
}

// Inventory policies (PoolConfig.Policy).
const (
	PolicyDeny      = "deny"
	PolicyBackorder = "backorder"
	PolicyPreorder  = "preorder"
)

// queued reports whether the pool has an inventory policy: a backorder queue may keep its
// units for earlier backorders, so only a reserve call can tell what a hold gets.
func (c PoolConfig) queued() bool { return c.Policy != "" && c.Policy != PolicyDeny }

// Backorders reports whether the pool takes backorders at now (unix ms).
func (c PoolConfig) Backorders(now int64) bool {
	return c.Policy == PolicyBackorder || c.Policy == PolicyPreorder && now < c.ReleaseAt
}

// backorderArg is what reserve.lua is told of the pool's backorders (see read_req): "0" none,
// "q" none new (a pool with a policy keeps its queue's order), or the limit.
func (c PoolConfig) backorderArg(now int64, allowed bool) string {
	switch {
	case c.Policy == "" || c.Policy == PolicyDeny:
		return "0"
	case allowed && c.Backorders(now):
		return strconv.FormatInt(c.BackorderLimit, 10)
	}
	return "q"
}

// MaxSubstitutes bounds a pool's list of substitutes.
const MaxSubstitutes = 10

// maxCustomerWindow bounds the window of a per-customer limit (ms).
const maxCustomerWindow = 366 * 24 * 3600 * 1000

// maxSafetyStock bounds a pool's safety stock.
const maxSafetyStock = 1_000_000_000

// Key returns the pool's key.
func (c PoolConfig) Key() PoolKey { return PoolKey{c.Location, c.SKU} }

func validatePoolKey(location, sku string) error {
	if !idPattern.MatchString(location) {
		return invalid("location", "must match %s", idPattern)
	}
	if !idPattern.MatchString(sku) {
		return invalid("sku", "must match %s", idPattern)
	}
	return nil
}

func (e *Engine) validatePoolConfig(c PoolConfig) error {
	if err := validatePoolKey(c.Location, c.SKU); err != nil {
		return err
	}
	switch {
	case !idPattern.MatchString(c.Vendor):
		return invalid("vendor", "must match %s", idPattern)
	case c.Shards < 1 || c.Shards > MaxShards || c.Shards > e.cfg.Partitions:
		return invalid("shards", "must be 1..%d (and at most the partition count, %d)", MaxShards, e.cfg.Partitions)
	case c.LowStock < 0:
		return invalid("low_stock", "must not be negative")
	case c.CustomerLimit < 0:
		return invalid("customer_limit", "must not be negative")
	case c.CustomerWindow < 0 || c.CustomerWindow > maxCustomerWindow:
		return invalid("customer_window_ms", "must be 0..%d (366 days)", maxCustomerWindow)
	case c.CustomerWindow > 0 && c.CustomerLimit == 0:
		return invalid("customer_window_ms", "a window needs a customer_limit")
	case c.BestBefore < 0:
		return invalid("best_before", "must not be negative")
	case c.SafetyStock < 0 || c.SafetyStock > maxSafetyStock:
		return invalid("safety_stock", "must be 0..%d", maxSafetyStock)
	case c.SafetyStock > 0 && c.Shards > 1:
		return invalid("safety_stock", "needs a pool of one shard (this one has %d): shards would each keep a share, and drift apart", c.Shards)
	case c.Policy != "" && c.Policy != PolicyDeny && c.Policy != PolicyBackorder && c.Policy != PolicyPreorder:
		return invalid("inventory_policy", "must be deny, backorder or preorder")
	case (c.Policy == PolicyBackorder || c.Policy == PolicyPreorder) && (c.BackorderLimit < 1 || c.BackorderLimit > maxSafetyStock):
		return invalid("backorder_limit", "must be 1..%d with inventory_policy %s", maxSafetyStock, c.Policy)
	case c.BackorderLimit != 0 && c.Policy != PolicyBackorder && c.Policy != PolicyPreorder:
		return invalid("backorder_limit", "needs inventory_policy backorder or preorder")
	case c.Policy == PolicyPreorder && c.ReleaseAt <= 0:
		return invalid("release_at", "a preorder needs its release time (unix ms)")
	case c.ReleaseAt != 0 && c.Policy != PolicyPreorder:
		return invalid("release_at", "needs inventory_policy preorder")
	case c.BackorderLimit > 0 && c.Shards > 1:
		return invalid("inventory_policy", "needs a pool of one shard (this one has %d): one queue keeps backorders in order", c.Shards)
	case c.BackorderLimit > 0 && c.SafetyStock > 0:
		return invalid("inventory_policy", "a pool with a safety stock takes no backorders")
	case len(c.Substitutes) > MaxSubstitutes:
		return invalid("substitutes", "at most %d", MaxSubstitutes)
	}
	seen := map[string]bool{}
	for i, sku := range c.Substitutes {
		field := fmt.Sprintf("substitutes[%d]", i)
		switch {
		case !idPattern.MatchString(sku):
			return invalid(field, "must match %s", idPattern)
		case sku == c.SKU:
			return invalid(field, "%s names the pool itself", sku)
		case seen[sku]:
			return invalid(field, "%s is listed twice", sku)
		}
		seen[sku] = true
	}
	return nil
}

// checkSubstitutes refuses substitutes of c that are no pool at its location, or that lead
// back to c through the substitutes of the substitutes (a loop).
func (e *Engine) checkSubstitutes(ctx context.Context, c PoolConfig) error {
	next := map[string][]string{c.SKU: c.Substitutes}
	todo := slices.Clone(c.Substitutes)
	for len(todo) > 0 {
		var keys []string
		for _, sku := range todo {
			if _, done := next[sku]; !done {
				keys = append(keys, PoolKey{c.Location, sku}.String())
			}
		}
		todo = nil
		if len(keys) == 0 {
			break
		}
		lctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
		configs, err := e.loadPools(lctx, keys)
		cancel()
		if err != nil {
			return err
		}
		for _, sc := range configs {
			next[sc.SKU] = sc.Substitutes
			todo = append(todo, sc.Substitutes...)
		}
		if len(next) > 1000 {
			break // far beyond any real chain; what is there has no loop back so far
		}
	}
	for i, sku := range c.Substitutes {
		if _, ok := next[sku]; !ok {
			return invalid(fmt.Sprintf("substitutes[%d]", i), "there is no pool %s at %s", sku, c.Location)
		}
	}
	// A loop through c: c reachable from one of its substitutes.
	seen := map[string]bool{}
	stack := slices.Clone(c.Substitutes)
	for len(stack) > 0 {
		sku := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if sku == c.SKU {
			return invalid("substitutes", "the substitutes of %s lead back to it (a loop)", c.SKU)
		}
		if !seen[sku] {
			seen[sku] = true
			stack = append(stack, next[sku]...)
		}
	}
	return nil
}

// pool is a cached pool configuration with the partition of each shard.
type pool struct {
	PoolConfig
	partitions []int
	loaded     time.Time
}

func (e *Engine) newPool(c PoolConfig) *pool {
	p := &pool{PoolConfig: c, partitions: make([]int, c.Shards), loaded: e.now()}
	base := int(poolHash(c.Location, c.SKU) % uint32(e.cfg.Partitions))
	for s := range p.partitions {
		p.partitions[s] = (base + s) % e.cfg.Partitions
	}
	return p
}

// PartitionOf returns the partition that holds shard s of a pool.
func (e *Engine) PartitionOf(location, sku string, shard int) int {
	return int((poolHash(location, sku)%uint32(e.cfg.Partitions))+uint32(shard)) % e.cfg.Partitions
}

// CreatePool registers a pool, or updates an existing pool's threshold, limit and best-before
// date. Its shards start at zero units: stock arrives through Adjust (RESTOCK or SET). The
// shard count of an existing pool cannot change.
func (e *Engine) CreatePool(ctx context.Context, c PoolConfig, actor string) error {
	if err := e.validatePoolConfig(c); err != nil {
		return err
	}
	if len(c.Substitutes) > 0 {
		if err := e.checkSubstitutes(ctx, c); err != nil {
			return err
		}
	}
	old, err := e.loadPool(ctx, c.Key())
	switch {
	case err == nil:
		if old.Shards != c.Shards {
			return invalid("shards", "pool %s has %d shards; the shard count cannot change", c.Key(), old.Shards)
		}
		if old.Vendor != c.Vendor {
			return invalid("vendor", "pool %s belongs to vendor %s", c.Key(), old.Vendor)
		}
		if old.queued() {
			// Backorders placed under the old policy stay owed: a limit (or a policy that takes
			// none) below them is refused. One placed after this read is still filled; the
			// new limit then only keeps new backorders out until the count is below it.
			counts, err := e.shardCounts(ctx, e.newPool(old))
			if err != nil {
				return err
			}
			var owed int64
			for _, s := range counts {
				owed += s.Backordered
			}
			if owed > c.BackorderLimit {
				return invalid("backorder_limit", "%d units of pool %s are backordered; the limit cannot go below them (and the policy cannot stop taking backorders) until they are filled or given back", owed, c.Key())
			}
		}
	case !errors.Is(err, ErrUnknownPool):
		return err
	}
	p := e.newPool(c)
	now := e.nowMs()
	for s, part := range p.partitions {
		r, err := e.run(ctx, "adjust", part, now, c.Location, c.SKU, s, "CREATE", 0,
			"", "", actor, "", e.cfg.IdempotencyTTL.Milliseconds())
		if err != nil {
			return err
		}
		if r.code() == "FENCED" {
			return fencedErr(part, r)
		}
	}
	raw, _ := json.Marshal(c)
	ctx2, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	if err := e.rdb.HSet(ctx2, e.ks.poolsKey(), c.Key().String(), raw).Err(); err != nil {
		return fmt.Errorf("store pool %s: %w", c.Key(), redisErr(err))
	}
	if err := e.indexPool(ctx2, c); err != nil {
		return err
	}
	e.pools.put(p)
	e.forgetSoldOut(c.Key()) // a lower safety stock may have made units available
	return nil
}

// Pool returns a pool's configuration (cached in process for PoolCacheTTL).
func (e *Engine) Pool(ctx context.Context, location, sku string) (PoolConfig, error) {
	p, err := e.pool(ctx, location, sku)
	if err != nil {
		return PoolConfig{}, err
	}
	return p.PoolConfig, nil
}

func (e *Engine) pool(ctx context.Context, location, sku string) (*pool, error) {
	if err := validatePoolKey(location, sku); err != nil {
		return nil, err
	}
	k := PoolKey{location, sku}
	if p := e.pools.get(k); p != nil {
		return p, nil
	}
	c, err := e.loadPool(ctx, k)
	if err != nil {
		return nil, err
	}
	p := e.newPool(c)
	e.pools.put(p)
	return p, nil
}

func (e *Engine) loadPool(ctx context.Context, k PoolKey) (PoolConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	raw, err := e.rdb.HGet(ctx, e.ks.poolsKey(), k.String()).Bytes()
	if errors.Is(err, redis.Nil) {
		return PoolConfig{}, e.noShard(ctx, k.SKU+" at "+k.Location)
	}
	if err != nil {
		return PoolConfig{}, fmt.Errorf("load pool %s: %w", k, redisErr(err))
	}
	var c PoolConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return PoolConfig{}, fmt.Errorf("decode pool %s: %w", k, err)
	}
	return c, nil
}

// poolsPage is how many pools Pools reads a call.
const poolsPage = 1000

// Pools lists every pool, ordered by location then SKU.
func (e *Engine) Pools(ctx context.Context) ([]PoolConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	// In pages: one HGETALL of a hundred thousand pools holds Redis up for every other call.
	seen := map[string]bool{}
	var out []PoolConfig
	var cursor uint64
	for {
		kv, next, err := e.rdb.HScan(ctx, e.ks.poolsKey(), cursor, "", poolsPage).Result()
		if err != nil {
			return nil, fmt.Errorf("list pools: %w", redisErr(err))
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if seen[kv[i]] { // HSCAN may return a field twice
				continue
			}
			seen[kv[i]] = true
			var c PoolConfig
			if err := json.Unmarshal([]byte(kv[i+1]), &c); err != nil {
				return nil, fmt.Errorf("decode pool %s: %w", kv[i], err)
			}
			out = append(out, c)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Location != out[j].Location {
			return out[i].Location < out[j].Location
		}
		return out[i].SKU < out[j].SKU
	})
	return out, nil
}

// VendorPools lists a vendor's pools in (location, sku) order, starting after the pool key
// "after" ("location|sku"; empty for the first page), at most limit of them. It also returns
// whether more follow.
func (e *Engine) VendorPools(ctx context.Context, vendor, after string, limit int) ([]PoolConfig, bool, error) {
	if !idPattern.MatchString(vendor) {
		return nil, false, invalid("vendor", "must match %s", idPattern)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	keys, err := e.rdb.SMembers(ctx, e.ks.vendorKey(vendor)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("list pools of %s: %w", vendor, redisErr(err))
	}
	sort.Strings(keys)
	start := sort.SearchStrings(keys, after)
	if start < len(keys) && keys[start] == after {
		start++
	}
	keys = keys[start:]
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	if len(keys) == 0 {
		return nil, false, nil
	}
	out, err := e.loadPools(ctx, keys)
	return out, more, err
}

// VendorPoolCount is how many pools vendor has.
func (e *Engine) VendorPoolCount(ctx context.Context, vendor string) (int64, error) {
	if !idPattern.MatchString(vendor) {
		return 0, invalid("vendor", "must match %s", idPattern)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	n, err := e.rdb.SCard(ctx, e.ks.vendorKey(vendor)).Result()
	if err != nil {
		return 0, fmt.Errorf("count pools of %s: %w", vendor, redisErr(err))
	}
	return n, nil
}

// PoolsOf reads the configurations of many pools in one round trip; pools that do not exist
// are left out.
func (e *Engine) PoolsOf(ctx context.Context, keys []PoolKey) ([]PoolConfig, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	return e.loadPools(ctx, names)
}

// loadPools reads the configurations of the pools named by keys ("location|sku"); keys with
// no configuration are left out.
func (e *Engine) loadPools(ctx context.Context, keys []string) ([]PoolConfig, error) {
	raws, err := e.rdb.HMGet(ctx, e.ks.poolsKey(), keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("load pools: %w", redisErr(err))
	}
	out := make([]PoolConfig, 0, len(raws))
	for i, raw := range raws {
		s, ok := raw.(string)
		if !ok {
			continue
		}
		var c PoolConfig
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return nil, fmt.Errorf("decode pool %s: %w", keys[i], err)
		}
		out = append(out, c)
	}
	return out, nil
}

// poolCache keeps pool configurations in process for a short time, so the reserve path
// reads no configuration from Redis.
type poolCache struct {
	e  *Engine
	mu sync.RWMutex
	m  map[PoolKey]*pool
}

func newPoolCache(e *Engine) *poolCache { return &poolCache{e: e, m: make(map[PoolKey]*pool)} }

func (c *poolCache) get(k PoolKey) *pool {
	c.mu.RLock()
	p := c.m[k]
	c.mu.RUnlock()
	if p == nil || c.e.now().Sub(p.loaded) > c.e.cfg.PoolCacheTTL {
		return nil
	}
	return p
}

func (c *poolCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *poolCache) put(p *pool) {
	c.mu.Lock()
	c.m[p.Key()] = p
	c.mu.Unlock()
}
