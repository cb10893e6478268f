package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// idemKeyPattern is the charset of idempotency keys (UUIDs and the like).
var idemKeyPattern = namePattern{max: 128}

// Item is one line of a reservation: qty units of one pool, or of a SKU in a region (the
// engine picks the location; see ReserveRequest.Strategy).
type Item struct {
	Location string `json:"location"`
	SKU      string `json:"sku"`
	Qty      int64  `json:"qty"`
	// Region, instead of Location: the line is taken from the region's locations.
	Region string `json:"region,omitempty"`
	// AllowSplit lets a regional line be taken from several locations.
	AllowSplit bool `json:"allow_split,omitempty"`
	// Substitute: when the SKU cannot be had, hold the first of its pool's substitutes that
	// can (see allocate.go).
	Substitute bool `json:"substitute,omitempty"`
}

// ReserveRequest asks for a hold on one or more pools, all or nothing.
type ReserveRequest struct {
	Items []Item
	// Customer is who the hold is for (required for pools with a per-customer limit).
	Customer string
	// IdempotencyKey is required: a retry with the same key and request returns the first answer.
	IdempotencyKey string
	// TTL is the hold's lifetime; 0 means the configured default.
	TTL time.Duration
	// Actor is the API key id of the caller; idempotency keys are scoped to it, and only it
	// may read, extend, commit or release the hold.
	Actor string
	// Strategy, for regional lines, overrides the region's (StrategyPriority,
	// StrategyMostStock, StrategyNearest); Near is the point StrategyNearest measures from.
	Strategy string
	Near     *Point

	// scope, when set, puts the key in a namespace of its own: an allocation's placement
	// attempts (see allocate.go) use it, and no caller can.
	scope string
}

// HoldPart is the share of a hold taken from one shard.
type HoldPart struct {
	Location  string `json:"location"`
	SKU       string `json:"sku"`
	Shard     int    `json:"shard"`
	Partition int    `json:"partition"`
	Qty       int64  `json:"qty"`
	// Status is ACTIVE, COMMITTED, RELEASED or EXPIRED (filled in by GetHold).
	Status string `json:"status,omitempty"`
	// Backordered: the part's units are owed, taken from stock when they come (see
	// PoolConfig.Policy); a part placed so and filled since reads false.
	Backordered bool `json:"backordered,omitempty"`
}

// Hold is a reservation of units on one or more pools.
type Hold struct {
	ID        string     `json:"hold_id"`
	Parts     []HoldPart `json:"parts"`
	ExpiresAt int64      `json:"expires_at_ms"`
	Customer  string     `json:"customer_id,omitempty"`
	// Status is ACTIVE, COMMITTED, RELEASED, EXPIRED, or MIXED when parts ended differently.
	Status string `json:"status"`
	// Replayed is true when the answer is that of an earlier call with the same key.
	Replayed bool `json:"-"`
	// Substitutions names the lines held as a substitute of the SKU asked for.
	Substitutions []Substitution `json:"substitutions,omitempty"`
}

// Substitution is a cart line held as another SKU than the one asked for.
type Substitution struct {
	Line      int    `json:"line"`
	Requested string `json:"requested_sku"`
	SKU       string `json:"sku"`
}

// Hold statuses.
const (
	StatusActive    = "ACTIVE"
	StatusCommitted = "COMMITTED"
	StatusReleased  = "RELEASED"
	StatusExpired   = "EXPIRED"
	StatusMixed     = "MIXED"
)

// reqWidth is the number of values reserve.lua takes per request (its ARGV[3..20]); the qty
// and the expiry are at reqQty and reqExp.
const (
	reqWidth = 18
	reqQty   = 4
	reqExp   = 5
)

// Modes of a reserve request (see reserve_one in lib.lua).
const (
	modeFinal = "F" // the fast path on the pool's only shard: a shortage is the answer
	modeSlow  = "S" // the fast path on a sharded pool: a shortage sends the request on
	modePart  = "P" // a part of a slow-path attempt
)

// reservation is one Reserve call in progress.
type reservation struct {
	req    ReserveRequest
	token  string
	fp     string
	exp    int64
	pools  []*pool
	home   []int  // each line's home shard: where the fast path tries
	kp     int    // the partition of the key record
	record string // the key record

	mu     sync.Mutex
	fenced map[partRef]bool // shards found fenced (Line: the line), remembered across attempts
}

func (rs *reservation) isFenced(li, s int) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.fenced[partRef{Line: li, Shard: s}]
}

func (rs *reservation) setFenced(li, s int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.fenced == nil {
		rs.fenced = map[partRef]bool{}
	}
	rs.fenced[partRef{Line: li, Shard: s}] = true
}

