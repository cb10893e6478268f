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
	items   [][]byte                  // per pool: its JSON item
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
	lines []int
}

// picker makes, from a worker's own random source, the function choosing its carts.
type picker func(r *rand.Rand) func(lines []int) []int

func (b *bench) newShopper(tag string, pools []engine.PoolConfig, newPick picker) *shopper {
	n := b.opts.Clients
	s := &shopper{cl: newClient(b.addr, b.apiKey, n), keys: newKeys(tag, n), pools: pools, pick: make([]func([]int) []int, n),
		rng: make([]*rand.Rand, n), pending: make([]heldCart, n), committed: make([]atomic.Int64, len(pools)),
		lines: make([][]int, n), body: make([][]byte, n), items: make([][]byte, len(pools))}
	for i, p := range pools {
		s.items[i] = fmt.Appendf(nil, `{"location":%q,"sku":%q,"qty":1}`, p.Location, p.SKU)
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
			for _, i := range h.lines {
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
			SKU string `json:"sku"`
			Qty int64  `json:"qty"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(resp, &h); err != nil || h.ID == "" {
		return Failed, Reserve
	}
	got := map[string]int64{}
	for _, p := range h.Parts {
		got[p.SKU] += p.Qty
	}
	ok := len(got) == len(lines)
	for _, i := range lines {
		ok = ok && got[s.pools[i].SKU] == 1
	}
	if !ok {
		s.partial.Add(1)
	}
	s.pending[w] = heldCart{id: h.ID, lines: append([]int(nil), lines...)}
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

// mixScenario runs a shopper over pools and builds the scenario's result.
func (b *bench) mixScenario(ctx context.Context, name string, pools []engine.PoolConfig, stock int64, pick picker) (*Scenario, error) {
	start := time.Now()
	if err := b.makePools(ctx, pools, stock); err != nil {
		return nil, err
	}
	b.say("%s: %d pools stocked in %s", name, len(pools), time.Since(start).Round(time.Millisecond))
	b.settle(ctx, 60*time.Second)
	s := b.newShopper(name, pools, pick)
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
	})
}

// cart reserves 2-4 distinct SKUs per hold, all or nothing.
func (b *bench) cart(ctx context.Context) (*Scenario, error) {
	pools := make([]engine.PoolConfig, b.opts.CartSKUs)
	for i := range pools {
		pools[i] = engine.PoolConfig{Location: "cart", SKU: fmt.Sprintf("cart-%05d", i), Vendor: "bench", Shards: 1}
	}
	return b.mixScenario(ctx, Cart, pools, b.opts.SKUStock*10, func(r *rand.Rand) func([]int) []int {
		return func(lines []int) []int {
			n := min(2+r.IntN(3), len(pools))
			for len(lines) < n {
				i := r.IntN(len(pools))
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
	})
}
