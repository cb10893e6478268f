package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// ShardKey names one sub-counter of a pool.
type ShardKey struct {
	Location string
	SKU      string
	Shard    int
}

// KeyOf is the shard an event changed.
func KeyOf(ev *Event) ShardKey { return ShardKey{ev.Location, ev.SKU, ev.Shard} }

// Pool is the pool the shard belongs to.
func (k ShardKey) Pool() PoolKey { return PoolKey{Location: k.Location, SKU: k.SKU} }

func (k ShardKey) String() string { return shardField(k.Location, k.SKU, k.Shard) }

// ShardTotals is one shard as a run of events adds it up.
type ShardTotals struct {
	Available, Held, Committed int64
	// Backordered is the units owed to backordered parts, open or sold (not counted in the
	// others: no unit was taken for them).
	Backordered int64 `json:",omitempty"`
	// Vendor is the net of restocks, spoilage and adjustments; Transfers the net of transfers
	// in and out.
	Vendor, Transfers int64
}

// OpenPart is a hold part a run of events leaves open, as its RESERVED and EXTENDED events
// describe it.
type OpenPart struct {
	HoldRecord
	// Seq is the RESERVED event's.
	Seq int64
}

// ReplayOptions says what a replay keeps beyond counters and open parts.
type ReplayOptions struct {
	// History keeps how each ended part ended and the id of every stock change (a rebuild
	// needs them; a checkpoint does not).
	History bool
	// Limited says which pools count a customer's units against a limit (nil: none);
	// Customers is kept for those. Window gives the window (ms) of such a pool's limit
	// (nil or 0: sold units count for good); Sales is kept for those.
	Limited func(PoolKey) bool
	Window  func(PoolKey) int64
	// MaxTTL (ms): a RESERVED event that carries no expiry (written before events carried it)
	// is taken to expire MaxTTL after it was written, the latest it can.
	MaxTTL int64
}

// StockChange identifies a stock change (restock, spoilage, adjustment, transfer in or out)
// by its type, transaction or transfer id, and shard.
type StockChange struct {
	Type, ID string
	Shard    ShardKey
}

// Replay is a partition as a run of its events leaves it. The engine's Verify, the
// reconciliation's checkpoints and its rebuild of a partition all add events up with Apply.
type Replay struct {
	Shards map[ShardKey]*ShardTotals
	Open   map[string]OpenPart
	// Ended (History) maps each ended part to how it ended.
	Ended map[string]Tombstone
	// Changes (History) holds every stock change applied.
	Changes map[StockChange]bool
	// Customers (with Limited) maps "location|sku|customer" to the units counting against
	// the pool's limit, as Redis keeps them, and Sales such a count to its sales under a
	// limit over a window, each counting until its window has passed.
	Customers map[string]int64
	Sales     map[string][]Sale
	// Queues holds each shard's backordered parts in the order they are filled.
	Queues map[ShardKey][]Backorder
	opts   ReplayOptions
}

// Backorder is a part waiting in a shard's backorder queue: open, or Sold before its units
// came.
type Backorder struct {
	Part string `json:"p"`
	Qty  int64  `json:"q"`
	Sold bool   `json:"s,omitempty"`
}

// QueueOwed is the units a shard's queue owes.
func QueueOwed(q []Backorder) int64 {
	var n int64
	for _, b := range q {
		n += b.Qty
	}
	return n
}

// dequeue takes part off k's queue, or marks it sold: its first entry when filled (a fill
// takes the head), its open entry otherwise (a part id placed again, after the answers of an
// earlier placing were forgotten, may follow a sale of it still owed).
func (r *Replay) dequeue(k ShardKey, part string, filled, sold bool) {
	q := r.Queues[k]
	for i, b := range q {
		if b.Part != part || !filled && b.Sold {
			continue
		}
		if sold {
			q[i].Sold = true
			return
		}
		r.Queues[k] = slices.Delete(q, i, i+1)
		if len(r.Queues[k]) == 0 {
			delete(r.Queues, k)
		}
		return
	}
}

// Sale is units sold under a per-customer limit over a window: they count until Until (ms).
type Sale struct {
	Until, Qty int64
}

