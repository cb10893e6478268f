package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/flashhold/flashhold/engine"
)

type itemBody struct {
	Location   string `json:"location"`
	Region     string `json:"region"`
	SKU        string `json:"sku"`
	Qty        *int64 `json:"qty"`
	AllowSplit bool   `json:"allow_split"`
	Substitute bool   `json:"substitute"`
}

type reserveBody struct {
	Location   string        `json:"location"`
	Region     string        `json:"region"`
	SKU        string        `json:"sku"`
	Qty        *int64        `json:"qty"`
	AllowSplit bool          `json:"allow_split"`
	Substitute bool          `json:"substitute"`
	Items      []itemBody    `json:"items"`
	CustomerID string        `json:"customer_id"`
	TTLMs      *int64        `json:"ttl_ms"`
	Strategy   string        `json:"strategy"`
	Near       *engine.Point `json:"near"`
}

// decodeReserve turns a POST /v1/holds body into a reservation (without key and actor):
// either one item (location, sku, qty) or a cart (items[]); qty defaults to 1.
func decodeReserve(body []byte) (engine.ReserveRequest, error) {
	var b reserveBody
	if err := decodeJSON(body, &b); err != nil {
		return engine.ReserveRequest{}, err
	}
	req := engine.ReserveRequest{Customer: b.CustomerID, Strategy: b.Strategy, Near: b.Near}
	single := b.Location != "" || b.Region != "" || b.SKU != "" || b.Qty != nil || b.AllowSplit || b.Substitute
	switch {
	case single && b.Items != nil:
		return req, errorf(http.StatusBadRequest, "bad_request", "give either location (or region)/sku/qty or items, not both")
	case single:
		req.Items = []engine.Item{{Location: b.Location, Region: b.Region, SKU: b.SKU, Qty: qtyOr1(b.Qty), AllowSplit: b.AllowSplit,
			Substitute: b.Substitute}}
	case len(b.Items) > 0:
		for _, it := range b.Items {
			req.Items = append(req.Items, engine.Item{Location: it.Location, Region: it.Region, SKU: it.SKU, Qty: qtyOr1(it.Qty),
				AllowSplit: it.AllowSplit, Substitute: it.Substitute})
		}
	default:
		return req, errorf(http.StatusBadRequest, "bad_request", "give location (or region) and sku (and qty), or items")
	}
	if b.TTLMs != nil {
		if *b.TTLMs <= 0 || *b.TTLMs > int64(24*time.Hour/time.Millisecond) {
			return req, errorf(http.StatusUnprocessableEntity, "invalid", "ttl_ms: must be a positive number of milliseconds within the allowed range")
		}
		req.TTL = time.Duration(*b.TTLMs) * time.Millisecond
	}
	return req, nil
}

func qtyOr1(q *int64) int64 {
	if q == nil {
		return 1
	}
	return *q
}

type partJSON struct {
	Location string `json:"location"`
	SKU      string `json:"sku"`
	Qty      int64  `json:"qty"`
	Shard    int    `json:"shard"`
	Status   string `json:"status,omitempty"`
	// Backordered: the part's units are owed, not yet taken from stock.
	Backordered bool `json:"backordered,omitempty"`
}

type holdJSON struct {
	HoldID        string                `json:"hold_id"`
	Status        string                `json:"status"`
	CustomerID    string                `json:"customer_id,omitempty"`
	ExpiresAtMs   int64                 `json:"expires_at_ms"`
	ExpiresAt     string                `json:"expires_at"`
	Parts         []partJSON            `json:"parts"`
	Substitutions []engine.Substitution `json:"substitutions,omitempty"`
}

func toHoldJSON(h *engine.Hold) holdJSON {
	out := holdJSON{HoldID: h.ID, Status: h.Status, CustomerID: h.Customer, ExpiresAtMs: h.ExpiresAt,
		ExpiresAt: time.UnixMilli(h.ExpiresAt).UTC().Format(time.RFC3339Nano), Parts: make([]partJSON, len(h.Parts)),
		Substitutions: h.Substitutions}
	for i, p := range h.Parts {
		out.Parts[i] = partJSON{Location: p.Location, SKU: p.SKU, Qty: p.Qty, Shard: p.Shard, Status: p.Status, Backordered: p.Backordered}
	}
	return out
}

func (s *Server) createHold(c *call) error {
	key := string(c.rc.Request.Header.Peek("Idempotency-Key"))
	if key == "" {
		return errorf(http.StatusBadRequest, "missing_idempotency_key", "the Idempotency-Key header is required")
	}
	req, err := decodeReserve(c.rc.PostBody())
	if err != nil {
		return err
	}
	req.IdempotencyKey, req.Actor = key, c.actor()
	h, err := s.eng.Reserve(c.ctx, req)
	if err != nil {
		return s.withAlternatives(c, err)
	}
	if h.Replayed {
		c.rc.Response.Header.Set("Idempotent-Replayed", "true")
	} else {
		s.metrics.holds.WithLabelValues("created").Inc()
	}
	return c.json(http.StatusCreated, toHoldJSON(h))
}

