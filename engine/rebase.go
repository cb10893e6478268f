package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMoved means a partition changed between the read a repair was computed from and the
// repair itself: read again.
var ErrMoved = errors.New("partition moved since it was read")

// HoldRecord is an active hold part as Redis keeps it.
type HoldRecord struct {
	Location  string
	SKU       string
	Shard     int
	Qty       int64
	ExpiresAt int64 // unix ms
	Customer  string
	// Limited: the units count against the customer's limit on the pool; Window (ms, with
	// Limited), when set, is the limit's window: once sold, they count for that long.
	Limited bool
	Window  int64
	Token   string
	Created int64 // unix ms
	// Fingerprint of the request that placed it; empty when restored from the ledger (which
	// does not keep it), and then any retry with the same token is taken as the same request.
	Fingerprint string
	// Owner is the API key that placed it (the RESERVED event's actor); empty: anyone.
	Owner string
	// Backordered: its units are owed, not yet taken from stock (see PoolConfig.Policy).
	Backordered bool `json:",omitempty"`
}

// encode returns the record's Redis form (see enc_hold in lib.lua).
func (h HoldRecord) encode() string {
	limited := "0"
	switch {
	case h.Limited && h.Window > 0:
		limited = "w" + strconv.FormatInt(h.Window, 10)
	case h.Limited:
		limited = "1"
	}
	f := []string{h.Location, h.SKU, strconv.Itoa(h.Shard), strconv.FormatInt(h.Qty, 10),
		strconv.FormatInt(h.ExpiresAt, 10), h.Customer, limited, h.Token, strconv.FormatInt(h.Created, 10), h.Fingerprint,
		h.Owner}
	if h.Backordered {
		f = append(f, "b")
	}
	return strings.Join(f, "|")
}

// decodeHoldRecord parses a hold part's Redis form (records written before parts had owners
// have ten fields; a backordered part's has twelve).
func decodeHoldRecord(s string) (HoldRecord, bool) {
	f := strings.Split(s, "|")
	if len(f) < 10 || len(f) > 12 || len(f) == 12 && f[11] != "b" {
		return HoldRecord{}, false
	}
	h := HoldRecord{Location: f[0], SKU: f[1], Customer: f[5], Limited: f[6] != "0" && f[6] != "", Token: f[7], Fingerprint: f[9]}
	if len(f) >= 11 {
		h.Owner = f[10]
	}
	h.Backordered = len(f) == 12
	var errs [5]error
	if w, ok := strings.CutPrefix(f[6], "w"); ok {
		h.Window, errs[4] = strconv.ParseInt(w, 10, 64)
	}
	h.Shard, errs[0] = strconv.Atoi(f[2])
	h.Qty, errs[1] = strconv.ParseInt(f[3], 10, 64)
	h.ExpiresAt, errs[2] = strconv.ParseInt(f[4], 10, 64)
	h.Created, errs[3] = strconv.ParseInt(f[8], 10, 64)
	return h, errors.Join(errs[:]...) == nil
}

// Rebase is the state a fenced partition is rebuilt to: what its ledger adds up to.
type Rebase struct {
	// ExpectSeq and ExpectHead are where Redis was when the rebase was computed.
	ExpectSeq  int64
	ExpectHead string
	// Seq and Head are the ledger's last event; the partition's next event follows it.
	Seq  int64
	Head string
	// ForkFrom (0: none) is the first stream entry to remove; ForkSeqs lists the entries.
	ForkFrom int64
	ForkSeqs []int64
	// Shards maps each shard to the counters to write.
	Shards map[ShardKey]ShardCount
	// Drop lists active hold parts to remove; Holds the parts to (re)write.
	Drop  []string
	Holds map[string]HoldRecord
	// Customers maps "location|sku|customer" to the units counting against the limit, and
	// Sales such a count to the sales in it that count only for a window (their units are
	// taken off the count once the window has passed).
	Customers map[string]int64
	Sales     map[string][]Sale
	// Ended maps parts that ended (within the idempotency retention) to their tombstones, so
	// a retry of the reservation, or of its commit or release, answers as before.
	Ended map[string]Tombstone
	// Received maps the transfers the partition's shards received (their TRANSFER_IN, within
	// the idempotency retention) to when that happened (unix ms): the record that they were
	// applied is restored, so that completing one of them again gives nothing twice.
	Received map[string]int64
	// Queues maps shards to their backorder queues (a shard of Shards missing here has none).
	Queues map[ShardKey][]Backorder
	// Pending lists transfers out of these shards that the ledger took out and no TRANSFER_IN
	// in the ledger applied. Where Redis has the transfer neither pending nor settled, it is
	// pending again, its units in flight, for CompleteTransfers to finish.
	Pending []PendingTransfer
}

