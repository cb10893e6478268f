package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/guardrails"
)

// Guardrails is what the API needs of the vendors' limits and quarantine (package guardrails).
type Guardrails interface {
	Limits(ctx context.Context, vendor string) (guardrails.Limits, bool, error)
	SetLimits(ctx context.Context, vendor string, l guardrails.Limits) error
	Quarantine(ctx context.Context, it guardrails.Item) (guardrails.Item, error)
	Find(ctx context.Context, vendor, tx string) (*guardrails.Item, error)
	Get(ctx context.Context, vendor string, id int64) (guardrails.Item, error)
	List(ctx context.Context, vendor, status string, limit int) ([]guardrails.Item, error)
	Decide(ctx context.Context, vendor string, id int64, status, by string, after *int64) (guardrails.Item, error)
}

// WithGuardrails enables the vendors' limits on stock changes and their quarantine.
func WithGuardrails(g Guardrails) Option {
	return func(s *Server) { s.guard, s.guardLimits = g, &limitsCache{byVendor: map[string]cachedLimits{}} }
}

// limitsCache keeps each vendor's limits as last read, so that a change does not read
// Postgres every time, and a vendor's changes go on while Postgres is away.
type limitsCache struct {
	mu       sync.Mutex
	byVendor map[string]cachedLimits
}

type cachedLimits struct {
	l  guardrails.Limits
	at time.Time
}

// limitsTTL is how long read limits are used before they are read again.
const limitsTTL = 5 * time.Second

// limits reads vendor's limits, through the cache: fresh for limitsTTL, and past it while
// Postgres cannot be read.
func (s *Server) limits(ctx context.Context, vendor string) (guardrails.Limits, error) {
	c := s.guardLimits
	c.mu.Lock()
	got, ok := c.byVendor[vendor]
	c.mu.Unlock()
	if ok && time.Since(got.at) < limitsTTL {
		return got.l, nil
	}
	l, _, err := s.guard.Limits(ctx, vendor)
	if err != nil {
		if ok {
			return got.l, nil
		}
		return guardrails.Limits{}, err
	}
	c.mu.Lock()
	c.byVendor[vendor] = cachedLimits{l: l, at: time.Now()}
	c.mu.Unlock()
	return l, nil
}

// quarantined is the answer to a change a guardrail held back.
type quarantined struct{ item guardrails.Item }

func (q *quarantined) Error() string { return "quarantined: " + q.item.Rule }

// hold quarantines req when it breaks vendor's limits (or was quarantined before), and
// returns the quarantined change; nil when the change may be applied. A change the engine has
// seen already (a retry) is left to it: its answer stands.
func (s *Server) hold(ctx context.Context, vendor string, req engine.AdjustRequest) (*guardrails.Item, error) {
	limits, err := s.limits(ctx, vendor)
	if err != nil || limits.Off() {
		return nil, err
	}
	if prior, err := s.guard.Find(ctx, vendor, req.TransactionID); err != nil || prior != nil {
		return prior, err
	}
	if known, err := s.eng.TransactionKnown(ctx, vendor, req.TransactionID); err != nil || known {
		return nil, err
	}
	a, err := s.eng.Availability(ctx, req.Location, req.SKU)
	if err != nil {
		return nil, err
	}
	rule := limits.Check(a.Unsold(), engine.After(req.Kind, req.Qty, a.Unsold()))
	if rule == "" {
		return nil, nil
	}
	it, err := s.guard.Quarantine(ctx, guardrails.Item{Vendor: vendor, Location: req.Location, SKU: req.SKU, Kind: req.Kind,
		Qty: req.Qty, TransactionID: req.TransactionID, Actor: req.Actor, Reason: req.Reason, Before: a.Unsold(), Rule: rule})
	return &it, err
}

func (s *Server) guardCall(c *call) (string, error) {
	return c.ledgerVendor(s.guard != nil, "guardrails")
}

