package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Allocation: a cart whose lines name a region instead of a location, or may be served by a
// substitute (a line with a location is then planned as a region of one location).
//
// The engine reads the SKU's availability at the region's locations (one pipeline), orders
// them by the strategy, and plans concrete lines: one location that has the whole quantity,
// or, with AllowSplit, as many locations as it takes in that order. The plan is then reserved
// as an ordinary cart, all or nothing, so no location is ever oversold. When racing requests
// took the units meanwhile, the reservation is refused and the engine plans again.
//
// Idempotency. A plan depends on the stock when it was made, so a retry must not plan again
// unless the plan already made was refused. The allocation record of the caller's key (in
// Redis, kept as long as any answer) holds the request's fingerprint, the attempt n and its
// plan; attempt n is reserved under a key of its own (scope "alloc.<n>"), so its answer —
// a hold, or a refusal — is replayed like any other (see below). Only an attempt
// the engine refused is followed by another: the record moves from n to n+1 by compare and
// swap, so racing duplicates follow one plan. A refusal planning again cannot change — no
// plan possible, a line with a location refused, a customer's limit — is recorded on the
// record too (moving it on) and answered for FLASHHOLD_REFUSAL_TTL, like any refusal.
//
// One hold per key: attempt n+1 exists only once attempt n was refused, and an attempt's
// refusal is answered for as long as any answer (FLASHHOLD_IDEMPOTENCY_TTL, not the refusal
// retention of other requests), so a refused attempt is never placed later, by a duplicate or
// a retry, and a placed one is never refused.
//
// Round trips of a new cart: the stock of its regional lines (one pipeline), the claim of the
// key with the plan (SET NX GET, which also reads a record already there), and the cart's.

// planned reports whether the engine must plan req's lines: a line names a region, or may be
// held as a substitute.
func planned(req ReserveRequest) bool {
	for _, it := range req.Items {
		if it.Region != "" || it.Substitute {
			return true
		}
	}
	return false
}

// allocRecord is what an allocation key decided (see above).
type allocRecord struct {
	FP    string `json:"fp"`
	N     int    `json:"n"`
	Items []Item `json:"items,omitempty"`
	// From: the request's line each of Items serves.
	From []int `json:"from,omitempty"`
	// Refused: no plan was possible, or a line with a location was refused; Limit: a customer's
	// limit refused it. Answered so until Until (ms).
	Refused *InsufficientError `json:"refused,omitempty"`
	Limit   *LimitError        `json:"limit,omitempty"`
	Until   int64              `json:"until,omitempty"`

	raw string // as stored
}

// refusal is the refusal rec answers at now (ms), or nil.
func (rec *allocRecord) refusal(now int64) error {
	switch {
	case now >= rec.Until:
		return nil
	case rec.Refused != nil:
		r := *rec.Refused
		return &r
	case rec.Limit != nil:
		l := *rec.Limit
		return &l
	}
	return nil
}

// allocKey is the allocation record of token, beside its key record.
func (k keyspace) allocKey(p int, token string) string {
	return k.prefix + ":{p" + strconv.Itoa(p) + "}:a:" + token
}

// allocRounds bounds the plans one request makes before it answers that racing requests
// keep taking the units (503: sent again, it goes on from the record).
const allocRounds = 6

