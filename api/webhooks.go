package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/flashhold/flashhold/alerts"
)

// Webhooks is what the subscription endpoints and alert events need (alerts.Store).
type Webhooks interface {
	Subscribe(ctx context.Context, vendor, callback string, types []string) (*alerts.Subscription, error)
	Subscriptions(ctx context.Context, vendor string) ([]alerts.Subscription, error)
	Unsubscribe(ctx context.Context, vendor, id string) error
	Deliveries(ctx context.Context, vendor, status string, limit int) ([]alerts.Delivery, error)
	Alerts(ctx context.Context, vendor string, afterID int64, limit int) ([]alerts.Alert, error)
	// Shoppers' back-in-stock notices (see notify.go).
	SetNoticeWebhook(ctx context.Context, client, callback string) (*alerts.Subscription, error)
	Interest(ctx context.Context, client string, in alerts.Interest) (*alerts.Interest, bool, error)
	Interests(ctx context.Context, client, customer string, after int64, limit int) ([]alerts.Interest, error)
	CancelInterest(ctx context.Context, client string, id int64) error
}

// WithWebhooks enables subscriptions and alert events.
func WithWebhooks(w Webhooks) Option { return func(s *Server) { s.webhooks = w } }

func (s *Server) needWebhooks() error {
	if s.webhooks == nil {
		return ledgerOff("webhooks")
	}
	return nil
}

type subscribeBody struct {
	CallbackURL string   `json:"callback_url"`
	EventTypes  []string `json:"event_types"`
}

func (s *Server) subscribe(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	if err := s.needWebhooks(); err != nil {
		return err
	}
	var b subscribeBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.CallbackURL == "" {
		return errorf(http.StatusBadRequest, "bad_request", "callback_url is required")
	}
	sub, err := s.webhooks.Subscribe(c.ctx, vendor, b.CallbackURL, b.EventTypes)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, sub)
}

func (s *Server) subscriptions(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	if err := s.needWebhooks(); err != nil {
		return err
	}
	subs, err := s.webhooks.Subscriptions(c.ctx, vendor)
	if err != nil {
		return err
	}
	if subs == nil {
		subs = []alerts.Subscription{}
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "subscriptions": subs})
}

func (s *Server) unsubscribe(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	if err := s.needWebhooks(); err != nil {
		return err
	}
	if err := s.webhooks.Unsubscribe(c.ctx, vendor, c.param("id")); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]string{"subscription_id": c.param("id"), "status": "deleted"})
}

func (s *Server) deliveries(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	if err := s.needWebhooks(); err != nil {
		return err
	}
	status := c.query("status")
	switch status {
	case "", "pending", "delivered", "dead", "dropped":
	default:
		return errorf(http.StatusUnprocessableEntity, "invalid", "status must be pending, delivered, dead or dropped")
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	ds, err := s.webhooks.Deliveries(c.ctx, vendor, status, limit)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []alerts.Delivery{}
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "deliveries": ds})
}

// alertEvents serves GET /v1/inventory/events?kind=alerts: alerts paged by id.
func (s *Server) alertEvents(c *call, vendor string, limit int) error {
	if err := s.needWebhooks(); err != nil {
		return err
	}
	var after int64
	if a := c.query("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "bad_request", "after must be the next_after of the previous page")
		}
		after = n
	}
	list, err := s.webhooks.Alerts(c.ctx, vendor, after, limit)
	if err != nil {
		return err
	}
	if list == nil {
		list = []alerts.Alert{}
	}
	body := map[string]any{"alerts": list, "source": "postgres"}
	if vendor != "" {
		body["vendor_id"] = vendor
	}
	if len(list) == limit {
		body["next_after"] = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	return c.json(http.StatusOK, body)
}