func (s *Server) getHold(c *call) error {
	h, err := s.eng.GetHold(c.holdCtx(), c.param("id"), c.actor())
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, toHoldJSON(h))
}

// endBody is the optional body of commit and release.
type endBody struct{}

func optionalEmptyBody(c *call) error {
	if len(c.rc.PostBody()) == 0 {
		return nil
	}
	return decodeJSON(c.rc.PostBody(), &endBody{})
}

// qtyBody is the body of adjust (qty: the units to keep) and the optional body of commit
// (qty: the units to sell of a hold of one part, the rest released).
type qtyBody struct {
	Qty *int64 `json:"qty"`
}

func (s *Server) commitHold(c *call) error {
	var b qtyBody
	if len(c.rc.PostBody()) > 0 {
		if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
			return err
		}
	}
	id := c.param("id")
	if b.Qty != nil {
		if err := s.eng.CommitPart(c.holdCtx(), id, *b.Qty, c.actor()); err != nil {
			return err
		}
		s.metrics.holds.WithLabelValues("committed").Inc()
		return c.json(http.StatusOK, map[string]any{"hold_id": id, "status": engine.StatusCommitted, "qty": *b.Qty})
	}
	if err := s.eng.Commit(c.holdCtx(), id, c.actor()); err != nil {
		return err
	}
	s.metrics.holds.WithLabelValues("committed").Inc()
	return c.json(http.StatusOK, map[string]string{"hold_id": id, "status": engine.StatusCommitted})
}

// adjustHold reduces a hold of one part to qty units; the rest are available at once.
func (s *Server) adjustHold(c *call) error {
	var b qtyBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.Qty == nil {
		return errorf(http.StatusBadRequest, "bad_request", "qty is required")
	}
	h, err := s.eng.ReduceHold(c.holdCtx(), c.param("id"), *b.Qty, c.actor())
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, toHoldJSON(h))
}

func (s *Server) releaseHold(c *call) error {
	if err := optionalEmptyBody(c); err != nil {
		return err
	}
	id := c.param("id")
	if err := s.eng.Release(c.holdCtx(), id, c.actor()); err != nil {
		return err
	}
	s.metrics.holds.WithLabelValues("released").Inc()
	return c.json(http.StatusOK, map[string]string{"hold_id": id, "status": engine.StatusReleased})
}

type extendBody struct {
	TTLMs *int64 `json:"ttl_ms"`
}

func (s *Server) extendHold(c *call) error {
	var b extendBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.TTLMs == nil {
		return errorf(http.StatusBadRequest, "bad_request", "ttl_ms is required")
	}
	if *b.TTLMs <= 0 || *b.TTLMs > int64(24*time.Hour/time.Millisecond) {
		return errorf(http.StatusUnprocessableEntity, "invalid", "ttl_ms: must be a positive number of milliseconds within the allowed range")
	}
	id := c.param("id")
	exp, err := s.eng.Extend(c.holdCtx(), id, time.Duration(*b.TTLMs)*time.Millisecond, c.actor())
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"hold_id": id, "expires_at_ms": exp,
		"expires_at": time.UnixMilli(exp).UTC().Format(time.RFC3339Nano)})
}

func (s *Server) availability(c *call) error {
	loc, region := c.query("location"), c.query("region")
	switch {
	case loc != "" && region != "":
		return errorf(http.StatusBadRequest, "bad_request", "give the location or the region query parameter, not both")
	case region != "":
		return s.regionAvailability(c, region)
	case loc == "":
		return errorf(http.StatusBadRequest, "bad_request", "the location (or region) query parameter is required")
	}
	a, err := s.eng.Availability(c.ctx, loc, c.param("sku"))
	if err != nil {
		return err
	}
	body := map[string]any{"location": a.Location, "sku": a.SKU, "available": a.Available,
		"held": a.Held, "on_hand": a.OnHand, "safety_stock": a.SafetyStock, "status": a.Status, "low_stock_threshold": a.LowStock,
		"sellable": a.Sellable(), "backorderable": a.Backorderable, "backordered": a.Backordered, "allotted": a.Allotted,
		"inventory_policy": policyName(a.Policy)}
	if a.ReleaseAt > 0 {
		body["release_at_ms"] = a.ReleaseAt
	}
	return c.json(http.StatusOK, body)
}

// policyName is a pool's inventory policy as the API names it.
func policyName(p string) string {
	if p == "" {
		return engine.PolicyDeny
	}
	return p
}

// withAlternatives adds to a refusal for stock the substitutes of the refused pool (or of the
// SKU in the region) that have units now; a failure to read them leaves the refusal as it is.
func (s *Server) withAlternatives(c *call, err error) error {
	var ie *engine.InsufficientError
	if !errors.As(err, &ie) {
		return err
	}
	alts, aerr := s.eng.Alternatives(c.ctx, ie)
	if aerr != nil || len(alts) == 0 {
		return err
	}
	ae := toError(err)
	ae.Alternatives = alts
	return ae
}