func (e *Engine) validateReserve(req *ReserveRequest) error {
	if len(req.Items) == 0 {
		return invalid("items", "at least one item is required")
	}
	if len(req.Items) > e.cfg.MaxCartLines {
		return invalid("items", "at most %d items per reservation", e.cfg.MaxCartLines)
	}
	if req.Strategy != "" {
		return invalid("strategy", "strategy applies to lines with a region")
	}
	if req.Near != nil {
		return invalid("near", "near applies to lines with a region")
	}
	seen := make(map[PoolKey]bool, len(req.Items))
	for i, it := range req.Items {
		if it.AllowSplit {
			return invalid(fmt.Sprintf("items[%d].allow_split", i), "only a line with a region can be split")
		}
		if err := validatePoolKey(it.Location, it.SKU); err != nil {
			var ve *ValidationError
			errors.As(err, &ve)
			return invalid(fmt.Sprintf("items[%d].%s", i, ve.Field), "%s", ve.Reason)
		}
		if it.Qty < 1 || it.Qty > e.cfg.MaxQty {
			return invalid(fmt.Sprintf("items[%d].qty", i), "must be 1..%d", e.cfg.MaxQty)
		}
		k := PoolKey{it.Location, it.SKU}
		if seen[k] {
			return invalid(fmt.Sprintf("items[%d]", i), "%s at %s appears twice; give one line per pool", it.SKU, it.Location)
		}
		seen[k] = true
	}
	if req.Customer != "" && !idPattern.MatchString(req.Customer) {
		return invalid("customer_id", "must match %s", idPattern)
	}
	if !idemKeyPattern.MatchString(req.IdempotencyKey) {
		return invalid("idempotency_key", "required, must match %s", idemKeyPattern)
	}
	if req.Actor != "" && !idPattern.MatchString(req.Actor) {
		return invalid("actor", "must match %s", idPattern)
	}
	if req.TTL != 0 && (req.TTL < e.cfg.MinTTL || req.TTL > e.cfg.MaxTTL) {
		return invalid("ttl_ms", "must be %d..%d", e.cfg.MinTTL.Milliseconds(), e.cfg.MaxTTL.Milliseconds())
	}
	return nil
}

// reserve is Reserve without its span.
func (e *Engine) reserve(ctx context.Context, req ReserveRequest) (*Hold, error) {
	if planned(req) {
		return e.allocate(ctx, req)
	}
	if err := e.validateReserve(&req); err != nil {
		return nil, err
	}
	if req.TTL == 0 {
		req.TTL = e.cfg.DefaultTTL
	}
	actor := req.Actor
	if req.scope != "" {
		actor += "\x00" + req.scope // no actor holds a NUL
	}
	rs := &reservation{
		req:   req,
		token: e.token(actor, req.IdempotencyKey),
		exp:   e.nowMs() + req.TTL.Milliseconds(),
		pools: make([]*pool, len(req.Items)),
		home:  make([]int, len(req.Items)),
	}
	rs.kp = e.keyPartition(rs.token)
	rs.record = e.ks.recordKey(rs.kp, rs.token)
	fp := []string{req.Customer, strconv.FormatInt(req.TTL.Milliseconds(), 10)}
	for i, it := range req.Items {
		p, err := e.pool(ctx, it.Location, it.SKU)
		if err != nil {
			return nil, err
		}
		if p.CustomerLimit > 0 && req.Customer == "" {
			return nil, invalid("customer_id", "%s at %s allows %d units per customer: name the customer", it.SKU, it.Location, p.CustomerLimit)
		}
		rs.pools[i] = p
		rs.home[i] = homeShard(p, rs.token, i, req.Customer)
		fp = append(fp, it.Location, it.SKU, strconv.FormatInt(it.Qty, 10))
	}
	rs.fp = fingerprint(fp...)

	var h *Hold
	var err error
	if len(req.Items) == 1 {
		h, err = e.reserveOne(ctx, rs)
	} else {
		h, err = e.slowPath(ctx, rs)
	}
	if err == nil && !h.Replayed {
		e.stats.Reserves.Add(1)
	}
	return h, err
}

// homeShard is the shard a line's fast path tries. Pools with a per-customer limit keep each
// customer on one shard, whose partition counts that customer's units atomically.
func homeShard(p *pool, token string, line int, customer string) int {
	h := fnv.New32a()
	if p.CustomerLimit > 0 && customer != "" {
		h.Write([]byte(customer))
	} else {
		h.Write([]byte(token))
		h.Write([]byte{byte(line)})
	}
	return int(h.Sum32() % uint32(p.Shards))
}

// refusalKeep is how long rs's refusal is answered: FLASHHOLD_REFUSAL_TTL, or, for an
// allocation's attempt, as long as any answer, so that a refused attempt can never be placed
// later (see allocate.go).
func (e *Engine) refusalKeep(rs *reservation) time.Duration {
	if rs.req.scope != "" {
		return e.cfg.IdempotencyTTL
	}
	return e.cfg.RefusalTTL
}