// NewReplay starts a replay from a partition's first event.
func NewReplay(opts ReplayOptions) *Replay {
	r := &Replay{Shards: map[ShardKey]*ShardTotals{}, Open: map[string]OpenPart{}, Customers: map[string]int64{},
		Sales: map[string][]Sale{}, Queues: map[ShardKey][]Backorder{}, opts: opts}
	if opts.History {
		r.Ended, r.Changes = map[string]Tombstone{}, map[StockChange]bool{}
	}
	return r
}

// Shard returns the shard's totals, adding them at zero when the replay has not seen it.
func (r *Replay) Shard(k ShardKey) *ShardTotals {
	t := r.Shards[k]
	if t == nil {
		t = &ShardTotals{}
		r.Shards[k] = t
	}
	return t
}

// Apply adds one event, the next of the partition.
func (r *Replay) Apply(ev *Event) {
	k := KeyOf(ev)
	t := r.Shard(k)
	t.Available = ev.After
	t.Held += ev.HeldDelta
	t.Backordered += OwedDelta(ev)
	switch ev.Type {
	case EventReserved, EventBackordered:
		exp := ev.ExpiresAt
		if exp == 0 {
			exp = ev.TS + r.opts.MaxTTL
		}
		h := HoldRecord{Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard, Qty: ev.Qty, ExpiresAt: exp, Customer: ev.Customer,
			Limited: ev.Customer != "" && r.opts.Limited != nil && r.opts.Limited(k.Pool()), Token: ev.Idem, Created: ev.TS, Owner: ev.Actor,
			Backordered: ev.Type == EventBackordered}
		if h.Backordered {
			r.Queues[k] = append(r.Queues[k], Backorder{Part: ev.Hold, Qty: ev.Qty})
		}
		if h.Limited {
			h.Window = r.window(k.Pool())
		}
		r.Open[ev.Hold] = OpenPart{HoldRecord: h, Seq: ev.Seq}
		if h.Limited {
			r.Customers[customerField(h)] += h.Qty
		}
		if r.Ended != nil {
			delete(r.Ended, ev.Hold)
		}
	case EventExtended:
		if h, ok := r.Open[ev.Hold]; ok && ev.ExpiresAt > 0 {
			h.ExpiresAt = ev.ExpiresAt
			r.Open[ev.Hold] = h
		}
	case EventReduced:
		if h, ok := r.Open[ev.Hold]; ok {
			h.Qty -= ev.Qty
			r.Open[ev.Hold] = h
			if h.Limited {
				r.Customers[customerField(h.HoldRecord)] -= ev.Qty
			}
		}
	case EventFilled:
		r.dequeue(k, ev.Hold, true, false)
		if h, ok := r.Open[ev.Hold]; ok && ev.HeldDelta > 0 {
			h.Backordered = false
			r.Open[ev.Hold] = h
		} else if ev.HeldDelta == 0 {
			t.Committed += ev.Qty // sold before its units came
		}
	case EventCommitted, EventReleased, EventExpired, EventVoided:
		if h, ok := r.Open[ev.Hold]; ok && h.Backordered {
			// No unit was taken: a sale leaves them owed, anything else owes them no more.
			r.dequeue(k, ev.Hold, false, ev.Type == EventCommitted)
		} else if ev.Type == EventCommitted {
			t.Committed += ev.Qty
		}
		r.end(ev)
	case EventRestocked, EventSpoiled, EventAdjusted:
		t.Vendor += ev.Delta
		r.change(ev, k)
	case EventTransferOut, EventTransferIn:
		t.Transfers += ev.Delta
		r.change(ev, k)
	}
}

