package alerts

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/loop"
)

// Config is the alert detector's and deliverer's configuration.
type Config struct {
	// Group is the consumer group the detector reads the streams in.
	Group    string
	Interval time.Duration
	Batch    int
	// Hysteresis: after LOW_STOCK, a pool counts as restocked only at threshold + this fraction
	// of it (at least one unit), so a count hovering at the threshold raises no new alerts.
	Hysteresis float64
	// Cooldown: after an alert, a pool's next alert waits at least this long; changes in
	// between are merged into it.
	Cooldown time.Duration
	// Settle: a pool's new level is alerted only once it has held this long. A reservation
	// attempt that is refused gives back the units it took (VOIDED events) well within it, so
	// its dip raises nothing. Keep it at least FLASHHOLD_IDEMPOTENCY_LEASE.
	Settle time.Duration
	// Allow names callback hosts, addresses or CIDR prefixes allowed although loopback or private.
	Allow []string
	// Delivery: per-attempt timeout, attempts before dead-lettering, backoff base and cap.
	Timeout     time.Duration
	MaxAttempts int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxSubscriptions caps each vendor's active subscriptions (Store, WithMaxSubscriptions).
	MaxSubscriptions int
	// Anomaly: a pool that loses, within AnomalyWindow, more than AnomalyShare of the units it
	// had available when the losses began (and at least AnomalyMinUnits) to spoilage and
	// downward adjustments — losses its sales do not explain — raises an ANOMALY alert, at
	// most one a window. AnomalyWindow 0 turns it off.
	AnomalyWindow   time.Duration
	AnomalyShare    float64
	AnomalyMinUnits int64
	// AnomalySellout: a pool sold out (available down to 0 by holds) at more than this many
	// times its usual rate raises an ANOMALY. The usual rate is the units held per unit of
	// time over its earlier sell-downs (each from a rise in stock to the next), once they
	// cover at least AnomalyWindow. 0 turns it off.
	AnomalySellout float64
	// AnomalyCorrections: this many downward or upward corrections (ADJUSTED, not by a hold)
	// each larger than AnomalyShare of the units before it, within AnomalyWindow, raise an
	// ANOMALY. 0 turns it off.
	AnomalyCorrections int
	// VendorLabels bounds the vendors with a label of their own on per-vendor metrics.
	VendorLabels int
}

// DefaultConfig is the alerts' configuration when the environment sets nothing.
func DefaultConfig() Config {
	return Config{
		Group:              "alerts",
		Interval:           200 * time.Millisecond,
		Batch:              1000,
		Hysteresis:         0.1,
		Cooldown:           10 * time.Second,
		Settle:             10 * time.Second,
		Timeout:            5 * time.Second,
		MaxAttempts:        8,
		BackoffBase:        time.Second,
		BackoffMax:         5 * time.Minute,
		MaxSubscriptions:   100,
		AnomalyWindow:      10 * time.Minute,
		AnomalyShare:       0.2,
		AnomalyMinUnits:    5,
		AnomalySellout:     10,
		AnomalyCorrections: 3,
		VendorLabels:       100,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Settle < 0:
		return fmt.Errorf("FLASHHOLD_ALERT_SETTLE must not be negative, got %s", c.Settle)
	case c.MaxSubscriptions < 1:
		return fmt.Errorf("FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS must be at least 1, got %d", c.MaxSubscriptions)
	case c.Interval <= 0 || c.Batch < 1:
		return fmt.Errorf("FLASHHOLD_ALERT_INTERVAL must be positive and FLASHHOLD_ALERT_BATCH at least 1, got %s and %d", c.Interval, c.Batch)
	case c.AnomalyWindow < 0 || c.AnomalyWindow > 0 && (c.AnomalyShare <= 0 || c.AnomalyShare > 1 || c.AnomalyMinUnits < 1):
		return fmt.Errorf("FLASHHOLD_ANOMALY_WINDOW must not be negative; with it, FLASHHOLD_ANOMALY_SHARE must be in (0, 1] and FLASHHOLD_ANOMALY_MIN_UNITS at least 1, got %s, %g and %d",
			c.AnomalyWindow, c.AnomalyShare, c.AnomalyMinUnits)
	case c.AnomalySellout < 0 || c.AnomalySellout > 0 && c.AnomalySellout <= 1 || c.AnomalyCorrections < 0:
		return fmt.Errorf("FLASHHOLD_ANOMALY_SELLOUT must be 0 or more than 1 and FLASHHOLD_ANOMALY_CORRECTIONS not negative, got %g and %d",
			c.AnomalySellout, c.AnomalyCorrections)
	case c.VendorLabels < 0:
		return fmt.Errorf("FLASHHOLD_VENDOR_LABELS must not be negative, got %d", c.VendorLabels)
	case c.MaxAttempts < 1 || c.Timeout <= 0:
		return fmt.Errorf("FLASHHOLD_WEBHOOK_MAX_ATTEMPTS must be at least 1 and FLASHHOLD_WEBHOOK_TIMEOUT positive, got %d and %s", c.MaxAttempts, c.Timeout)
	}
	return nil
}

