package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// idemKeyPattern is the charset of idempotency keys (UUIDs and the like).
var idemKeyPattern = namePattern{max: 128}

// Item is one line of a reservation: qty units of one pool.
type Item struct {
	Location string `json:"location"`
	SKU      string `json:"sku"`
	Qty      int64  `json:"qty"`
}

// ReserveRequest asks for a hold on one or more pools, all or nothing.
type ReserveRequest struct {
	Items []Item
	// Customer is who the hold is for (optional; required for pools with a per-customer limit
	// to count against it).
	Customer string
	// IdempotencyKey is required: a retry with the same key and request returns the first answer.
	IdempotencyKey string
	// TTL is the hold's lifetime; 0 means the configured default.
	TTL time.Duration
	// Actor is the API key id of the caller; idempotency keys are scoped to it.
	Actor string
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
}

// Hold statuses.
const (
	StatusActive    = "ACTIVE"
	StatusCommitted = "COMMITTED"
	StatusReleased  = "RELEASED"
	StatusExpired   = "EXPIRED"
	StatusMixed     = "MIXED"
)

// reqWidth is the number of values reserve.lua takes per request (its ARGV[3..18]); the qty
// and the expiry are at reqQty and reqExp.
const (
	reqWidth = 16
	reqQty   = 4
	reqExp   = 5
)

// placement asks one shard for one hold part.
type placement struct {
	partition int
	part      string
	pool      *pool
	shard     int
	qty       int64
	checkIdem bool
	final     bool
	pendingMs int64 // with checkIdem: mark the key in progress unless this call completes it
}

// reservation is one Reserve call in progress.
type reservation struct {
	req    ReserveRequest
	token  string
	fp     string
	exp    int64
	keepMs int64
	pools  []*pool
	home   []int // first shard tried per line
	// lines holds each line's parts while the lines are reserved (each line's own goroutine
	// appends to its own slice); gather then lists them all, in line order, in placed.
	lines  [][]placedPart
	placed []placedPart
	// slots counts the hold's parts, placed or being placed, against maxHoldParts; every
	// line's first part is counted from the start.
	slots atomic.Int32
	// marked: the first call marked the key in progress; a failure must clear the mark.
	marked bool
}

type placedPart struct {
	ref partRef
	qty int64
	new bool
}

