package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/guardrails"
)

// PoolHistory reads a pool's latest events (the ledger's PoolChanges).
type PoolHistory interface {
	PoolChanges(ctx context.Context, location, sku string, parts []int, limit int) ([]engine.Event, error)
}

// WithPoolHistory lets the pool status show the pool's latest changes.
func WithPoolHistory(h PoolHistory) Option { return func(s *Server) { s.history = h } }

// statusReason is one reason shoppers cannot buy a pool, or can buy less of it.
type statusReason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// UntilMs: when it ends, where that is known (the first hold to expire).
	UntilMs int64 `json:"until_ms,omitempty"`
	// IDs: the quarantined changes waiting (QUARANTINE_PENDING).
	IDs []int64 `json:"ids,omitempty"`
}

// poolChange is one of a pool's latest changes, with where it came from.
type poolChange struct {
	AtMs          int64  `json:"at_ms"`
	Type          string `json:"type"`
	Shard         int    `json:"shard"`
	Delta         int64  `json:"delta"`
	HeldDelta     int64  `json:"held_delta"`
	AfterShard    int64  `json:"available_after_shard"`
	Source        string `json:"source"`
	Actor         string `json:"actor,omitempty"`
	Reason        string `json:"reason,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	HoldID        string `json:"hold_part,omitempty"`
}

// sourceOf names where an event came from: a sale (a hold and how it ended), an import, a
// feed, a schedule, the system (transfers between shards, perishables written off), or a
// vendor's own call.
func sourceOf(ev engine.Event) string {
	switch {
	case ev.Hold != "":
		return "sale"
	case strings.HasPrefix(ev.Type, "TRANSFER"):
		return "system"
	case ev.Actor == "schedule":
		return "schedule"
	case strings.HasPrefix(ev.Reason, "feed "):
		return "feed"
	case strings.HasPrefix(ev.Reason, "import "):
		return "import"
	case ev.Actor == "sweeper" || ev.Actor == "system" || ev.Actor == "reconcile":
		return "system"
	}
	return "vendor call"
}

// poolStatus serves GET /v1/vendors/{vendor}/inventory/{sku}/status?location=: every reason
// the pool is not sellable or is limited, and its latest changes with their sources.
func (s *Server) poolStatus(c *call) error {
	vendor, sku, loc := c.param("vendor"), c.param("sku"), c.query("location")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	if loc == "" {
		return errorf(http.StatusUnprocessableEntity, "invalid", "location: required (?location=)")
	}
	a, err := s.eng.Availability(c.ctx, loc, sku)
	if err != nil {
		return err
	}
	if a.Vendor != vendor {
		return errorf(http.StatusNotFound, "unknown_pool", "vendor %s has no pool %s at %s", vendor, sku, loc)
	}
	holds, err := s.eng.Holds(c.ctx, loc, sku)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	var reasons []statusReason
	add := func(r statusReason) { reasons = append(reasons, r) }
	fenced := false
	for sh, f := range holds.Fences {
		if f != "" {
			fenced = true
			add(statusReason{Code: "FENCED", Message: fmt.Sprintf("shard %d (partition %d) is fenced for repair (%s): no hold or change there until `flashhold reconcile --repair`", sh, holds.Partitions[sh], f)})
		}
	}
	expired := a.BestBefore > 0 && a.BestBefore <= now
	if expired {
		add(statusReason{Code: "PERISHABLE_EXPIRED", Message: fmt.Sprintf("best before %s: past it, no new holds are placed and the sweeper writes off what is left",
			time.UnixMilli(a.BestBefore).UTC().Format(time.RFC3339)), UntilMs: 0})
	}
	if a.Available == 0 && a.Buffered > 0 {
		add(statusReason{Code: "SAFETY_STOCK", Message: fmt.Sprintf("the %d unheld units on hand are safety stock (%d), which no hold takes", a.Buffered, a.SafetyStock)})
	}
	if a.Backordered > 0 {
		add(statusReason{Code: "BACKORDERS_WAITING", Message: fmt.Sprintf("%d units are owed to backorders (%d of them on hand already, kept for them); units that come fill them first come, first served before any new hold takes one", a.Backordered, a.Allotted)})
	}
	if a.Backorderable > 0 {
		msg := fmt.Sprintf("holds beyond stock are backordered (%d more units may be)", a.Backorderable)
		if a.Policy == engine.PolicyPreorder {
			msg = fmt.Sprintf("preorders until %s: holds beyond stock are backordered (%d more units may be)",
				time.UnixMilli(a.ReleaseAt).UTC().Format(time.RFC3339), a.Backorderable)
		}
		add(statusReason{Code: "BACKORDERABLE", Message: msg, UntilMs: a.ReleaseAt})
	}
	switch {
	case a.Available == 0 && a.Held == 0:
		add(statusReason{Code: "OUT_OF_STOCK", Message: "no units available and none held"})
	case a.Available == 0:
		r := statusReason{Code: "ALL_HELD", Message: fmt.Sprintf("all %d units are held by carts; they come back if the holds are released or expire", a.Held)}
		if holds.NextExpiry > 0 {
			r.UntilMs = holds.NextExpiry
			r.Message += fmt.Sprintf(" (the first expires at %s)", time.UnixMilli(holds.NextExpiry).UTC().Format(time.RFC3339))
		}
		add(r)
	case a.LowStock > 0 && a.Available <= a.LowStock:
		add(statusReason{Code: "LOW_STOCK", Message: fmt.Sprintf("%d units available, at or below the low-stock threshold %d", a.Available, a.LowStock)})
	}
	if a.CustomerLimit > 0 {
		msg := fmt.Sprintf("each customer may hold or buy at most %d units", a.CustomerLimit)
		if a.CustomerWindow > 0 {
			msg += fmt.Sprintf(" in %s (units held now and sold in that time)", time.Duration(a.CustomerWindow)*time.Millisecond)
		}
		add(statusReason{Code: "CUSTOMER_LIMIT", Message: msg})
	}
	if s.guard != nil {
		if pending, err := s.guard.List(c.ctx, vendor, guardrails.Pending, 1000); err == nil {
			r := statusReason{Code: "QUARANTINE_PENDING"}
			for _, it := range pending {
				if it.Location == loc && it.SKU == sku {
					r.IDs = append(r.IDs, it.ID)
				}
			}
			if len(r.IDs) > 0 {
				r.Message = fmt.Sprintf("%d stock changes held back by a guardrail wait for approval", len(r.IDs))
				add(r)
			}
		}
	}
	body := map[string]any{"vendor_id": vendor, "location": loc, "sku": sku, "available": a.Available, "held": a.Held,
		"safety_stock": a.SafetyStock, "buffered": a.Buffered, "committed": a.Committed, "status": a.Status,
		"sellable": a.Sellable() > 0 && !fenced && !expired, "backordered": a.Backordered, "backorderable": a.Backorderable,
		"allotted": a.Allotted, "inventory_policy": policyName(a.Policy),
		"reasons": append([]statusReason{}, reasons...)}
	if s.history != nil {
		evs, err := s.history.PoolChanges(c.ctx, loc, sku, holds.Partitions, 10)
		if err == nil {
			changes := make([]poolChange, len(evs))
			for i, ev := range evs {
				changes[i] = poolChange{AtMs: ev.TS, Type: ev.Type, Shard: ev.Shard, Delta: ev.Delta, HeldDelta: ev.HeldDelta,
					AfterShard: ev.After, Source: sourceOf(ev), Actor: ev.Actor, Reason: ev.Reason, TransactionID: ev.Idem, HoldID: ev.Hold}
			}
			body["recent_changes"] = changes
		} else {
			body["recent_changes_error"] = "the ledger could not be read: " + toError(err).Message
		}
	}
	return c.json(http.StatusOK, body)
}
