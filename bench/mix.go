package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// commitShare is the share of granted holds a shopper commits; the rest are released.
const commitShare = 0.7

// shopper is a closed-loop client that reserves, then commits or releases what it got,
// one request at a time.
type shopper struct {
	cl      *client
	keys    *keys
	pools   []engine.PoolConfig
	index   map[engine.PoolKey]int    // pool -> its place in pools
	items   [][]byte                  // per line: its JSON item
	skus    []string                  // per line: its SKU
	pick    []func(lines []int) []int // per worker: appends the pools of its next cart
	rng     []*rand.Rand
	pending []heldCart
	// committed counts, per pool, the units clients were told they bought.
	committed []atomic.Int64
	// partial counts granted holds whose parts did not match the cart's lines.
	partial atomic.Int64
	lines   [][]int
	body    [][]byte
}

type heldCart struct {
	id    string
	parts []int // the pool of each unit held
}

// picker makes, from a worker's own random source, the function choosing its carts.
type picker func(r *rand.Rand) func(lines []int) []int

// newShopper makes a shopper whose carts' lines are one unit of one pool each (line i is
// pools[i]), or, with region, one unit of a SKU in that region (line i is skus[i]).
func (b *bench) newShopper(tag string, pools []engine.PoolConfig, newPick picker, region string, skus []string) *shopper {
	n := b.opts.Clients
	s := &shopper{cl: newClient(b.addr, b.apiKey, n), keys: newKeys(tag, n), pools: pools, pick: make([]func([]int) []int, n),
		rng: make([]*rand.Rand, n), pending: make([]heldCart, n), committed: make([]atomic.Int64, len(pools)),
		lines: make([][]int, n), body: make([][]byte, n), index: map[engine.PoolKey]int{}, skus: skus}
	for i, p := range pools {
		s.index[p.Key()] = i
	}
	if region == "" {
		for _, p := range pools {
			s.items = append(s.items, fmt.Appendf(nil, `{"location":%q,"sku":%q,"qty":1}`, p.Location, p.SKU))
			s.skus = append(s.skus, p.SKU)
		}
	}
	for _, sku := range skus {
		s.items = append(s.items, fmt.Appendf(nil, `{"region":%q,"sku":%q,"qty":1}`, region, sku))
	}
	for w := range n {
		s.rng[w] = rand.New(rand.NewPCG(b.opts.Seed, uint64(w)))
		s.pick[w] = newPick(s.rng[w])
	}
	return s
}