func (e *Engine) validateReserve(req *ReserveRequest) error {
	if len(req.Items) == 0 {
		return invalid("items", "at least one item is required")
	}
	if len(req.Items) > e.cfg.MaxCartLines {
		return invalid("items", "at most %d items per reservation", e.cfg.MaxCartLines)
	}
	seen := make(map[PoolKey]bool, len(req.Items))
	for i, it := range req.Items {
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

// Reserve places a hold on every item of req, all or nothing. It returns the hold, or an
// error matching ErrInvalid, ErrUnknownPool, ErrInsufficient, ErrCustomerLimit,
// ErrIdempotencyMismatch, ErrHoldGone (the key's earlier hold has ended), ErrFenced or
// ErrUnavailable. A retry with the same key and request returns the first hold.
func (e *Engine) Reserve(ctx context.Context, req ReserveRequest) (*Hold, error) {
	if err := e.validateReserve(&req); err != nil {
		return nil, err
	}
	if req.TTL == 0 {
		req.TTL = e.cfg.DefaultTTL
	}
	rs := &reservation{
		req:    req,
		token:  idemToken(req.Actor, req.IdempotencyKey),
		exp:    e.nowMs() + req.TTL.Milliseconds(),
		keepMs: e.cfg.IdempotencyTTL.Milliseconds(),
		pools:  make([]*pool, len(req.Items)),
		home:   make([]int, len(req.Items)),
		lines:  make([][]placedPart, len(req.Items)),
	}
	rs.slots.Store(int32(len(req.Items)))
	fp := []string{req.Customer, strconv.FormatInt(req.TTL.Milliseconds(), 10)}
	for i, it := range req.Items {
		p, err := e.pool(ctx, it.Location, it.SKU)
		if err != nil {
			return nil, err
		}
		rs.pools[i] = p
		rs.home[i] = homeShard(p, rs.token, i, req.Customer)
		fp = append(fp, it.Location, it.SKU, strconv.FormatInt(it.Qty, 10))
	}
	rs.fp = fingerprint(fp...)

	if err := e.checkSoldOut(ctx, rs); err != nil {
		return nil, err
	}
	replay, err := e.reserveLines(ctx, rs)
	if err != nil {
		e.abandon(ctx, rs)
		return nil, err
	}
	if replay != nil {
		return replay, nil
	}
	hold, err := e.finish(ctx, rs)
	if err != nil {
		e.abandon(ctx, rs)
		return nil, err
	}
	e.stats.Reserves.Add(1)
	return hold, nil
}

// reserveLines reserves every line: the first alone (its call checks the idempotency record
// and marks the key in progress), then all the others at once, so that their calls share
// the coalescer's round trips. It returns a replayed hold when the first line's call
// answered from the idempotency record, or the error of the first line that failed.
func (e *Engine) reserveLines(ctx context.Context, rs *reservation) (*Hold, error) {
	defer rs.gather()
	replay, err := e.reserveLine(ctx, rs, 0)
	if err != nil || replay != nil || len(rs.req.Items) == 1 {
		return replay, err
	}
	errs := make([]error, len(rs.req.Items))
	var wg sync.WaitGroup
	for li := 2; li < len(rs.req.Items); li++ {
		wg.Go(func() { _, errs[li] = e.reserveLine(ctx, rs, li) })
	}
	_, errs[1] = e.reserveLine(ctx, rs, 1) // lines after the first never replay
	wg.Wait()
	return nil, firstErr(errs)
}

// gather lists the parts of every line, in line order, in placed.
func (rs *reservation) gather() {
	for li, parts := range rs.lines {
		rs.placed = append(rs.placed, parts...)
		rs.lines[li] = nil
	}
}

// homeShard is the first shard a line tries. Pools with a per-customer limit keep each
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

func (rs *reservation) homePartition() int { return rs.pools[0].partitions[rs.home[0]] }

// checkSoldOut refuses in process, without running a script, lines whose pool is known to be
// empty: found so less than SoldOutMemory ago, or perishable and past its best-before date.
// An earlier answer under the same key still wins, so one cheap read of the idempotency
// record is made before refusing.
func (e *Engine) checkSoldOut(ctx context.Context, rs *reservation) error {
	now := e.now()
	for i, p := range rs.pools {
		expired := p.BestBefore > 0 && now.UnixMilli() >= p.BestBefore
		until, ok := e.soldOut.Load(p.Key())
		if !expired && (!ok || !now.Before(until.(time.Time))) {
			continue
		}
		home := partRef{Partition: rs.homePartition(), Line: 0, Shard: rs.home[0]}.id(rs.token)
		seen, err := e.idemLookup(ctx, e.ks.holdsKey(rs.homePartition()), "i:"+rs.token, home, "d:"+home)
		if err != nil {
			return fmt.Errorf("idempotency lookup: %w", redisErr(err))
		}
		if seen[0] != nil || seen[1] != nil || seen[2] != nil {
			return nil // asked before: the scripts answer
		}
		e.stats.SoldOutFast.Add(1)
		return &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: rs.req.Items[i].Qty}
	}
	return nil
}

// idemLookup reads fields of hash key, through the coalescer when it is on.
func (e *Engine) idemLookup(ctx context.Context, key string, fields ...string) ([]any, error) {
	if e.batchers != nil {
		return e.batchers.lookup(ctx, key, fields...)
	}
	e.stats.LookupBatches.Add(1)
	e.stats.Lookups.Add(1)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	return e.rdb.HMGet(ctx, key, fields...).Result()
}

func (e *Engine) markSoldOut(k PoolKey) {
	if e.cfg.SoldOutMemory > 0 {
		e.soldOut.Store(k, e.now().Add(e.cfg.SoldOutMemory))
	}
}

func (e *Engine) forgetSoldOut(k PoolKey) { e.soldOut.Delete(k) }

// place asks one shard for one part, through the coalescer when it is on.
func (e *Engine) place(ctx context.Context, rs *reservation, pl placement) (reply, error) {
	args := []any{pl.part, pl.pool.Location, pl.pool.SKU, pl.shard, pl.qty, rs.exp, rs.req.Customer,
		pl.pool.CustomerLimit, rs.token, rs.fp, flag(pl.checkIdem), flag(pl.final),
		rs.req.Actor, e.cfg.ReclaimInline, rs.keepMs, pl.pendingMs}
	return e.call(ctx, "reserve", pl.partition, args...)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// reserveLine reserves line li, on its home shard if it can, else across shards. It returns a
// replayed hold when the home shard answers from the idempotency record.
func (e *Engine) reserveLine(ctx context.Context, rs *reservation, li int) (*Hold, error) {
	p, qty, s0 := rs.pools[li], rs.req.Items[li].Qty, rs.home[li]
	single := len(rs.req.Items) == 1
	ref := partRef{Partition: p.partitions[s0], Line: li, Shard: s0}
	pl := placement{partition: ref.Partition, part: ref.id(rs.token), pool: p, shard: s0, qty: qty,
		checkIdem: li == 0, final: single}
	if li == 0 && (p.Shards > 1 || !single) {
		pl.pendingMs = e.cfg.IdempotencyLease.Milliseconds()
	}
	r, err := e.place(ctx, rs, pl)
	if err != nil {
		return nil, err
	}
	avail := make(map[int]int64, p.Shards)
	fenced := map[int]bool{}
	if pl.pendingMs > 0 && (r.code() == "OK" || r.code() == "INSUFFICIENT") {
		rs.marked = true
	}
	switch r.code() {
	case "REPLAY":
		h, _, err := e.decodeAnswer(r.str(1), rs)
		return h, err
	case "OK":
		if single && r.str(4) == "existing" && r.int(1) == qty {
			return e.replaySingle(rs, ref, qty, r.int(2)), nil // a retry of a one-part hold
		}
		rs.lines[li] = append(rs.lines[li], placedPart{ref: ref, qty: r.int(1), new: r.str(4) == "new"})
		if r.int(1) >= qty {
			return nil, nil
		}
		qty -= r.int(1)
	case "INSUFFICIENT":
		avail[s0] = r.int(1)
	case "FENCED":
		fenced[s0] = true
		if p.Shards == 1 {
			return nil, fencedErr(ref.Partition, r)
		}
	case "ENDED":
		if single && r.int(2) == qty {
			return e.replaySingle(rs, ref, qty, r.int(3)), nil // a retry after the hold ended
		}
		return nil, e.placeErr(r, p, rs, li)
	default:
		return nil, e.placeErr(r, p, rs, li)
	}
	if p.Shards == 1 {
		return nil, e.insufficient(p, rs.req.Items[li].Qty, avail[s0])
	}
	if p.CustomerLimit > 0 && rs.req.Customer != "" {
		return nil, e.reserveByTransfer(ctx, rs, li, fenced)
	}
	return nil, e.reserveParts(ctx, rs, li, qty, fenced)
}

// reserveParts takes the rest of a line from other shards, largest first, as extra parts.
func (e *Engine) reserveParts(ctx context.Context, rs *reservation, li int, need int64, fenced map[int]bool) error {
	p := rs.pools[li]
	counts, err := e.shardCounts(ctx, p)
	if err != nil {
		return err
	}
	holding := map[int]bool{}
	var reachable int64 // units this line could still get: what it holds plus free shards
	for _, pp := range rs.lines[li] {
		holding[pp.ref.Shard] = true
		reachable += pp.qty
	}
	for s, c := range counts {
		if !holding[s] && !fenced[s] {
			reachable += max(c.Available, 0)
		}
	}
	if reachable < rs.req.Items[li].Qty {
		// Not enough in the whole pool: refuse before placing parts that would be given back.
		if len(fenced) == p.Shards {
			return fmt.Errorf("%w: every shard of %s is fenced", ErrFenced, p.Key())
		}
		return e.insufficient(p, rs.req.Items[li].Qty, reachable)
	}
	for attempt := 0; need > 0 && attempt < 2*p.Shards; attempt++ {
		best := -1
		for s := range counts {
			if holding[s] || fenced[s] || counts[s].Available <= 0 {
				continue
			}
			if best < 0 || counts[s].Available > counts[best].Available {
				best = s
			}
		}
		if best < 0 {
			break
		}
		if rs.slots.Add(1) > maxHoldParts {
			rs.slots.Add(-1)
			break
		}
		ref := partRef{Partition: p.partitions[best], Line: li, Shard: best}
		r, err := e.place(ctx, rs, placement{partition: ref.Partition, part: ref.id(rs.token), pool: p,
			shard: best, qty: min(need, counts[best].Available)})
		if err != nil {
			return err
		}
		if r.code() != "OK" {
			rs.slots.Add(-1)
		}
		switch r.code() {
		case "OK":
			rs.lines[li] = append(rs.lines[li], placedPart{ref: ref, qty: r.int(1), new: r.str(4) == "new"})
			holding[best] = true
			need -= r.int(1)
			counts[best].Available = r.int(3)
		case "INSUFFICIENT":
			counts[best].Available = r.int(1)
		case "FENCED":
			fenced[best] = true
		default:
			return e.placeErr(r, p, rs, li)
		}
	}
	if need <= 0 {
		return nil
	}
	var total int64
	for s, c := range counts {
		if !fenced[s] {
			total += c.Available
		}
	}
	for _, pp := range rs.lines[li] {
		total += pp.qty
	}
	if len(fenced) == p.Shards {
		return fmt.Errorf("%w: every shard of %s is fenced", ErrFenced, p.Key())
	}
	return e.insufficient(p, rs.req.Items[li].Qty, total)
}

// reserveByTransfer serves a pool with a per-customer limit: the customer's units must come
// from the customer's home shard, so units are first moved there from other shards.
func (e *Engine) reserveByTransfer(ctx context.Context, rs *reservation, li int, fenced map[int]bool) error {
	p, qty, s0 := rs.pools[li], rs.req.Items[li].Qty, rs.home[li]
	if fenced[s0] {
		return fmt.Errorf("%w: partition %d holds customer %s's shard of %s", ErrFenced, p.partitions[s0], rs.req.Customer, p.Key())
	}
	ref := partRef{Partition: p.partitions[s0], Line: li, Shard: s0}
	var total int64
	for attempt := 0; attempt < 3; attempt++ {
		counts, err := e.shardCounts(ctx, p)
		if err != nil {
			return err
		}
		total = 0
		for _, c := range counts {
			total += c.Available
		}
		if total < qty {
			break
		}
		need := qty - counts[s0].Available
		for need > 0 {
			src := -1
			for s, c := range counts {
				if s != s0 && c.Available > 0 && (src < 0 || c.Available > counts[src].Available) {
					src = s
				}
			}
			if src < 0 {
				break
			}
			n := min(need, counts[src].Available)
			id := rs.token + "." + strconv.Itoa(li) + "." + strconv.Itoa(attempt) + "." + strconv.Itoa(src)
			moved, err := e.Transfer(ctx, p.Location, p.SKU, src, s0, n, id, "engine")
			if err != nil && !errors.Is(err, ErrInsufficient) && !errors.Is(err, ErrFenced) {
				return err
			}
			counts[src].Available = 0
			need -= moved
		}
		r, err := e.place(ctx, rs, placement{partition: ref.Partition, part: ref.id(rs.token), pool: p,
			shard: s0, qty: qty, final: len(rs.req.Items) == 1})
		if err != nil {
			return err
		}
		switch r.code() {
		case "OK":
			rs.lines[li] = append(rs.lines[li], placedPart{ref: ref, qty: r.int(1), new: r.str(4) == "new"})
			return nil
		case "INSUFFICIENT":
			continue
		case "FENCED":
			return fencedErr(ref.Partition, r)
		default:
			return e.placeErr(r, p, rs, li)
		}
	}
	return e.insufficient(p, qty, total)
}

// placeErr maps a refusal that no other shard can fix.
func (e *Engine) placeErr(r reply, p *pool, rs *reservation, li int) error {
	switch r.code() {
	case "LIMIT":
		return &LimitError{Customer: rs.req.Customer, Used: r.int(1), Limit: p.CustomerLimit, Qty: rs.req.Items[li].Qty}
	case "ENDED":
		return fmt.Errorf("%w: the hold placed earlier under this idempotency key has %s; use a new key",
			ErrHoldGone, strings.ToLower(r.str(1)))
	case "IDEM_MISMATCH":
		return ErrIdempotencyMismatch
	case "IN_PROGRESS":
		return ErrInProgress
	case "UNKNOWN_POOL":
		return fmt.Errorf("%w: %s has no shard in Redis", ErrUnknownPool, p.Key())
	case "REPLAY":
		// Only the first call checks the idempotency record; a replay elsewhere means the
		// first answer was stored while this call ran.
		return fmt.Errorf("%w: a concurrent request with this key completed first; retry to read its answer", ErrIdempotencyMismatch)
	}
	return fmt.Errorf("reserve: unexpected reply %v", []any(r))
}

func (e *Engine) insufficient(p *pool, requested, available int64) error {
	if available <= 0 {
		e.markSoldOut(p.Key())
	}
	return &InsufficientError{Location: p.Location, SKU: p.SKU, Requested: requested, Available: max(available, 0)}
}

// finish builds the hold and, unless the fast path already stored it, stores the answer under
// the idempotency token. A concurrent duplicate that stored its answer first wins: this call's
// own extra parts are given back and the stored answer returned.
func (e *Engine) finish(ctx context.Context, rs *reservation) (*Hold, error) {
	refs := make([]partRef, len(rs.placed))
	qtys := make([]int64, len(rs.placed))
	for i, pp := range rs.placed {
		refs[i], qtys[i] = pp.ref, pp.qty
	}
	id := formatHoldID(rs.token, refs)
	answer := encodeAnswer(id, rs.exp, qtys)
	// A one-part hold on its home shard is its own idempotency record: a retry finds the part
	// (or its tombstone) under the same id. Anything else stores its answer under the token.
	self := len(rs.placed) == 1 && len(rs.req.Items) == 1 && rs.placed[0].ref.Shard == rs.home[0] &&
		rs.placed[0].qty == rs.req.Items[0].Qty
	if !self {
		r, err := e.call(ctx, "remember", rs.homePartition(), rs.token, rs.fp, answer, rs.keepMs)
		if err != nil {
			return nil, err
		}
		if r.code() == "IDEM_MISMATCH" {
			return nil, ErrIdempotencyMismatch
		}
		if stored := r.str(1); stored != answer {
			first, firstRefs, err := e.decodeAnswer(stored, rs)
			if err != nil {
				return nil, err
			}
			keep := make(map[partRef]bool, len(firstRefs))
			for _, ref := range firstRefs {
				keep[ref] = true
			}
			var extra []placedPart
			for _, pp := range rs.placed {
				if !keep[pp.ref] {
					extra = append(extra, pp)
				}
			}
			rs.placed = extra
			e.compensate(ctx, rs)
			return first, nil
		}
	}
	return e.holdFromParts(id, rs.exp, rs.req.Customer, refs, qtys, rs.pools), nil
}

// abandon undoes a failed reservation: its parts are given back and its in-progress mark
// cleared, so the same key can be retried.
func (e *Engine) abandon(ctx context.Context, rs *reservation) {
	e.compensate(ctx, rs)
	if !rs.marked {
		return
	}
	if _, err := e.call(context.WithoutCancel(ctx), "remember", rs.homePartition(), rs.token, rs.fp, "", rs.keepMs); err != nil {
		e.log.Warn().Err(err).Msg("clearing an in-progress mark failed; it lapses after the lease")
	}
}

// compensate gives back the parts this call placed itself, leaving no tombstone, so that a
// retry with the same key may place them again. Errors are logged: a part not given back
// expires by itself.
func (e *Engine) compensate(ctx context.Context, rs *reservation) {
	var refs []partRef
	for _, pp := range rs.placed {
		if pp.new {
			refs = append(refs, pp.ref)
		}
	}
	rs.placed = nil
	if len(refs) == 0 {
		return
	}
	out, errs := e.runParts(context.WithoutCancel(ctx), "release", rs.token, refs, rs.req.Actor, 0, "compensation")
	for i, ref := range refs {
		if err := errs[i]; err != nil || (out[i].code() != "OK" && out[i].code() != "ENDED") {
			e.log.Warn().Err(err).Str("part", ref.id(rs.token)).Msg("compensating release failed; the part will expire")
		}
	}
}

// An answer stored under an idempotency token: "<hold id>|<expires ms>|<qty>,<qty>,...".
func encodeAnswer(id string, exp int64, qtys []int64) string {
	q := make([]string, len(qtys))
	for i, n := range qtys {
		q[i] = strconv.FormatInt(n, 10)
	}
	return id + "|" + strconv.FormatInt(exp, 10) + "|" + strings.Join(q, ",")
}

func (e *Engine) decodeAnswer(a string, rs *reservation) (*Hold, []partRef, error) {
	f := strings.Split(a, "|")
	if len(f) != 3 {
		return nil, nil, fmt.Errorf("stored answer %q: want 3 fields", a)
	}
	token, refs, err := parseHoldID(f[0], e.cfg.Partitions)
	if err != nil || token != rs.token {
		return nil, nil, fmt.Errorf("stored answer %q: bad hold id", a)
	}
	exp, _ := strconv.ParseInt(f[1], 10, 64)
	qs := strings.Split(f[2], ",")
	if len(qs) != len(refs) {
		return nil, nil, fmt.Errorf("stored answer %q: %d quantities for %d parts", a, len(qs), len(refs))
	}
	qtys := make([]int64, len(qs))
	for i, s := range qs {
		qtys[i], _ = strconv.ParseInt(s, 10, 64)
	}
	h := e.holdFromParts(f[0], exp, rs.req.Customer, refs, qtys, rs.pools)
	h.Replayed = true
	return h, refs, nil
}

// replaySingle rebuilds the answer of a one-part hold from its part record or tombstone.
func (e *Engine) replaySingle(rs *reservation, ref partRef, qty, exp int64) *Hold {
	h := e.holdFromParts(formatHoldID(rs.token, []partRef{ref}), exp, rs.req.Customer, []partRef{ref}, []int64{qty}, rs.pools)
	h.Replayed = true
	return h
}

func (e *Engine) holdFromParts(id string, exp int64, customer string, refs []partRef, qtys []int64, pools []*pool) *Hold {
	h := &Hold{ID: id, ExpiresAt: exp, Customer: customer, Status: StatusActive, Parts: make([]HoldPart, len(refs))}
	for i, r := range refs {
		p := pools[r.Line]
		h.Parts[i] = HoldPart{Location: p.Location, SKU: p.SKU, Shard: r.Shard, Partition: r.Partition, Qty: qtys[i]}
	}
	return h
}
