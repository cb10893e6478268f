package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A region is a delivery area served by several locations (stores, fulfilment centres). A
// shopper's cart line may name a region instead of a location: the engine then picks the
// location(s) by the region's strategy (see plan).
type Region struct {
	Name string `json:"region"`
	// Strategy orders the locations a line is taken from: StrategyPriority (the default),
	// StrategyMostStock or StrategyNearest.
	Strategy  string           `json:"strategy"`
	Locations []RegionLocation `json:"locations"`
}

// RegionLocation is one location of a region. A location belongs to at most one region.
type RegionLocation struct {
	Location string `json:"location"`
	// Priority: lower is tried first (by StrategyPriority, and to break ties of the others).
	Priority int      `json:"priority"`
	Lat      *float64 `json:"lat,omitempty"`
	Lon      *float64 `json:"lon,omitempty"`
}

// Allocation strategies.
const (
	StrategyPriority  = "priority"   // by priority, then by name
	StrategyMostStock = "most_stock" // the location with most available units first
	StrategyNearest   = "nearest"    // nearest to the request's point first (locations without coordinates last)
)

// Point is a place on Earth, in degrees.
type Point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// MaxRegionLocations bounds a region: the locations of a regional line are read in one
// pipeline.
const MaxRegionLocations = 64

func validStrategy(s string) bool {
	return s == StrategyPriority || s == StrategyMostStock || s == StrategyNearest
}

func validPoint(field string, lat, lon float64) error {
	if math.IsNaN(lat) || lat < -90 || lat > 90 {
		return invalid(field+".lat", "must be within -90..90")
	}
	if math.IsNaN(lon) || lon < -180 || lon > 180 {
		return invalid(field+".lon", "must be within -180..180")
	}
	return nil
}

func validateRegion(r *Region) error {
	if !idPattern.MatchString(r.Name) {
		return invalid("region", "must match %s", idPattern)
	}
	if r.Strategy == "" {
		r.Strategy = StrategyPriority
	}
	if !validStrategy(r.Strategy) {
		return invalid("strategy", "must be one of %s, %s, %s", StrategyPriority, StrategyMostStock, StrategyNearest)
	}
	if len(r.Locations) == 0 || len(r.Locations) > MaxRegionLocations {
		return invalid("locations", "a region has 1..%d locations", MaxRegionLocations)
	}
	seen := map[string]bool{}
	for i, l := range r.Locations {
		field := fmt.Sprintf("locations[%d]", i)
		if !idPattern.MatchString(l.Location) {
			return invalid(field+".location", "must match %s", idPattern)
		}
		if seen[l.Location] {
			return invalid(field+".location", "%s is listed twice", l.Location)
		}
		seen[l.Location] = true
		if l.Priority < 0 || l.Priority > 1_000_000 {
			return invalid(field+".priority", "must be within 0..1000000")
		}
		if (l.Lat == nil) != (l.Lon == nil) {
			return invalid(field, "give both lat and lon, or neither")
		}
		if l.Lat != nil {
			if err := validPoint(field, *l.Lat, *l.Lon); err != nil {
				return err
			}
		}
	}
	return nil
}

// Region metadata lives under one hash tag, so that one transaction can change it on a
// cluster: the regions (name -> JSON), each location's region, and each region's items.
func (k keyspace) regionsKey() string  { return k.prefix + ":{regions}" }
func (k keyspace) regionOfKey() string { return k.prefix + ":{regions}:of" }
func (k keyspace) regionItemsKey(region string) string {
	return k.prefix + ":{regions}:items:" + region
}

// ErrUnknownRegion: no region has that name.
var ErrUnknownRegion = errors.New("unknown region")

// regionCache keeps the regions in process for PoolCacheTTL.
type regionCache struct {
	mu   sync.Mutex
	at   time.Time
	byID map[string]*Region
}