func (e *Engine) allocate(ctx context.Context, req ReserveRequest) (*Hold, error) {
	if err := e.validateAllocation(ctx, &req); err != nil {
		return nil, err
	}
	if req.TTL == 0 {
		req.TTL = e.cfg.DefaultTTL
	}
	token := e.token(req.Actor, req.IdempotencyKey)
	key := e.ks.allocKey(e.keyPartition(token), token)
	fp := allocFingerprint(req)
	// rec is the record as last read or written; known is false until it was read. A new
	// request plans first and then claims the key with its plan, reading any record already
	// there in the same round trip.
	var rec *allocRecord
	known := false
	for range allocRounds {
		if known && rec != nil {
			if rec.FP != fp {
				return nil, fmt.Errorf("%w: the Idempotency-Key was used for another request", ErrIdempotencyMismatch)
			}
			if refused := rec.refusal(e.nowMs()); refused != nil {
				return nil, refused
			}
			if rec.Refused == nil && rec.Limit == nil {
				h, err := e.reserve(ctx, attempt(req, rec))
				var ie *InsufficientError
				var le *LimitError
				switch {
				case err == nil:
					h.Substitutions = substitutions(req, rec)
					return h, nil
				case errors.As(err, &le) || errors.As(err, &ie) && fixedLine(req, ie):
					// A refusal planning again cannot change (a customer's limit, a line with a
					// location): answered so for FLASHHOLD_REFUSAL_TTL, like any refusal, then
					// tried anew as the next attempt.
					// (errors.As stops at the limit: ie is set only for a refusal for stock.)
					next := &allocRecord{FP: fp, N: rec.N + 1, Refused: ie, Limit: le, Until: e.nowMs() + e.cfg.RefusalTTL.Milliseconds()}
					if _, serr := e.swapAlloc(ctx, key, rec, next); serr != nil {
						return nil, serr
					}
					return nil, err
				case ie == nil:
					return nil, err
				}
			}
		}
		next := &allocRecord{FP: fp}
		if rec != nil {
			next.N = rec.N + 1
		}
		items, from, err := e.plan(ctx, req)
		var ie *InsufficientError
		switch {
		case errors.As(err, &ie):
			next.Refused, next.Until = ie, e.nowMs()+e.cfg.RefusalTTL.Milliseconds()
		case err != nil && !known:
			// A retry whose plan fails (its own hold took the units, say) follows the record.
			cur, rerr := e.readAlloc(ctx, key)
			if rerr != nil || cur == nil {
				return nil, errors.Join(err, rerr)
			}
			rec, known = cur, true
			continue
		case err != nil:
			return nil, err
		default:
			next.Items, next.From = items, from
		}
		if known {
			rec, err = e.swapAlloc(ctx, key, rec, next)
		} else {
			rec, err = e.claimAlloc(ctx, key, next)
		}
		if err != nil {
			return nil, err
		}
		known = true
	}
	return nil, fmt.Errorf("%w: racing requests kept taking the units planned for this cart; send it again with the same Idempotency-Key", ErrUnavailable)
}

// fixedLine reports whether a refusal names a line of req the engine does not plan (a location
// line that may not be substituted).
func fixedLine(req ReserveRequest, ie *InsufficientError) bool {
	if ie.Region != "" {
		return false
	}
	for _, it := range req.Items {
		if it.Region == "" && !it.Substitute && it.Location == ie.Location && it.SKU == ie.SKU {
			return true
		}
	}
	return false
}

// attempt is the cart that reserves rec's plan, under the attempt's own key.
func attempt(req ReserveRequest, rec *allocRecord) ReserveRequest {
	c := req
	c.Items, c.Strategy, c.Near = rec.Items, "", nil
	c.scope = "alloc." + strconv.Itoa(rec.N)
	return c
}

// substitutions lists the lines of req that rec's plan serves with another SKU.
func substitutions(req ReserveRequest, rec *allocRecord) []Substitution {
	var out []Substitution
	for j, it := range rec.Items {
		if j < len(rec.From) {
			if line := rec.From[j]; it.SKU != req.Items[line].SKU {
				out = append(out, Substitution{Line: line, Requested: req.Items[line].SKU, SKU: it.SKU})
			}
		}
	}
	return out
}

func allocFingerprint(req ReserveRequest) string {
	parts := []string{"alloc", req.Customer, strconv.FormatInt(req.TTL.Milliseconds(), 10), req.Strategy}
	if req.Near != nil {
		parts = append(parts, strconv.FormatFloat(req.Near.Lat, 'g', -1, 64), strconv.FormatFloat(req.Near.Lon, 'g', -1, 64))
	}
	for _, it := range req.Items {
		parts = append(parts, it.Location, it.Region, it.SKU, strconv.FormatInt(it.Qty, 10), strconv.FormatBool(it.AllowSplit),
			strconv.FormatBool(it.Substitute))
	}
	return fingerprint(parts...)
}