type level int

const (
	levelIn level = iota
	levelLow
	levelOut
)

func levelAfter(alertType string) level {
	switch alertType {
	case LowStock:
		return levelLow
	case OutOfStock:
		return levelOut
	}
	return levelIn
}

// classify places a count in a level. Leaving LOW for IN needs the hysteresis margin above
// the threshold; OUT is exactly zero.
func classify(avail, threshold int64, alerted level, hysteresis float64) level {
	switch {
	case avail <= 0:
		return levelOut
	case threshold <= 0:
		return levelIn
	case avail < threshold:
		return levelLow
	case alerted == levelLow && avail < threshold+max(1, int64(float64(threshold)*hysteresis)):
		return levelLow
	}
	return levelIn
}

// transition names the alert for a change of level, or "" (LOW → IN only re-arms LOW_STOCK).
func transition(from, to level) string {
	switch {
	case from == to:
		return ""
	case to == levelOut:
		return OutOfStock
	case from == levelOut:
		return BackInStock
	case to == levelLow:
		return LowStock
	}
	return ""
}

type poolState struct {
	cfg    engine.PoolConfig
	shards []int64
	// owed is each shard's units owed to backorders: while any are, its units are theirs.
	// owedSeq is the seq of its partition it was read at: later events change it.
	owed, owedSeq []int64
	alerted       level
	current       level
	lastAlert     time.Time
	since         int64 // when (ms) current first differed from alerted; 0 while they agree
	// The losses sales do not explain (spoilage, downward adjustments) since lossStart (ms),
	// the units available just before the first of them, and the last ANOMALY (ms).
	lossStart, lossBase, lost, lastAnomaly int64
	// The current sell-down: since when (ms; 0 before the first event) and the units held
	// in it; the earlier sell-downs' units and length (ms), the usual rate.
	runStart, runUnits, usualUnits, usualMs int64
	lastSellout                             int64
	// The oversized corrections within the window (ms), and the last ANOMALY for them.
	corrections    []int64
	lastCorrection int64
}

// available is what shoppers can hold: the units above the safety stock (which only a pool
// of one shard has).
func (ps *poolState) available() int64 {
	var n int64
	for i, s := range ps.shards {
		if ps.owed[i] <= 0 {
			n += max(s-ps.cfg.SafetyStock, 0)
		}
	}
	return n
}

// Detector turns the event streams into stock alerts. One detector works at a time (a lease);
// others stand by.
type Detector struct {
	eng   *engine.Engine
	store *Store
	cfg   Config
	log   zerolog.Logger
	now   func() time.Time
	owner string

	pools   map[engine.PoolKey]*poolState
	levels  map[engine.PoolKey]level // last alerted, from Postgres, for pools not seen yet
	loaded  bool
	counter *prometheus.CounterVec
	// vendorEvents counts events by vendor, labelled is the vendors with a label of their own.
	vendorEvents *prometheus.CounterVec
	labelled     map[string]bool
}

// NewDetector builds a detector.
func NewDetector(eng *engine.Engine, store *Store, cfg Config, log zerolog.Logger, now func() time.Time) *Detector {
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_alerts_total", Help: "Stock alerts raised, by type."}, []string{"type"})
	for _, t := range Types {
		counter.WithLabelValues(t)
	}
	return &Detector{eng: eng, store: store, cfg: cfg, log: log, now: now,
		owner: loop.InstanceID(), pools: map[engine.PoolKey]*poolState{}, counter: counter,
		vendorEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_vendor_events_total",
			Help: "Inventory events by vendor (the first FLASHHOLD_VENDOR_LABELS vendors; the rest as _other), as the alert detector reads them."},
			[]string{"vendor"}),
		labelled: map[string]bool{}}
}