// place asks one shard for one part (ref) of hold hk, through the coalescer when it is on;
// plain commands natives go out in the same round trip.
func (e *Engine) place(ctx context.Context, rs *reservation, hk holdKey, ref partRef, qty int64, mode string, natives ...redis.Cmder) (reply, error) {
	p := rs.pools[ref.Line]
	args := []any{hk.part(ref), p.Location, p.SKU, ref.Shard, qty, rs.exp, rs.req.Customer, p.CustomerLimit,
		rs.token, rs.fp, mode, owner(rs.req.Actor), e.cfg.ReclaimInline, e.cfg.IdempotencyTTL.Milliseconds(),
		e.refusalKeep(rs).Milliseconds(), p.SafetyStock, p.CustomerWindow, p.backorderArg(e.nowMs(), rs.req.scope == "")}
	if e.batchers != nil {
		return e.batchers.call(ctx, "reserve", ref.Partition, "", args, natives...)
	}
	out, errs := e.runAll(ctx, e.nowMs(), []opCall{{name: "reserve", p: ref.Partition, args: [][]any{args}}}, natives...)
	return out[0], errs[0]
}

// owner is the owner a part placed by actor gets (and must have to be acted on by it).
func owner(actor string) string {
	if actor == "" {
		return "-"
	}
	return actor
}

// refusal turns a refused shard's or record's reply (code INSUFFICIENT or LIMIT, n) into the
// caller's error.
func (e *Engine) refusal(rs *reservation, li int, code string, n int64) error {
	if li < 0 || li >= len(rs.pools) {
		li = 0
	}
	p := rs.pools[li]
	if code == "LIMIT" {
		return &LimitError{Customer: rs.req.Customer, Used: n, Limit: p.CustomerLimit, Qty: rs.req.Items[li].Qty}
	}
	return &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: rs.req.Items[li].Qty, Available: max(n, 0)}
}

// An answer stored in a key record: "<hold id>;<expires ms>;<qty>,<qty>,...", a qty followed
// by "b" when its part was backordered.
func encodeAnswer(id string, exp int64, qtys []int64, bos []bool) string {
	q := make([]string, len(qtys))
	for i, n := range qtys {
		q[i] = strconv.FormatInt(n, 10)
		if i < len(bos) && bos[i] {
			q[i] += "b"
		}
	}
	return id + ";" + strconv.FormatInt(exp, 10) + ";" + strings.Join(q, ",")
}

// decodeAnswer rebuilds the hold a key record's answer names, as the replay of rs.
func (e *Engine) decodeAnswer(a string, rs *reservation) (*Hold, error) {
	f := strings.Split(a, ";")
	if len(f) != 3 {
		return nil, fmt.Errorf("stored answer %q: want 3 fields", a)
	}
	hk, refs, err := parseHoldID(f[0], e.cfg.Partitions)
	if err != nil || hk.token != rs.token {
		return nil, fmt.Errorf("stored answer %q: bad hold id", a)
	}
	exp, _ := strconv.ParseInt(f[1], 10, 64)
	qs := strings.Split(f[2], ",")
	if len(qs) != len(refs) {
		return nil, fmt.Errorf("stored answer %q: %d quantities for %d parts", a, len(qs), len(refs))
	}
	qtys, bos := make([]int64, len(qs)), make([]bool, len(qs))
	for i, s := range qs {
		s, bos[i] = strings.CutSuffix(s, "b")
		qtys[i], _ = strconv.ParseInt(s, 10, 64)
	}
	h := e.holdFromParts(f[0], exp, rs.req.Customer, refs, qtys, bos, rs.pools)
	h.Replayed = true
	return h, nil
}

func (e *Engine) holdFromParts(id string, exp int64, customer string, refs []partRef, qtys []int64, bos []bool, pools []*pool) *Hold {
	h := &Hold{ID: id, ExpiresAt: exp, Customer: customer, Status: StatusActive, Parts: make([]HoldPart, len(refs))}
	for i, r := range refs {
		p := pools[r.Line]
		h.Parts[i] = HoldPart{Location: p.Location, SKU: p.SKU, Shard: r.Shard, Partition: r.Partition, Qty: qtys[i]}
		if i < len(bos) {
			h.Parts[i].Backordered = bos[i]
		}
	}
	return h
}

// voidParts gives back (or makes unplaceable) the named parts of hold hk, grouped by
// partition, in one round trip. It fails when any partition could not be reached or is
// fenced: the caller must then not act as if they were gone.
func (e *Engine) voidParts(ctx context.Context, hk holdKey, refs []partRef, actor, reason string) error {
	if len(refs) == 0 {
		return nil
	}
	byPartition := map[int][]any{}
	var order []int
	for _, r := range refs {
		if _, ok := byPartition[r.Partition]; !ok {
			order = append(order, r.Partition)
		}
		byPartition[r.Partition] = append(byPartition[r.Partition], hk.part(r))
	}
	calls := make([]opCall, len(order))
	for i, p := range order {
		calls[i] = opCall{name: "void", p: p, args: [][]any{{owner(actor), e.cfg.IdempotencyTTL.Milliseconds(), reason}, byPartition[p]}}
	}
	out, errs := e.runAll(ctx, e.nowMs(), calls)
	for i, p := range order {
		if errs[i] != nil {
			return errs[i]
		}
		if out[i].code() == "FENCED" {
			// Writes there are refused, ours included; reconciliation's repair rebuilds the
			// partition, and a part of ours placed before the fence expires like any other.
			e.log.Warn().Int("partition", p).Str("hold", hk.String()).Msg("parts to void sit on a fenced partition; left to expire")
		}
	}
	return nil
}
