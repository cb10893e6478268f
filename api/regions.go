package api

import (
	"net/http"

	"github.com/flashhold/flashhold/engine"
)

// regionBody is PUT /v1/regions/{region}: what GET answers may be sent back as it is.
type regionBody struct {
	Region    string                  `json:"region"`
	Strategy  string                  `json:"strategy"`
	Locations []engine.RegionLocation `json:"locations"`
}

func (s *Server) putRegion(c *call) error {
	var b regionBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.Region != "" && b.Region != c.param("region") {
		return errorf(http.StatusUnprocessableEntity, "invalid", "region: the body names %s, the path %s", b.Region, c.param("region"))
	}
	r := engine.Region{Name: c.param("region"), Strategy: b.Strategy, Locations: b.Locations}
	if err := s.eng.PutRegion(c.ctx, r); err != nil {
		return err
	}
	s.syncRegions(c)
	got, err := s.eng.RegionNamed(c.ctx, r.Name, true)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, got)
}

// syncRegions records the regions in the ledger at once (the persister also copies them when
// they change), so that a Redis that loses its data can be restored with them.
func (s *Server) syncRegions(c *call) {
	if s.poolStore == nil {
		return
	}
	if err := s.poolStore.SyncRegions(c.ctx, s.eng.Regions); err != nil {
		s.log.Warn().Err(err).Msg("regions not yet recorded in the ledger; the persister's next sync records them")
	}
}

func (s *Server) getRegion(c *call) error {
	r, err := s.eng.RegionNamed(c.ctx, c.param("region"), true)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, r)
}

func (s *Server) listRegions(c *call) error {
	rs, err := s.eng.Regions(c.ctx)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"regions": rs})
}

// deleteRegion marks the region deleted in the ledger first, then deletes it from Redis: a
// ledger that cannot be written answers 503 with nothing changed, and a delete that stops
// half-way is finished when sent again (until then the persister's copy of the regions, which
// still holds it, brings it back in the ledger).
func (s *Server) deleteRegion(c *call) error {
	if s.poolStore != nil {
		if err := s.poolStore.DeleteRegion(c.ctx, c.param("region")); err != nil {
			return err
		}
	}
	if err := s.eng.DeleteRegion(c.ctx, c.param("region")); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"region": c.param("region"), "status": "deleted"})
}

// regionItems pages through what shoppers in a region can buy: the SKUs with a pool at one of
// its locations (in_stock=true: with units available there), in SKU order.
func (s *Server) regionItems(c *call) error {
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	inStock := false
	switch c.query("in_stock") {
	case "", "false":
	case "true":
		inStock = true
	default:
		return errorf(http.StatusBadRequest, "bad_request", "in_stock must be true or false")
	}
	items, next, err := s.eng.RegionItems(c.ctx, c.param("region"), c.query("after"), limit, inStock)
	if err != nil {
		return err
	}
	if items == nil {
		items = []*engine.RegionStock{}
	}
	body := map[string]any{"region": c.param("region"), "items": items}
	if next != "" {
		body["next_after"] = next
	}
	return c.json(http.StatusOK, body)
}

// regionAvailability is GET /v1/availability/{sku}?region=: the region's total and each
// location's share.
func (s *Server) regionAvailability(c *call, region string) error {
	a, err := s.eng.RegionAvailability(c.ctx, region, c.param("sku"))
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, a)
}