// Tombstone is how a hold part ended, as the ledger tells it.
type Tombstone struct {
	Outcome        string // COMMITTED, RELEASED, EXPIRED or VOIDED
	At             int64  // unix ms
	Location, SKU  string
	Qty, ExpiresAt int64
	Owner          string
	// Owed: a sale whose units are still owed (a backorder sold before they came).
	Owed bool `json:",omitempty"`
}

// encode returns the tombstone's Redis form (see tomb in lib.lua; the ledger keeps no
// fingerprint).
func (t Tombstone) encode() string {
	code := ""
	if t.Owed {
		code = "B"
	}
	return strings.Join([]string{t.Outcome, strconv.FormatInt(t.At, 10), t.Location, t.SKU, strconv.FormatInt(t.Qty, 10),
		strconv.FormatInt(t.ExpiresAt, 10), "", t.Owner, code, ""}, "|")
}

// RebuildPartition writes st into fenced partition p (see rebase.lua). It returns ErrMoved
// when Redis is no longer at st.ExpectSeq/ExpectHead.
func (e *Engine) RebuildPartition(ctx context.Context, p int, st Rebase) error {
	if p < 0 || p >= e.cfg.Partitions {
		return invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	type payload struct {
		ExpectSeq  string               `json:"expect_seq"`
		ExpectHead string               `json:"expect_head"`
		Seq        string               `json:"seq"`
		Head       string               `json:"head"`
		ForkFrom   string               `json:"fork_from"`
		ForkIDs    []string             `json:"fork_ids"`
		Shards     map[string][4]string `json:"shards"`
		Queues     map[string]string    `json:"queues"`
		Drop       []string             `json:"drop"`
		Holds      map[string][2]string `json:"holds"`
		Cust       map[string]string    `json:"cust"`
		Ended      map[string][2]string `json:"ended"`
		Received   map[string][2]string `json:"received"`
		Pending    map[string][3]string `json:"pending"`
	}
	pl := payload{ExpectSeq: strconv.FormatInt(st.ExpectSeq, 10), ExpectHead: st.ExpectHead, Seq: strconv.FormatInt(st.Seq, 10),
		Head: st.Head, ForkFrom: strconv.FormatInt(st.ForkFrom, 10), ForkIDs: []string{}, Shards: map[string][4]string{},
		Queues: map[string]string{},
		Drop:   append([]string{}, st.Drop...), Holds: map[string][2]string{}, Cust: map[string]string{},
		Ended: map[string][2]string{}, Received: map[string][2]string{}, Pending: map[string][3]string{}}
	for _, t := range st.Pending {
		// The pending record as transfer_out writes it: loc|sku|shard|qty|to partition|to shard|at.
		rec := strings.Join([]string{t.Location, t.SKU, strconv.Itoa(t.FromShard), strconv.FormatInt(t.Qty, 10),
			strconv.Itoa(t.ToPartition), strconv.Itoa(t.ToShard), strconv.FormatInt(t.TakenAt, 10)}, "|")
		field := ShardKey{Location: t.Location, SKU: t.SKU, Shard: t.FromShard}.String()
		pl.Pending[t.ID] = [3]string{rec, field, strconv.FormatInt(t.Qty, 10)}
	}
	for id, at := range st.Received {
		pl.Received[id] = [2]string{strconv.FormatInt(at, 10), strconv.FormatInt(at+e.cfg.IdempotencyTTL.Milliseconds(), 10)}
	}
	for part, t := range st.Ended {
		pl.Ended[part] = [2]string{t.encode(), strconv.FormatInt(t.At+e.cfg.IdempotencyTTL.Milliseconds(), 10)}
	}
	for _, s := range st.ForkSeqs {
		pl.ForkIDs = append(pl.ForkIDs, strconv.FormatInt(s, 10)+"-0")
	}
	for k, c := range st.Shards {
		pl.Shards[k.String()] = [4]string{strconv.FormatInt(c.Available, 10), strconv.FormatInt(c.Held, 10), strconv.FormatInt(c.Committed, 10),
			strconv.FormatInt(c.Backordered, 10)}
		pl.Queues[k.String()] = encodeQueue(st.Queues[k])
	}
	for part, h := range st.Holds {
		pl.Holds[part] = [2]string{h.encode(), strconv.FormatInt(h.ExpiresAt, 10)}
	}
	now := e.nowMs()
	for f, n := range st.Customers {
		var keep []string
		for _, s := range st.Sales[f] {
			if s.Until <= now {
				n -= s.Qty
			} else {
				keep = append(keep, strconv.FormatInt(s.Until, 10)+":"+strconv.FormatInt(s.Qty, 10))
			}
		}
		pl.Cust[f] = strconv.FormatInt(n, 10)
		if len(keep) > 0 {
			pl.Cust[f+"|w"] = strings.Join(keep, " ") // as cust_sold in lib.lua keeps them
		}
	}
	js, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	r, err := e.run(ctx, "rebase", p, e.nowMs(), string(js))
	if err != nil {
		return err
	}
	switch r.code() {
	case "OK":
		return nil
	case "NOT_FENCED":
		return fmt.Errorf("rebuild partition %d: %w: it must be fenced first", p, ErrFenced)
	case "MOVED":
		return fmt.Errorf("rebuild partition %d: %w (now at seq %d)", p, ErrMoved, r.int(1))
	}
	return fmt.Errorf("rebase: unexpected reply %v", []any(r))
}

// HoldOp is what a carried event does to its hold part.
type HoldOp string

// Hold part operations of a carried event.
const (
	HoldNone   HoldOp = ""
	HoldOpen   HoldOp = "open"
	HoldClose  HoldOp = "close"
	HoldExtend HoldOp = "extend"
	// HoldShrink takes Qty units off the part (REDUCED).
	HoldShrink HoldOp = "shrink"
	// HoldSold records a sale of Qty units under Record's window (a part no longer open: a
	// sale the fork made of a hold the ledger ended otherwise).
	HoldSold HoldOp = "sold"
)

// Carried is one event of a forked partition applied again on the rebuilt state.
type Carried struct {
	ID       string // idempotency: a retry with the same id changes nothing more
	Type     string
	Location string
	SKU      string
	Shard    int
	// Available, Held and Committed are the changes of the shard's counters.
	Available, Held, Committed int64
	Hold                       string
	Qty                        int64
	Customer                   string
	Token                      string
	// CustomerDelta changes the customer's count against the pool's limit.
	CustomerDelta int64
	Op            HoldOp
	Record        HoldRecord // HoldOpen: the part to write
	ExpiresAt     int64      // HoldOpen, HoldExtend
	Actor         string
	Reason        string
}

// CarryConflict is a carried event that the rebuilt state cannot take: a count would go
// negative, or the hold part is not where the operation needs it. Nothing was changed.
type CarryConflict struct {
	Why                  string
	Available, HeldUnits int64
}

func (c *CarryConflict) Error() string { return "cannot carry over: " + c.Why }

// Carry applies ev to fenced partition p as a new event and returns its seq and the shard's
// available count after it; replayed is true when ev was carried before (its id applied:
// nothing changed now). A *CarryConflict means nothing changed.
func (e *Engine) Carry(ctx context.Context, p int, ev Carried) (seq, after int64, replayed bool, err error) {
	if p < 0 || p >= e.cfg.Partitions {
		return 0, 0, false, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	if err := validateReason(ev.Reason); err != nil {
		return 0, 0, false, err
	}
	r, err := e.run(ctx, "carry", p, e.nowMs(), ev.ID, ev.Type, ev.Location, ev.SKU, ev.Shard, ev.Available, ev.Held, ev.Committed,
		ev.Hold, ev.Qty, ev.Customer, ev.Token, ev.CustomerDelta, string(ev.Op), ev.Record.encode(), ev.ExpiresAt, ev.Actor, ev.Reason,
		e.cfg.IdempotencyTTL.Milliseconds())
	if err != nil {
		return 0, 0, false, err
	}
	switch r.code() {
	case "OK":
		return r.int(1), r.int(2), r.str(3) == "replay", nil
	case "INSUFFICIENT":
		return 0, 0, false, &CarryConflict{Why: fmt.Sprintf("%s on %s|%s|%d needs %+d available and %+d held; the shard has %d available, %d held",
			ev.Type, ev.Location, ev.SKU, ev.Shard, ev.Available, ev.Held, r.int(1), r.int(2)), Available: r.int(1), HeldUnits: r.int(2)}
	case "CONFLICT":
		return 0, 0, false, &CarryConflict{Why: r.str(1)}
	case "NOT_FENCED":
		return 0, 0, false, fmt.Errorf("carry into partition %d: %w: it must be fenced first", p, ErrFenced)
	case "UNKNOWN_POOL":
		return 0, 0, false, fmt.Errorf("%w: %s|%s has no shard %d in Redis", ErrUnknownPool, ev.Location, ev.SKU, ev.Shard)
	}
	return 0, 0, false, fmt.Errorf("carry: unexpected reply %v", []any(r))
}

// tombstone is a part's "d:" record (see tomb in lib.lua).
type tombstone struct {
	outcome  string
	loc, sku string
	qty, exp int64
	owner    string
	code     string // B: a sale whose units are still owed
}

func decodeTomb(s string) tombstone {
	f := strings.Split(s, "|")
	t := tombstone{outcome: f[0]}
	if len(f) >= 7 {
		t.loc, t.sku = f[2], f[3]
		t.qty, _ = strconv.ParseInt(f[4], 10, 64)
		t.exp, _ = strconv.ParseInt(f[5], 10, 64)
	}
	if len(f) >= 8 {
		t.owner = f[7]
	}
	if len(f) >= 9 {
		t.code = f[8]
	}
	return t
}
