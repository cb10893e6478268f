package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
)

// Back-in-stock notices for shoppers: a storefront (a checkout API key) sets its webhook, then
// registers customers' interest in a SKU at a location or in a region; when the pool comes back
// (the alert detector's BACK_IN_STOCK), the webhook receives the customers to tell, in pages,
// signed like vendors' webhooks, each interest once.

type noticeWebhookBody struct {
	CallbackURL string `json:"callback_url"`
}

func (s *Server) putNoticeWebhook(c *call) error {
	if err := s.needWebhooks(); err != nil {
		return err
	}
	var b noticeWebhookBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.CallbackURL == "" {
		return errorf(http.StatusBadRequest, "bad_request", "callback_url is required")
	}
	sub, err := s.webhooks.SetNoticeWebhook(c.ctx, c.actor(), b.CallbackURL)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, sub)
}

type interestBody struct {
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Location   string `json:"location"`
	Region     string `json:"region"`
}

func (s *Server) createInterest(c *call) error {
	if err := s.needWebhooks(); err != nil {
		return err
	}
	var b interestBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	switch {
	case !engine.ValidID(b.CustomerID):
		return errorf(http.StatusUnprocessableEntity, "invalid", "customer_id: required, must match %s", engine.IDPattern())
	case !engine.ValidID(b.SKU):
		return errorf(http.StatusUnprocessableEntity, "invalid", "sku: required, must match %s", engine.IDPattern())
	case (b.Location == "") == (b.Region == ""):
		return errorf(http.StatusUnprocessableEntity, "invalid", "location: give location or region, one of them")
	case b.Region != "":
		if _, err := s.eng.RegionNamed(c.ctx, b.Region, false); err != nil {
			if errors.Is(err, engine.ErrUnknownRegion) {
				return errorf(http.StatusUnprocessableEntity, "invalid", "region: unknown region %s", b.Region)
			}
			return err
		}
	default:
		if _, err := s.eng.Pool(c.ctx, b.Location, b.SKU); err != nil {
			return err
		}
	}
	in, created, err := s.webhooks.Interest(c.ctx, c.actor(), alerts.Interest{Customer: b.CustomerID, SKU: b.SKU,
		Location: b.Location, Region: b.Region})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	return c.json(status, in)
}

func (s *Server) listInterests(c *call) error {
	if err := s.needWebhooks(); err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	var after int64
	if a := c.query("after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "after must be an interest id")
		}
	}
	ins, err := s.webhooks.Interests(c.ctx, c.actor(), c.query("customer_id"), after, limit)
	if err != nil {
		return err
	}
	body := map[string]any{"interests": ins}
	if ins == nil {
		body["interests"] = []alerts.Interest{}
	}
	if len(ins) == limit {
		body["next_after"] = ins[len(ins)-1].ID
	}
	return c.json(http.StatusOK, body)
}

func (s *Server) cancelInterest(c *call) error {
	if err := s.needWebhooks(); err != nil {
		return err
	}
	id, err := strconv.ParseInt(c.param("id"), 10, 64)
	if err != nil {
		return errorf(http.StatusNotFound, "interest_not_found", "no interest %s", c.param("id"))
	}
	if err := s.webhooks.CancelInterest(c.ctx, c.actor(), id); err != nil {
		if errors.Is(err, alerts.ErrNotFound) {
			return errorf(http.StatusNotFound, "interest_not_found", "no interest %d waiting", id)
		}
		return err
	}
	return c.json(http.StatusOK, map[string]any{"id": id, "status": "deleted"})
}