// Register adds the detector's metrics to reg.
func (d *Detector) Register(reg prometheus.Registerer) error {
	if err := reg.Register(d.counter); err != nil {
		return err
	}
	return reg.Register(d.vendorEvents)
}

// Run detects until ctx ends.
func (d *Detector) Run(ctx context.Context) error {
	return loop.Run(ctx, d.cfg.Interval, d.cfg.Interval, func(ctx context.Context) error {
		_, err := d.RunOnce(ctx)
		return err
	}, func(err error) { d.log.Warn().Err(err).Msg("alert pass failed") })
}

// RunOnce reads new events, updates each pool's level and raises the alerts due, then
// acknowledges the events. It returns the alerts raised.
func (d *Detector) RunOnce(ctx context.Context) ([]Alert, error) {
	ok, err := d.eng.Lease(ctx, "alerts", d.owner, 5*d.cfg.Interval+time.Second)
	if err != nil || !ok {
		return nil, err
	}
	if !d.loaded {
		if d.levels, err = d.store.lastLevels(ctx); err != nil {
			return nil, err
		}
		d.loaded = true
	}
	parts := make([]int, d.eng.Partitions())
	for i := range parts {
		parts[i] = i
	}
	entries, err := d.eng.ReadGroup(ctx, engine.GroupRead{Group: d.cfg.Group, Consumer: d.owner, Start: "$",
		ClaimIdle: 30 * time.Second, Count: d.cfg.Batch, Budget: 20 * d.cfg.Batch}, parts)
	if err != nil {
		return nil, err
	}
	var events []engine.Event
	for _, en := range entries {
		for _, m := range en.Messages {
			c, _ := m.Values["e"].(string)
			h, _ := m.Values["h"].(string)
			if ev, err := engine.ParseEvent(c, h); err == nil {
				events = append(events, ev)
			}
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].TS < events[j].TS })
	now := d.now()
	var raised []Alert
	activity := map[string]map[int64]int64{}
	for i := range events {
		ev := &events[i]
		ps, err := d.state(ctx, ev)
		if err != nil {
			return nil, err
		}
		if activity[ps.cfg.Vendor] == nil {
			activity[ps.cfg.Vendor] = map[int64]int64{}
		}
		activity[ps.cfg.Vendor][ev.TS/60_000]++
		d.vendorEvents.WithLabelValues(d.vendorLabel(ps.cfg.Vendor)).Inc()
		before := ps.available()
		if ev.Shard < len(ps.shards) {
			ps.shards[ev.Shard] = ev.After
			if ev.Seq > ps.owedSeq[ev.Shard] {
				ps.owed[ev.Shard] += engine.OwedDelta(ev)
			}
		}
		raised = d.anomaly(ps, ev, before, raised)
		raised = d.sellout(ps, ev, before, raised)
		raised = d.corrections(ps, ev, before, raised)
		ps.current = classify(ps.available(), ps.cfg.LowStock, ps.alerted, d.cfg.Hysteresis)
		switch {
		case ps.current == ps.alerted:
			ps.since = 0
		case ps.since == 0:
			ps.since = ev.TS
		}
		raised = d.due(ps, now, ev.TS, raised)
	}
	for _, ps := range d.pools { // changes merged during a cooldown that has now passed
		raised = d.due(ps, now, now.UnixMilli(), raised)
	}
	for i := range raised {
		if raised[i].Type == BackInStock {
			// The levels moved already: an alert is never dropped for want of its region (the
			// notices of interests in the region then wait for the next restock).
			if raised[i].Region, err = d.eng.RegionOf(ctx, raised[i].Location); err != nil {
				d.log.Warn().Err(err).Str("location", raised[i].Location).Msg("region of a restocked pool unknown; its region's notices wait")
			}
		}
	}
	if len(raised) > 0 {
		if err := d.store.record(ctx, raised); err != nil {
			return nil, err
		}
		for _, a := range raised {
			d.counter.WithLabelValues(a.Type).Inc()
		}
	}
	if err := d.store.recordActivity(ctx, activity); err != nil {
		return nil, err
	}
	return raised, d.eng.AckGroup(ctx, d.cfg.Group, entries)
}

// otherVendors is the label of the vendors past Config.VendorLabels.
const otherVendors = "_other"