// validateAllocation checks a cart with regional lines; the plan is checked again as a cart.
func (e *Engine) validateAllocation(ctx context.Context, req *ReserveRequest) error {
	if len(req.Items) > e.cfg.MaxCartLines {
		return invalid("items", "at most %d items per reservation", e.cfg.MaxCartLines)
	}
	if !idemKeyPattern.MatchString(req.IdempotencyKey) {
		return invalid("idempotency_key", "required, must match %s", idemKeyPattern)
	}
	if req.Actor != "" && !idPattern.MatchString(req.Actor) {
		return invalid("actor", "must match %s", idPattern)
	}
	// What the cart's own check refuses is refused here, before the key is claimed.
	if req.Customer != "" && !idPattern.MatchString(req.Customer) {
		return invalid("customer_id", "must match %s", idPattern)
	}
	if req.TTL != 0 && (req.TTL < e.cfg.MinTTL || req.TTL > e.cfg.MaxTTL) {
		return invalid("ttl_ms", "must be %d..%d", e.cfg.MinTTL.Milliseconds(), e.cfg.MaxTTL.Milliseconds())
	}
	regional := slices.ContainsFunc(req.Items, func(it Item) bool { return it.Region != "" })
	switch {
	case req.Strategy != "" && !regional:
		return invalid("strategy", "strategy applies to lines with a region")
	case req.Near != nil && !regional:
		return invalid("near", "near applies to lines with a region")
	case req.Strategy != "" && !validStrategy(req.Strategy):
		return invalid("strategy", "must be one of %s, %s, %s", StrategyPriority, StrategyMostStock, StrategyNearest)
	}
	if req.Near != nil {
		if err := validPoint("near", req.Near.Lat, req.Near.Lon); err != nil {
			return err
		}
	}
	skus := map[string]bool{}
	for i, it := range req.Items {
		field := fmt.Sprintf("items[%d]", i)
		if !idPattern.MatchString(it.SKU) {
			return invalid(field+".sku", "must match %s", idPattern)
		}
		if it.Qty < 1 || it.Qty > e.cfg.MaxQty {
			return invalid(field+".qty", "must be 1..%d", e.cfg.MaxQty)
		}
		if skus[it.SKU] {
			return invalid(field+".sku", "%s appears twice in a cart with regional lines; give one line per SKU", it.SKU)
		}
		skus[it.SKU] = true
		switch {
		case it.Region != "" && it.Location != "":
			return invalid(field+".region", "give location or region, not both")
		case it.Region == "":
			if it.AllowSplit {
				return invalid(field+".allow_split", "only a line with a region can be split")
			}
			if !idPattern.MatchString(it.Location) {
				return invalid(field+".location", "must match %s", idPattern)
			}
			if _, err := e.pool(ctx, it.Location, it.SKU); err != nil {
				return err // ErrUnknownPool, as any line naming no pool
			}
			continue
		}
		if !idPattern.MatchString(it.Region) {
			return invalid(field+".region", "must match %s", idPattern)
		}
		r, err := e.RegionNamed(ctx, it.Region, false)
		if errors.Is(err, ErrUnknownRegion) {
			return invalid(field+".region", "unknown region %s", it.Region)
		}
		if err != nil {
			return err
		}
		if cmp.Or(req.Strategy, r.Strategy) == StrategyNearest && req.Near == nil {
			return invalid("near", "region %s allocates by nearest location: give near {lat, lon}", r.Name)
		}
	}
	return nil
}