// PutRegion creates or replaces a region. A location already in another region is refused
// (ValidationError on its field). The region's index of items is rebuilt from the pools.
func (e *Engine) PutRegion(ctx context.Context, r Region) error {
	if err := validateRegion(&r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*e.cfg.RedisTimeout)
	defer cancel()
	raw, _ := json.Marshal(r)
	store := func(tx *redis.Tx) error {
		of, err := tx.HGetAll(ctx, e.ks.regionOfKey()).Result()
		if err != nil {
			return err
		}
		mine := map[string]bool{}
		for i, l := range r.Locations {
			mine[l.Location] = true
			if other, ok := of[l.Location]; ok && other != r.Name {
				return invalid(fmt.Sprintf("locations[%d].location", i), "%s belongs to region %s", l.Location, other)
			}
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for loc, reg := range of {
				if reg == r.Name && !mine[loc] {
					pipe.HDel(ctx, e.ks.regionOfKey(), loc)
				}
			}
			for _, l := range r.Locations {
				pipe.HSet(ctx, e.ks.regionOfKey(), l.Location, r.Name)
			}
			pipe.HSet(ctx, e.ks.regionsKey(), r.Name, raw)
			return nil
		})
		return err
	}
	// Another region's change between the read and the write: read again, after a pause of
	// up to a few milliseconds, so that racing changes do not keep colliding.
	var err error = redis.TxFailedErr
	for try := 0; try < 30 && errors.Is(err, redis.TxFailedErr); try++ {
		if try > 0 {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
		}
		err = e.rdb.Watch(ctx, store, e.ks.regionOfKey())
	}
	if errors.Is(err, redis.TxFailedErr) {
		return fmt.Errorf("%w: store region %s: other changes of the regions kept racing it; send it again", ErrUnavailable, r.Name)
	}
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return err
		}
		return fmt.Errorf("store region %s: %w", r.Name, redisErr(err))
	}
	if err := e.regionsChanged(ctx); err != nil {
		return err
	}
	return e.rebuildRegionItems(ctx, []Region{r})
}

// rebuildRegionItems writes each region's index of items (the SKUs with a pool at one of its
// locations) from the pools, read once, into a new key that then replaces the old one.
func (e *Engine) rebuildRegionItems(ctx context.Context, regions []Region) error {
	regionOf := map[string]string{}
	for _, r := range regions {
		for _, l := range r.Locations {
			regionOf[l.Location] = r.Name
		}
	}
	pools, err := e.Pools(ctx)
	if err != nil {
		return err
	}
	items := map[string][]redis.Z{}
	for _, p := range pools {
		if r, ok := regionOf[p.Location]; ok {
			items[r] = append(items[r], redis.Z{Member: p.SKU})
		}
	}
	for _, r := range regions {
		// Built under a name of its own (two rebuilds of one region may run at once), then
		// put in place.
		key := e.ks.regionItemsKey(r.Name)
		building := key + ":building:" + newAttempt()
		pipe := e.rdb.TxPipeline() // one hash tag: all or nothing, on a cluster too
		for z := range slices.Chunk(items[r.Name], 1000) {
			pipe.ZAdd(ctx, building, z...)
		}
		if len(items[r.Name]) > 0 {
			pipe.Rename(ctx, building, key)
		} else {
			pipe.Del(ctx, key)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("index region %s: %w", r.Name, redisErr(err))
		}
	}
	return nil
}