// vendorLabel is the vendor's label on per-vendor metrics: its id for the first VendorLabels
// vendors seen, otherVendors after them, so the series stay bounded.
func (d *Detector) vendorLabel(vendor string) string {
	if d.labelled[vendor] {
		return vendor
	}
	if len(d.labelled) >= d.cfg.VendorLabels {
		return otherVendors
	}
	d.labelled[vendor] = true
	return vendor
}

// anomaly counts ev against its pool's losses that sales do not explain (see
// Config.AnomalyWindow), and raises an ANOMALY when they pass the share of what the pool had.
// before is the pool's available count just before ev.
func (d *Detector) anomaly(ps *poolState, ev *engine.Event, before int64, raised []Alert) []Alert {
	window := d.cfg.AnomalyWindow.Milliseconds()
	if window <= 0 || ev.Delta >= 0 || ev.Type != engine.EventSpoiled && ev.Type != engine.EventAdjusted {
		return raised
	}
	if ps.lossStart == 0 || ev.TS-ps.lossStart > window {
		ps.lossStart, ps.lossBase, ps.lost = ev.TS, before, 0
	}
	ps.lost += -ev.Delta
	if ps.lost < d.cfg.AnomalyMinUnits || float64(ps.lost) <= d.cfg.AnomalyShare*float64(max(ps.lossBase, 1)) ||
		ps.lastAnomaly != 0 && ev.TS-ps.lastAnomaly <= window {
		return raised
	}
	ps.lastAnomaly = ev.TS
	return append(raised, Alert{Type: Anomaly, Vendor: ps.cfg.Vendor, Location: ps.cfg.Location, SKU: ps.cfg.SKU,
		Available: ps.available(), Threshold: ps.cfg.LowStock, TS: ev.TS,
		Detail: fmt.Sprintf("%d units spoiled or adjusted away within %s, more than %.0f%% of the %d available before: not sales",
			ps.lost, d.cfg.AnomalyWindow, 100*d.cfg.AnomalyShare, ps.lossBase)})
}

// sellout follows a pool's sell-downs (from a rise in its stock to the next) and raises an
// ANOMALY when one ends at 0 at more than AnomalySellout times the usual rate of the earlier
// ones (which must cover AnomalyWindow).
func (d *Detector) sellout(ps *poolState, ev *engine.Event, before int64, raised []Alert) []Alert {
	if d.cfg.AnomalySellout == 0 {
		return raised
	}
	after := ps.available()
	switch {
	case ps.runStart == 0:
		ps.runStart = ev.TS
	case ev.Type == engine.EventRestocked || ev.Type == engine.EventAdjusted && ev.Delta > 0: // stock came in: the sell-down ends
		if ps.runUnits > 0 {
			ps.usualUnits += ps.runUnits
			ps.usualMs += max(ev.TS-ps.runStart, 1)
		}
		ps.runStart, ps.runUnits = ev.TS, 0
		return raised
	}
	if ev.Type == engine.EventReserved {
		ps.runUnits += -ev.Delta
	} else if ev.Hold != "" && ev.Delta > 0 { // a hold given back
		ps.runUnits = max(0, ps.runUnits-ev.Delta)
	}
	if after != 0 || before == 0 || ev.Type != engine.EventReserved || ps.usualMs < d.cfg.AnomalyWindow.Milliseconds() || ps.usualUnits == 0 {
		return raised
	}
	span := max(ev.TS-ps.runStart, 1)
	rate, usual := float64(ps.runUnits)/float64(span), float64(ps.usualUnits)/float64(ps.usualMs)
	if rate <= d.cfg.AnomalySellout*usual || ps.lastSellout != 0 && ev.TS-ps.lastSellout <= d.cfg.AnomalyWindow.Milliseconds() {
		return raised
	}
	ps.lastSellout = ev.TS
	perMin := func(r float64) float64 { return r * 60_000 }
	return append(raised, Alert{Type: Anomaly, Vendor: ps.cfg.Vendor, Location: ps.cfg.Location, SKU: ps.cfg.SKU,
		Available: 0, Threshold: ps.cfg.LowStock, TS: ev.TS,
		Detail: fmt.Sprintf("sold out: %d units held in %s, %.1f a minute, %.0f times the usual %.2f a minute (over %s of earlier sales)",
			ps.runUnits, time.Duration(span)*time.Millisecond, perMin(rate), rate/usual, perMin(usual), time.Duration(ps.usualMs)*time.Millisecond)})
}