// getGuardrails serves GET /v1/vendors/{vendor}/guardrails.
func (s *Server) getGuardrails(c *call) error {
	vendor, err := s.guardCall(c)
	if err != nil {
		return err
	}
	l, own, err := s.guard.Limits(c.ctx, vendor)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "limits": l, "defaults": !own})
}

// putGuardrails serves PUT /v1/vendors/{vendor}/guardrails: the vendor's own limits.
func (s *Server) putGuardrails(c *call) error {
	vendor, err := s.guardCall(c)
	if err != nil {
		return err
	}
	var l guardrails.Limits
	if err := decodeJSON(c.rc.PostBody(), &l); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return errorf(http.StatusUnprocessableEntity, "invalid", "%s", err.Error())
	}
	if err := s.guard.SetLimits(c.ctx, vendor, l); err != nil {
		return err
	}
	s.guardLimits.mu.Lock()
	s.guardLimits.byVendor[vendor] = cachedLimits{l: l, at: time.Now()}
	s.guardLimits.mu.Unlock()
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "limits": l, "defaults": false})
}

// listQuarantine serves GET /v1/vendors/{vendor}/quarantine?status=.
func (s *Server) listQuarantine(c *call) error {
	vendor, err := s.guardCall(c)
	if err != nil {
		return err
	}
	status := c.query("status")
	switch status {
	case "", guardrails.Pending, guardrails.Approved, guardrails.Rejected, guardrails.Stale:
	default:
		return errorf(http.StatusUnprocessableEntity, "invalid", "status must be pending, approved, rejected or stale")
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	items, err := s.guard.List(c.ctx, vendor, status, limit)
	if err != nil {
		return err
	}
	if items == nil {
		items = []guardrails.Item{}
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "quarantine": items})
}

// decideQuarantine serves POST …/quarantine/{id}/approve and …/reject. An approval applies
// the change as it would have been when it was sent, if the pool has not changed since;
// otherwise the change is stale and nothing is applied.
func (s *Server) decideQuarantine(approve bool) func(*call) error {
	return func(c *call) error {
		vendor, err := s.guardCall(c)
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(c.param("id"), 10, 64)
		if err != nil || id < 1 {
			return errorf(http.StatusNotFound, "quarantine_not_found", "no quarantined change %q", c.param("id"))
		}
		it, err := s.guard.Get(c.ctx, vendor, id)
		if err != nil {
			return err
		}
		if it.Status != guardrails.Pending {
			return errorf(http.StatusConflict, "already_decided", "quarantined change %d is %s", id, it.Status)
		}
		if !approve {
			it, err = s.guard.Decide(c.ctx, vendor, id, guardrails.Rejected, c.actor(), nil)
			if err != nil {
				return err
			}
			return c.json(http.StatusOK, it)
		}
		a, err := s.eng.Availability(c.ctx, it.Location, it.SKU)
		if err != nil {
			return err
		}
		if a.Unsold() != it.Before {
			if _, err := s.guard.Decide(c.ctx, vendor, id, guardrails.Stale, c.actor(), nil); err != nil {
				return err
			}
			return errorf(http.StatusConflict, "stale", "the pool has %d available, %d when the change was sent: nothing applied", a.Unsold(), it.Before)
		}
		res, err := s.eng.Adjust(c.ctx, engine.AdjustRequest{Location: it.Location, SKU: it.SKU, Kind: it.Kind, Qty: it.Qty,
			TransactionID: it.TransactionID, Actor: it.Actor, Reason: approvedReason(it, c.actor())})
		if err != nil {
			return err
		}
		it, err = s.guard.Decide(c.ctx, vendor, id, guardrails.Approved, c.actor(), &res.After)
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, it)
	}
}

func approvedReason(it guardrails.Item, by string) string {
	r := fmt.Sprintf("approved by %s from quarantine %d", by, it.ID)
	if it.Reason != "" {
		r = it.Reason + "; " + r
	}
	return r
}