// plan makes the cart that serves req from the stock now (see the top of this file): a
// regional line is taken from the locations the strategy orders first; a line that may be
// substituted is served by the first of its SKU and then its pool's substitutes that can
// serve it (a SKU another line names is not taken as a substitute). It returns the cart and,
// for each of its lines, the request's line it serves. A line nothing can serve is refused
// with an InsufficientError for its own SKU, naming its region or location.
func (e *Engine) plan(ctx context.Context, req ReserveRequest) ([]Item, []int, error) {
	// Each planned line is served from a region: a line with a location from a region of one.
	type target struct {
		region *Region
		skus   []string // the SKU, then its substitutes when allowed
		// listed: for each substitute, the locations whose pool of the SKU lists it (only
		// there may it be taken instead)
		listed map[string]map[string]bool
	}
	targets := make([]*target, len(req.Items))
	var regions []*Region
	var skus []string
	for i, it := range req.Items {
		if it.Region == "" && !it.Substitute {
			continue
		}
		r := &Region{Locations: []RegionLocation{{Location: it.Location}}}
		if it.Region != "" {
			var err error
			if r, err = e.RegionNamed(ctx, it.Region, false); err != nil {
				return nil, nil, err
			}
		}
		t := &target{region: r, skus: []string{it.SKU}}
		if it.Substitute {
			subs, listed, err := e.substitutesIn(ctx, r, it.SKU)
			if err != nil {
				return nil, nil, err
			}
			t.skus, t.listed = append(t.skus, subs...), listed
		}
		targets[i] = t
		for _, sku := range t.skus {
			regions, skus = append(regions, r), append(skus, sku)
		}
	}
	stocks, err := e.regionStocks(ctx, regions, skus)
	if err != nil {
		return nil, nil, err
	}
	named := map[string]bool{}
	for _, it := range req.Items {
		named[it.SKU] = true
	}
	var out []Item
	var from []int
	k := 0
	for i, it := range req.Items {
		t := targets[i]
		if t == nil {
			out, from = append(out, it), append(from, i)
			continue
		}
		var refused *InsufficientError
		var picked []Item
		for j, sku := range t.skus {
			if j > 0 && named[sku] {
				continue
			}
			st := stocks[k+j]
			if j > 0 {
				st = st.at(t.listed[sku])
			}
			var ie *InsufficientError
			picked, ie = pick(st, t.region, cmp.Or(req.Strategy, t.region.Strategy), req.Near, it, sku)
			if ie == nil {
				named[sku] = true
				break
			}
			refused = cmp.Or(refused, ie)
		}
		k += len(t.skus)
		if picked == nil {
			return nil, nil, refused
		}
		for range picked {
			from = append(from, i)
		}
		out = append(out, picked...)
	}
	if len(out) > e.cfg.MaxCartLines {
		return nil, nil, invalid("items", "the cart would take %d lines from the region's locations, more than %d", len(out), e.cfg.MaxCartLines)
	}
	// What the cart's own check would refuse is refused before the plan is recorded.
	if req.Customer == "" {
		keys := make([]PoolKey, len(out))
		for i, it := range out {
			keys[i] = PoolKey{it.Location, it.SKU}
		}
		configs, err := e.cachedPools(ctx, keys)
		if err != nil {
			return nil, nil, err
		}
		for i, k := range keys {
			if c := configs[k]; c.CustomerLimit > 0 {
				return nil, nil, invalid("customer_id", "%s at %s (for line %d) allows %d units per customer: name the customer",
					k.SKU, k.Location, from[i], c.CustomerLimit)
			}
		}
	}
	return out, from, nil
}

// pick serves line it with sku from the locations of st (region r's stock of it): whole from
// the first location, in the strategy's order, that has the quantity, or split over as many
// as it takes when the line allows it.
func pick(st *RegionStock, r *Region, strategy string, near *Point, it Item, sku string) ([]Item, *InsufficientError) {
	var out []Item
	var best int64
	need := it.Qty
	for _, l := range order(st.Locations, r, strategy, near) {
		if l.Available <= 0 {
			continue
		}
		best = max(best, l.Available)
		switch {
		case !it.AllowSplit && l.Available >= need:
			out = append(out, Item{Location: l.Location, SKU: sku, Qty: need})
			need = 0
		case it.AllowSplit:
			take := min(l.Available, need)
			out = append(out, Item{Location: l.Location, SKU: sku, Qty: take})
			need -= take
		}
		if need == 0 {
			return out, nil
		}
	}
	ie := &InsufficientError{Location: it.Location, Region: r.Name, SKU: sku, Requested: it.Qty, Available: best}
	if it.AllowSplit {
		ie.Available = st.Available
	}
	return nil, ie
}