// corrections counts a pool's oversized corrections (ADJUSTED by a vendor, more than
// AnomalyShare of the units before it either way) and raises an ANOMALY when
// AnomalyCorrections of them fall within AnomalyWindow.
func (d *Detector) corrections(ps *poolState, ev *engine.Event, before int64, raised []Alert) []Alert {
	window := d.cfg.AnomalyWindow.Milliseconds()
	if d.cfg.AnomalyCorrections == 0 || window <= 0 || ev.Type != engine.EventAdjusted || ev.Hold != "" ||
		float64(max(ev.Delta, -ev.Delta)) <= d.cfg.AnomalyShare*float64(max(before, 1)) {
		return raised
	}
	kept := ps.corrections[:0]
	for _, ts := range ps.corrections {
		if ev.TS-ts < window {
			kept = append(kept, ts)
		}
	}
	ps.corrections = append(kept, ev.TS)
	if len(ps.corrections) < d.cfg.AnomalyCorrections || ps.lastCorrection != 0 && ev.TS-ps.lastCorrection <= window {
		return raised
	}
	ps.lastCorrection = ev.TS
	return append(raised, Alert{Type: Anomaly, Vendor: ps.cfg.Vendor, Location: ps.cfg.Location, SKU: ps.cfg.SKU,
		Available: ps.available(), Threshold: ps.cfg.LowStock, TS: ev.TS,
		Detail: fmt.Sprintf("%d corrections within %s each larger than %.0f%% of the stock before it: the counts sent keep being far off",
			len(ps.corrections), d.cfg.AnomalyWindow, 100*d.cfg.AnomalyShare)})
}

// due raises the alert for a pool whose level differs from the last one alerted and has for
// the settle time, unless its cooldown still runs.
func (d *Detector) due(ps *poolState, now time.Time, ts int64, raised []Alert) []Alert {
	if ps.current == ps.alerted || now.Sub(ps.lastAlert) < d.cfg.Cooldown ||
		now.Sub(time.UnixMilli(ps.since)) < d.cfg.Settle {
		return raised
	}
	ps.since = 0
	t := transition(ps.alerted, ps.current)
	ps.alerted = ps.current
	if t == "" {
		return raised
	}
	ps.lastAlert = now
	return append(raised, Alert{Type: t, Vendor: ps.cfg.Vendor, Location: ps.cfg.Location, SKU: ps.cfg.SKU,
		Available: ps.available(), Threshold: ps.cfg.LowStock, TS: ts})
}

// state returns a pool's state. A pool seen for the first time starts from its current counts,
// except that the event's own shard starts from just before the event (its count already
// includes the event); its level is the one last alerted or else the level it was at before
// the event, which raises nothing.
//
// The units owed to backorders are a running count (no event carries it). It starts from the
// count read with its partition's seq; events up to that seq are in it already, and only
// later ones change it.
func (d *Detector) state(ctx context.Context, ev *engine.Event) (*poolState, error) {
	k := engine.PoolKey{Location: ev.Location, SKU: ev.SKU}
	if ps := d.pools[k]; ps != nil {
		// The pool's threshold and safety stock as configured now (cached in process).
		if c, err := d.eng.Pool(ctx, k.Location, k.SKU); err == nil {
			ps.cfg = c
		}
		return ps, nil
	}
	a, err := d.eng.Availability(ctx, ev.Location, ev.SKU)
	if err != nil {
		return nil, err
	}
	ps := &poolState{cfg: a.PoolConfig, shards: make([]int64, len(a.Shards)), owed: make([]int64, len(a.Shards)),
		owedSeq: make([]int64, len(a.Shards))}
	for i, s := range a.Shards {
		ps.shards[i] = s.Available
	}
	if ev.Shard < len(ps.shards) {
		ps.shards[ev.Shard] = ev.After - ev.Delta
	}
	owed, seq, err := d.eng.Owed(ctx, ev.Location, ev.SKU) // a pool without a policy now may have a queue left
	if err != nil {
		return nil, err
	}
	if len(owed) == len(ps.owed) {
		ps.owed, ps.owedSeq = owed, seq
	}
	if l, ok := d.levels[k]; ok {
		ps.alerted = l
	} else {
		ps.alerted = classify(ps.available(), ps.cfg.LowStock, levelIn, d.cfg.Hysteresis)
	}
	ps.current = ps.alerted
	d.pools[k] = ps
	return ps, nil
}