// RestoreRegions writes regions back (from the ledger's copy) in place of any Redis holds,
// with their indexes of items (from the pools, which must be restored first).
func (e *Engine) RestoreRegions(ctx context.Context, regions []Region) error {
	for i := range regions {
		if err := validateRegion(&regions[i]); err != nil {
			return fmt.Errorf("region %s: %w", regions[i].Name, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	_, err := e.rdb.TxPipelined(rctx, func(pipe redis.Pipeliner) error {
		pipe.Del(rctx, e.ks.regionsKey(), e.ks.regionOfKey())
		for _, r := range regions {
			raw, _ := json.Marshal(r)
			pipe.HSet(rctx, e.ks.regionsKey(), r.Name, raw)
			for _, l := range r.Locations {
				pipe.HSet(rctx, e.ks.regionOfKey(), l.Location, r.Name)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore regions: %w", redisErr(err))
	}
	if err := e.regionsChanged(ctx); err != nil {
		return err
	}
	return e.rebuildRegionItems(ctx, regions)
}

// indexRegionItem adds a pool's SKU to the index of its location's region, if it has one.
func (e *Engine) indexRegionItem(ctx context.Context, c PoolConfig) error {
	reg, err := e.rdb.HGet(ctx, e.ks.regionOfKey(), c.Location).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err == nil {
		err = e.rdb.ZAdd(ctx, e.ks.regionItemsKey(reg), redis.Z{Member: c.SKU}).Err()
	}
	if err != nil {
		return fmt.Errorf("index pool %s in its region: %w", c.Key(), redisErr(err))
	}
	return nil
}

// DeleteRegion removes a region; its locations then belong to none. ErrUnknownRegion when
// there is none of that name.
func (e *Engine) DeleteRegion(ctx context.Context, name string) error {
	r, err := e.RegionNamed(ctx, name, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	_, err = e.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, l := range r.Locations {
			pipe.HDel(ctx, e.ks.regionOfKey(), l.Location)
		}
		pipe.HDel(ctx, e.ks.regionsKey(), name)
		pipe.Del(ctx, e.ks.regionItemsKey(name))
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete region %s: %w", name, redisErr(err))
	}
	return e.regionsChanged(ctx)
}

// regionsChanged forgets the cached regions and moves PoolsVersion, so that the persister
// copies the regions (with the pools) into the ledger.
func (e *Engine) regionsChanged(ctx context.Context) error {
	e.regions.mu.Lock()
	e.regions.at = time.Time{}
	e.regions.mu.Unlock()
	if err := e.rdb.Incr(ctx, e.ks.poolsVersionKey()).Err(); err != nil {
		return fmt.Errorf("regions changed: %w", redisErr(err))
	}
	return nil
}

// Regions lists every region, by name.
func (e *Engine) Regions(ctx context.Context) ([]Region, error) {
	m, err := e.loadRegions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Region, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Region) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (e *Engine) loadRegions(ctx context.Context) (map[string]*Region, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	raws, err := e.rdb.HGetAll(ctx, e.ks.regionsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read regions: %w", redisErr(err))
	}
	m := make(map[string]*Region, len(raws))
	for name, raw := range raws {
		var r Region
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("decode region %s: %w", name, err)
		}
		m[name] = &r
	}
	return m, nil
}

// RegionNamed returns a region (cached in process for PoolCacheTTL unless fresh is set), or
// ErrUnknownRegion.
func (e *Engine) RegionNamed(ctx context.Context, name string, fresh bool) (*Region, error) {
	e.regions.mu.Lock()
	m, at := e.regions.byID, e.regions.at
	e.regions.mu.Unlock()
	if fresh || m == nil || e.now().Sub(at) > e.cfg.PoolCacheTTL {
		var err error
		if m, err = e.loadRegions(ctx); err != nil {
			return nil, err
		}
		e.regions.mu.Lock()
		e.regions.byID, e.regions.at = m, e.now()
		e.regions.mu.Unlock()
	}
	r, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRegion, name)
	}
	return r, nil
}

// RegionOf is the region a location belongs to ("" for none).
func (e *Engine) RegionOf(ctx context.Context, location string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	r, err := e.rdb.HGet(ctx, e.ks.regionOfKey(), location).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("region of %s: %w", location, redisErr(err))
	}
	return r, nil
}

// LocationStock is one location's share of a region's availability.
type LocationStock struct {
	Location  string `json:"location"`
	Priority  int    `json:"priority"`
	Available int64  `json:"available"`
	Held      int64  `json:"held"`
	Status    string `json:"status"`
}

// RegionStock is a SKU's availability in a region: the total and each location's share, of
// the locations with a pool of it.
type RegionStock struct {
	Region    string          `json:"region"`
	SKU       string          `json:"sku"`
	Available int64           `json:"available"`
	Locations []LocationStock `json:"locations"`
}

// RegionAvailability reads a SKU's availability at every location of a region: the pools'
// configurations in one round trip (none when cached) and their counters in one pipeline,
// which a cluster client sends as one round trip per node.
func (e *Engine) RegionAvailability(ctx context.Context, region, sku string) (*RegionStock, error) {
	if !idPattern.MatchString(sku) {
		return nil, invalid("sku", "must match %s", idPattern)
	}
	r, err := e.RegionNamed(ctx, region, false)
	if err != nil {
		return nil, err
	}
	stocks, err := e.regionStocks(ctx, []*Region{r}, []string{sku})
	if err != nil {
		return nil, err
	}
	return stocks[0], nil
}

// regionStocks reads, for each pair regions[i] and skus[i], the SKU's availability at the
// region's locations, all in one pipeline.
func (e *Engine) regionStocks(ctx context.Context, regions []*Region, skus []string) ([]*RegionStock, error) {
	var keys []PoolKey
	for i, r := range regions {
		for _, l := range r.Locations {
			keys = append(keys, PoolKey{l.Location, skus[i]})
		}
	}
	found, err := e.cachedPools(ctx, keys)
	if err != nil {
		return nil, err
	}
	configs := make([]PoolConfig, 0, len(found))
	for _, c := range found {
		configs = append(configs, c)
	}
	avail, err := e.Availabilities(ctx, configs)
	if err != nil {
		return nil, err
	}
	byKey := make(map[PoolKey]*Availability, len(avail))
	for _, a := range avail {
		byKey[PoolKey{a.Location, a.SKU}] = a
	}
	out := make([]*RegionStock, len(regions))
	for i, r := range regions {
		rs := &RegionStock{Region: r.Name, SKU: skus[i], Locations: []LocationStock{}}
		for _, l := range r.Locations {
			a, ok := byKey[PoolKey{l.Location, skus[i]}]
			if !ok {
				continue
			}
			rs.Locations = append(rs.Locations, LocationStock{Location: l.Location, Priority: l.Priority,
				Available: a.Available, Held: a.Held, Status: a.Status})
			rs.Available += max(a.Available, 0)
		}
		out[i] = rs
	}
	return out, nil
}

// poolsOf returns the pools among keys that exist: from the pool cache, the others read in
// one round trip (and cached). When that read fails it returns the cached ones and the error.
func (e *Engine) poolsOf(ctx context.Context, keys []PoolKey) (map[PoolKey]*pool, error) {
	out := make(map[PoolKey]*pool, len(keys))
	var missing []string
	asked := map[PoolKey]bool{}
	for _, k := range keys {
		if p := e.pools.get(k); p != nil {
			out[k] = p
		} else if !asked[k] {
			asked[k] = true
			missing = append(missing, k.String())
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	lctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	loaded, err := e.loadPools(lctx, missing)
	cancel()
	for _, c := range loaded {
		p := e.newPool(c)
		e.pools.put(p)
		out[c.Key()] = p
	}
	return out, err
}

// cachedPools is poolsOf's configurations (a key with no pool: none in the map).
func (e *Engine) cachedPools(ctx context.Context, keys []PoolKey) (map[PoolKey]PoolConfig, error) {
	pools, err := e.poolsOf(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[PoolKey]PoolConfig, len(pools))
	for k, p := range pools {
		out[k] = p.PoolConfig
	}
	return out, nil
}

// RegionItems pages through the SKUs of a region's index (those with a pool at one of its
// locations), in name order after the SKU after; with inStock, only those with units
// available in the region (read for each page, in one pipeline). It returns at most limit
// SKUs with their availability, and the SKU to continue after ("" at the end).
func (e *Engine) RegionItems(ctx context.Context, region, after string, limit int, inStock bool) ([]*RegionStock, string, error) {
	r, err := e.RegionNamed(ctx, region, false)
	if err != nil {
		return nil, "", err
	}
	var out []*RegionStock
	// Reading at most 8 pages of the index per call bounds the work of a region whose items
	// are mostly out of stock; the cursor then says where to go on.
	for range 8 {
		from := "-"
		if after != "" {
			from = "(" + after
		}
		rctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
		want := limit - len(out)
		skus, err := e.rdb.ZRangeByLex(rctx, e.ks.regionItemsKey(r.Name), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(want)}).Result()
		cancel()
		if err != nil {
			return nil, "", fmt.Errorf("read region %s items: %w", r.Name, redisErr(err))
		}
		if len(skus) == 0 {
			return out, "", nil
		}
		regions := make([]*Region, len(skus))
		for i := range regions {
			regions[i] = r
		}
		stocks, err := e.regionStocks(ctx, regions, skus)
		if err != nil {
			return nil, "", err
		}
		for _, s := range stocks {
			if !inStock || s.Available > 0 {
				out = append(out, s)
			}
		}
		after = skus[len(skus)-1]
		if len(skus) < want {
			return out, "", nil // the index ended
		}
		if len(out) >= limit {
			return out, after, nil
		}
	}
	return out, after, nil
}