func (s *shopper) op(_ context.Context, w int) (Outcome, Kind) {
	if h := s.pending[w]; h.id != "" {
		commit := s.rng[w].Float64() < commitShare
		path := "/v1/holds/" + h.id + "/release"
		if commit {
			path = "/v1/holds/" + h.id + "/commit"
		}
		status, _, err := s.cl.post(w, path, nil, nil)
		if err != nil {
			return Failed, End
		}
		if status == 503 {
			return Shed, End // the hold stays pending: its end is sent again next
		}
		s.pending[w] = heldCart{}
		if status != 200 {
			return Failed, End
		}
		if commit {
			for _, i := range h.parts {
				s.committed[i].Add(1)
			}
		}
		return OK, End
	}
	lines := s.pick[w](s.lines[w][:0])
	s.lines[w] = lines
	body := append(s.body[w][:0], `{"items":[`...)
	for j, i := range lines {
		if j > 0 {
			body = append(body, ',')
		}
		body = append(body, s.items[i]...)
	}
	body = fmt.Appendf(body, `],"ttl_ms":%d}`, holdTTL.Milliseconds())
	s.body[w] = body
	status, resp, err := s.cl.post(w, "/v1/holds", body, s.keys.next(w))
	switch {
	case err != nil:
		return Failed, Reserve
	case status == 409:
		return Refused, Reserve
	case status == 503:
		return Shed, Reserve
	case status != 201:
		return Failed, Reserve
	}
	var h struct {
		ID    string `json:"hold_id"`
		Parts []struct {
			Location string `json:"location"`
			SKU      string `json:"sku"`
			Qty      int64  `json:"qty"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(resp, &h); err != nil || h.ID == "" {
		return Failed, Reserve
	}
	// Every line one unit of its SKU, from a pool of the scenario.
	got := map[string]int64{}
	held := heldCart{id: h.ID}
	ok := true
	for _, p := range h.Parts {
		got[p.SKU] += p.Qty
		i, known := s.index[engine.PoolKey{Location: p.Location, SKU: p.SKU}]
		ok = ok && known
		for range p.Qty {
			held.parts = append(held.parts, i)
		}
	}
	ok = ok && len(got) == len(lines)
	for _, i := range lines {
		ok = ok && got[s.skus[i]] == 1
	}
	if !ok {
		s.partial.Add(1)
	}
	s.pending[w] = held
	return OK, Reserve
}

// finish releases the holds workers still had when the run ended, and returns the
// expectations to check.
func (s *shopper) finish(ctx context.Context, b *bench, stock int64) ([]expectation, int64) {
	var open []string
	for _, h := range s.pending {
		if h.id != "" {
			open = append(open, h.id)
		}
	}
	failed := b.endHolds(ctx, open, false)
	out := make([]expectation, len(s.pools))
	for i, p := range s.pools {
		out[i] = expectation{pool: p, stock: stock, committed: s.committed[i].Load()}
	}
	return out, failed
}

// mixScenario runs a shopper over pools and builds the scenario's result; with region, its
// carts' lines are skus in that region (see newShopper).
func (b *bench) mixScenario(ctx context.Context, name string, pools []engine.PoolConfig, stock int64, pick picker, region string, skus []string) (*Scenario, error) {
	start := time.Now()
	if err := b.makePools(ctx, pools, stock); err != nil {
		return nil, err
	}
	b.say("%s: %d pools stocked in %s", name, len(pools), time.Since(start).Round(time.Millisecond))
	b.settle(ctx, 60*time.Second)
	s := b.newShopper(name, pools, pick, region, skus)
	defer s.cl.close()
	run := b.closedLoop(ctx, name, b.opts.Duration, s.op)
	want, failed := s.finish(ctx, b, stock)
	iv, err := b.check(ctx, want, false)
	if err != nil {
		return nil, err
	}
	if n := s.partial.Load(); n > 0 {
		iv.Oversold += n
		iv.Violations = append(iv.Violations, fmt.Sprintf("%d holds did not cover exactly their cart's lines", n))
	}
	sc := &Scenario{Name: name, Invariants: iv, Oversold: iv.Oversold, Undersold: iv.Undersold}
	if failed > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d open holds could not be released at the end", failed))
	}
	all := run.summary()
	res := summarize(run.Samples, run.Elapsed, func(s sample) bool { return s.kind == Reserve })
	end := summarize(run.Samples, run.Elapsed, func(s sample) bool { return s.kind == End })
	sc.Phases = []Phase{{Name: "all requests", Stats: all}, {Name: "reserves", Stats: res}, {Name: "commits and releases", Stats: end}}
	sc.ThroughputRPS, sc.P50Ms, sc.P99Ms, sc.P999Ms, sc.Errors = all.ThroughputRPS, res.P50Ms, res.P99Ms, res.P999Ms, all.Errors
	sc.Series = series(run.Samples, run.Elapsed, 250*time.Millisecond)
	return sc, nil
}

// catalog spreads zipf-skewed demand over many SKUs, one unit per hold.
func (b *bench) catalog(ctx context.Context) (*Scenario, error) {
	pools := make([]engine.PoolConfig, b.opts.SKUs)
	for i := range pools {
		pools[i] = engine.PoolConfig{Location: "cat", SKU: fmt.Sprintf("cat-%06d", i), Vendor: "bench", Shards: 1}
	}
	imax := uint64(max(len(pools)-1, 1))
	return b.mixScenario(ctx, Catalog, pools, b.opts.SKUStock, func(r *rand.Rand) func([]int) []int {
		z := rand.NewZipf(r, 1.1, 1, imax)
		return func(lines []int) []int { return append(lines, int(z.Uint64())%len(pools)) }
	}, "", nil)
}

// cart reserves 2-4 distinct SKUs per hold, all or nothing.
func (b *bench) cart(ctx context.Context) (*Scenario, error) {
	pools := make([]engine.PoolConfig, b.opts.CartSKUs)
	for i := range pools {
		pools[i] = engine.PoolConfig{Location: "cart", SKU: fmt.Sprintf("cart-%05d", i), Vendor: "bench", Shards: 1}
	}
	return b.mixScenario(ctx, Cart, pools, b.opts.SKUStock*10, cartPicker(len(pools)), "", nil)
}

// regionLocations is how many locations serve the regional scenario's region.
const regionLocations = 4

// regional is the cart scenario over a region: the same carts of 2-4 distinct SKUs, each line
// naming the region, whose four locations (by priority; the engine picks by most stock) each
// have a quarter of the cart scenario's units of every SKU.
func (b *bench) regional(ctx context.Context) (*Scenario, error) {
	skus := make([]string, b.opts.CartSKUs)
	var pools []engine.PoolConfig
	region := engine.Region{Name: "bench-region", Strategy: engine.StrategyMostStock}
	for l := range regionLocations {
		loc := fmt.Sprintf("region-%d", l)
		region.Locations = append(region.Locations, engine.RegionLocation{Location: loc, Priority: l})
		for i := range skus {
			skus[i] = fmt.Sprintf("cart-%05d", i)
			pools = append(pools, engine.PoolConfig{Location: loc, SKU: skus[i], Vendor: "bench", Shards: 1})
		}
	}
	if err := b.eng.PutRegion(ctx, region); err != nil {
		return nil, err
	}
	return b.mixScenario(ctx, Regional, pools, max(b.opts.SKUStock*10/regionLocations, 1), cartPicker(len(skus)), region.Name, skus)
}

// cartPicker picks carts of 2-4 distinct lines of count.
func cartPicker(count int) picker {
	return func(r *rand.Rand) func([]int) []int {
		return func(lines []int) []int {
			size := min(2+r.IntN(3), count)
			for len(lines) < size {
				i := r.IntN(count)
				dup := false
				for _, j := range lines {
					dup = dup || i == j
				}
				if !dup {
					lines = append(lines, i)
				}
			}
			return lines
		}
	}
}