// substitutesIn lists the substitutes of sku's pools at region r's locations, in the order
// of the locations and of each pool's list, each once, with the locations that list each.
func (e *Engine) substitutesIn(ctx context.Context, r *Region, sku string) ([]string, map[string]map[string]bool, error) {
	keys := make([]PoolKey, len(r.Locations))
	for i, l := range r.Locations {
		keys[i] = PoolKey{l.Location, sku}
	}
	configs, err := e.cachedPools(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	listed := map[string]map[string]bool{}
	for _, k := range keys {
		for _, s := range configs[k].Substitutes {
			if listed[s] == nil {
				listed[s] = map[string]bool{}
				out = append(out, s)
			}
			listed[s][k.Location] = true
		}
	}
	return out, listed, nil
}

// at is the stock of st at the given locations only.
func (st *RegionStock) at(locs map[string]bool) *RegionStock {
	out := &RegionStock{Region: st.Region, SKU: st.SKU}
	for _, l := range st.Locations {
		if locs[l.Location] {
			out.Locations = append(out.Locations, l)
			out.Available += max(l.Available, 0)
		}
	}
	return out
}

// Alternative is a substitute offered when a hold is refused for stock.
type Alternative struct {
	SKU       string `json:"sku"`
	Location  string `json:"location,omitempty"`
	Region    string `json:"region,omitempty"`
	Available int64  `json:"available"`
}

// Alternatives lists the substitutes of the pool (or of the SKU's pools in the region) a
// refusal names that have units available there now, in the order the pools list them.
func (e *Engine) Alternatives(ctx context.Context, refused *InsufficientError) ([]Alternative, error) {
	r := &Region{Locations: []RegionLocation{{Location: refused.Location}}}
	if refused.Region != "" {
		var err error
		if r, err = e.RegionNamed(ctx, refused.Region, false); err != nil {
			return nil, err
		}
	}
	subs, listed, err := e.substitutesIn(ctx, r, refused.SKU)
	if err != nil || len(subs) == 0 {
		return nil, err
	}
	regions := make([]*Region, len(subs))
	for i := range regions {
		regions[i] = r
	}
	stocks, err := e.regionStocks(ctx, regions, subs)
	if err != nil {
		return nil, err
	}
	var out []Alternative
	for _, st := range stocks {
		if st = st.at(listed[st.SKU]); st.Available > 0 {
			out = append(out, Alternative{SKU: st.SKU, Location: refused.Location, Region: refused.Region, Available: st.Available})
		}
	}
	return out, nil
}

// order sorts a region's locations by strategy: by priority; by most units available; or
// by distance from near (locations without coordinates last). Ties go by priority, then name.
func order(locs []LocationStock, r *Region, strategy string, near *Point) []LocationStock {
	info := map[string]RegionLocation{}
	for _, l := range r.Locations {
		info[l.Location] = l
	}
	dist := func(loc string) float64 {
		l := info[loc]
		if near == nil || l.Lat == nil {
			return math.Inf(1)
		}
		return haversine(*near, Point{*l.Lat, *l.Lon})
	}
	out := slices.Clone(locs)
	slices.SortStableFunc(out, func(a, b LocationStock) int {
		var c int
		switch strategy {
		case StrategyMostStock:
			c = cmp.Compare(b.Available, a.Available)
		case StrategyNearest:
			c = cmp.Compare(dist(a.Location), dist(b.Location))
		}
		return cmp.Or(c, cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Location, b.Location))
	})
	return out
}

// haversine is the great-circle distance between two points, in kilometres.
func haversine(a, b Point) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (b.Lat-a.Lat)*rad, (b.Lon-a.Lon)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

func (e *Engine) readAlloc(ctx context.Context, key string) (*allocRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	raw, err := e.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read allocation: %w", ErrUnavailable, redisErr(err))
	}
	return decodeAlloc(raw)
}

func decodeAlloc(raw string) (*allocRecord, error) {
	var r allocRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("decode allocation record: %w", err)
	}
	r.raw = raw
	return &r, nil
}

// claimAlloc stores next unless the key has a record already, and returns the one it has
// then: next, or the record already there.
func (e *Engine) claimAlloc(ctx context.Context, key string, next *allocRecord) (*allocRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	raw, _ := json.Marshal(next)
	prior, err := e.rdb.SetArgs(ctx, key, raw, redis.SetArgs{Mode: "NX", Get: true, TTL: e.cfg.IdempotencyTTL}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		next.raw = string(raw)
		return next, nil
	case err != nil:
		return nil, fmt.Errorf("%w: store allocation: %w", ErrUnavailable, redisErr(err))
	}
	return decodeAlloc(prior)
}

// swapAlloc stores next in place of old (nil: none) and returns it; when another request
// changed the record first, it returns that one instead.
func (e *Engine) swapAlloc(ctx context.Context, key string, old, next *allocRecord) (*allocRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	raw, _ := json.Marshal(next)
	var cur *allocRecord
	err := e.rdb.Watch(ctx, func(tx *redis.Tx) error {
		now, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil): // none yet, or forgotten meanwhile: next it is
		case err != nil:
			return err
		case old == nil || now != old.raw:
			cur, err = decodeAlloc(now)
			return err
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key, raw, e.cfg.IdempotencyTTL)
			return nil
		})
		return err
	}, key)
	if errors.Is(err, redis.TxFailedErr) {
		return e.readAlloc(ctx, key)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: store allocation: %w", ErrUnavailable, redisErr(err))
	}
	if cur != nil {
		return cur, nil
	}
	next.raw = string(raw)
	return next, nil
}