// end closes the part of ev as ev says.
func (r *Replay) end(ev *Event) {
	h, open := r.Open[ev.Hold]
	if !open && ev.Type == EventCommitted && ev.Customer != "" && r.opts.Limited != nil && r.opts.Limited(KeyOf(ev).Pool()) {
		// A sale of a part not open here: one the fork made of a hold the ledger had ended
		// otherwise, carried over (the customer was told sold). It counts as bought.
		f := customerField(HoldRecord{Location: ev.Location, SKU: ev.SKU, Customer: ev.Customer})
		r.Customers[f] += ev.Qty
		if w := r.window(KeyOf(ev).Pool()); w > 0 {
			r.Sales[f] = append(r.Sales[f], Sale{Until: ev.TS + w, Qty: ev.Qty})
		}
	}
	if open && h.Limited {
		back := h.Qty
		if ev.Type == EventCommitted {
			back -= ev.Qty // a part committed in part gave the rest back
			if h.Window > 0 && ev.Qty > 0 {
				f := customerField(h.HoldRecord)
				r.Sales[f] = append(r.Sales[f], Sale{Until: ev.TS + h.Window, Qty: ev.Qty})
			}
		}
		r.Customers[customerField(h.HoldRecord)] -= back
	}
	delete(r.Open, ev.Hold)
	if r.Ended != nil {
		r.Ended[ev.Hold] = Tombstone{Outcome: ev.Type, At: ev.TS, Location: ev.Location, SKU: ev.SKU, Qty: ev.Qty,
			ExpiresAt: h.ExpiresAt, Owner: h.Owner}
	}
}

func (r *Replay) change(ev *Event, k ShardKey) {
	if r.Changes != nil {
		r.Changes[StockChange{ev.Type, ev.Idem, k}] = true
	}
}

// window is the window (ms) of pool k's per-customer limit (0: for good).
func (r *Replay) window(k PoolKey) int64 {
	if r.opts.Window == nil {
		return 0
	}
	return r.opts.Window(k)
}

// customerField is the customer's count's field in Redis.
func customerField(h HoldRecord) string { return h.Location + "|" + h.SKU + "|" + h.Customer }

// Clone copies the replay (what it has added up so far).
func (r *Replay) Clone() *Replay {
	c := &Replay{Shards: make(map[ShardKey]*ShardTotals, len(r.Shards)), Open: maps.Clone(r.Open),
		Customers: maps.Clone(r.Customers), Ended: maps.Clone(r.Ended), Changes: maps.Clone(r.Changes), opts: r.opts,
		Sales: make(map[string][]Sale, len(r.Sales)), Queues: make(map[ShardKey][]Backorder, len(r.Queues))}
	for k, q := range r.Queues {
		c.Queues[k] = slices.Clone(q)
	}
	for f, s := range r.Sales {
		c.Sales[f] = slices.Clone(s)
	}
	for k, t := range r.Shards {
		v := *t
		c.Shards[k] = &v
	}
	return c
}

// replayJSON is a replay's counters, open parts and backorder queues as stored (a checkpoint).
// Version 3 keys shards by their parts and keeps the queues; anything else is refused, so that
// a state stored in another shape (one that knew no backorders) is never read as this one.
type replayJSON struct {
	V      int                 `json:"v"`
	Shards []shardJSON         `json:"shards"`
	Open   map[string]OpenPart `json:"open"`
	Queues []queueJSON         `json:"queues,omitempty"`
}

type queueJSON struct {
	Location string      `json:"l"`
	SKU      string      `json:"s"`
	Shard    int         `json:"n"`
	Parts    []Backorder `json:"q"`
}

type shardJSON struct {
	Location string `json:"l"`
	SKU      string `json:"s"`
	Shard    int    `json:"n"`
	ShardTotals
}

const replayJSONVersion = 3 // 3: with backorder queues

// MarshalJSON stores the counters and open parts (not the history).
func (r *Replay) MarshalJSON() ([]byte, error) {
	out := replayJSON{V: replayJSONVersion, Shards: make([]shardJSON, 0, len(r.Shards)), Open: r.Open}
	for k, t := range r.Shards {
		out.Shards = append(out.Shards, shardJSON{k.Location, k.SKU, k.Shard, *t})
	}
	for k, q := range r.Queues {
		out.Queues = append(out.Queues, queueJSON{k.Location, k.SKU, k.Shard, q})
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON stored.
func (r *Replay) UnmarshalJSON(b []byte) error {
	var in replayJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	if in.V != replayJSONVersion {
		return fmt.Errorf("replay state of version %d, want %d", in.V, replayJSONVersion)
	}
	*r = *NewReplay(r.opts)
	for _, s := range in.Shards {
		t := s.ShardTotals
		r.Shards[ShardKey{s.Location, s.SKU, s.Shard}] = &t
	}
	if in.Open != nil {
		r.Open = in.Open
	}
	for _, q := range in.Queues {
		r.Queues[ShardKey{q.Location, q.SKU, q.Shard}] = q.Parts
	}
	return nil
}
