package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flashhold/flashhold/engine"
)

// Notice is the type of a back-in-stock notice to a storefront: the customers to tell that a
// SKU they asked about can be bought again.
const Notice = "BACK_IN_STOCK_NOTICE"

// HoldLostNotice is the type of a notice to a storefront that a hold part it was given is
// gone (see engine.LostHold): "an item you hold is no longer available".
const HoldLostNotice = "HOLD_LOST_NOTICE"

// DefaultNoticePage is how many customers one notice names at most; more go in further pages.
const DefaultNoticePage = 500

// ErrNoWebhook: the storefront has no webhook for notices.
var ErrNoWebhook = errors.New("no webhook for notices")

// WithNoticePage sets how many customers one notice names (below 1: the default).
func WithNoticePage(n int) StoreOption {
	return func(s *Store) {
		if n > 0 {
			s.noticePage = n
		}
	}
}

// storefront is the owner of a storefront's webhook among the vendors' ('/' is in no vendor id).
func storefront(client string) string { return "client/" + client }

// Interest is a storefront's request to be told when a SKU is back, for one customer, at a
// location or in a region.
type Interest struct {
	ID        int64  `json:"id"`
	Customer  string `json:"customer_id"`
	SKU       string `json:"sku"`
	Location  string `json:"location,omitempty"`
	Region    string `json:"region,omitempty"`
	CreatedAt string `json:"created_at"`
}

// NoticePayload is what a storefront's webhook receives.
type NoticePayload struct {
	Type      string   `json:"type"`
	EventID   string   `json:"event_id"`
	AlertID   string   `json:"alert_event_id"`
	SKU       string   `json:"sku"`
	Location  string   `json:"location"`
	Region    string   `json:"region,omitempty"`
	Available int64    `json:"available"`
	TS        int64    `json:"ts"`
	Page      int      `json:"page"`
	Pages     int      `json:"pages"`
	Customers []string `json:"customers"`
}

// SetNoticeWebhook makes callback the storefront's webhook for notices, in place of any
// before, and returns it with its new signing secret.
func (s *Store) SetNoticeWebhook(ctx context.Context, client, callback string) (*Subscription, error) {
	if err := s.policy.Check(ctx, callback); err != nil {
		return nil, err
	}
	sub := &Subscription{ID: "sub_" + randomHex(12), Vendor: storefront(client), CallbackURL: callback,
		EventTypes: []string{Notice, HoldLostNotice}, Secret: randomHex(32)}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One at a time per storefront, so racing calls leave one webhook, not two.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, sub.Vendor); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_subscriptions SET deleted_at = now() WHERE vendor_id = $1 AND deleted_at IS NULL`, sub.Vendor); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO webhook_subscriptions (id, vendor_id, callback_url, event_types, secret)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, sub.ID, sub.Vendor, callback, sub.EventTypes, sub.Secret).Scan(&sub.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("set notice webhook: %w", err)
	}
	sub.Vendor = ""
	return sub, nil
}

// Interest records that the storefront wants to tell customer when sku is back at location
// (or in region): the same request again answers the interest already waiting (created false).
// ErrNoWebhook when the storefront has no webhook to send the notice to.
func (s *Store) Interest(ctx context.Context, client string, in Interest) (*Interest, bool, error) {
	var hooks int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_subscriptions WHERE vendor_id = $1 AND deleted_at IS NULL`,
		storefront(client)).Scan(&hooks); err != nil {
		return nil, false, fmt.Errorf("read notice webhook: %w", err)
	}
	if hooks == 0 {
		return nil, false, ErrNoWebhook
	}
	out := in
	// The one waiting may be notified between the insert and the read: then insert again.
	for range 3 {
		err := s.pool.QueryRow(ctx, `INSERT INTO notify_interests (client_id, customer_id, sku, location, region)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
			RETURNING id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
			client, in.Customer, in.SKU, in.Location, in.Region).Scan(&out.ID, &out.CreatedAt)
		if err == nil {
			return &out, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, false, fmt.Errorf("record interest: %w", err)
		}
		err = s.pool.QueryRow(ctx, `SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
			FROM notify_interests WHERE client_id = $1 AND customer_id = $2 AND sku = $3 AND location = $4 AND region = $5
			AND notified_at IS NULL`, client, in.Customer, in.SKU, in.Location, in.Region).Scan(&out.ID, &out.CreatedAt)
		if err == nil {
			return &out, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, false, fmt.Errorf("read interest: %w", err)
		}
	}
	return nil, false, fmt.Errorf("record interest: it kept being notified while it was recorded; send it again")
}

// Interests lists a storefront's interests still waiting, of one customer ("": all), oldest
// first, after the one with id after, at most limit.
func (s *Store) Interests(ctx context.Context, client, customer string, after int64, limit int) ([]Interest, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, customer_id, sku, location, region,
		to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
		FROM notify_interests WHERE client_id = $1 AND ($2 = '' OR customer_id = $2) AND notified_at IS NULL AND id > $3
		ORDER BY id LIMIT $4`, client, customer, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read interests: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Interest, error) {
		var in Interest
		err := row.Scan(&in.ID, &in.Customer, &in.SKU, &in.Location, &in.Region, &in.CreatedAt)
		return in, err
	})
}

// CancelInterest removes a waiting interest of the storefront; ErrNotFound when there is none.
func (s *Store) CancelInterest(ctx context.Context, client string, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM notify_interests WHERE id = $1 AND client_id = $2 AND notified_at IS NULL`, id, client)
	if err != nil {
		return fmt.Errorf("cancel interest: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// queueNotices, in the transaction that records a BACK_IN_STOCK alert, marks every interest
// waiting for the alert's SKU at its location (or in its region) notified, and queues, for
// each storefront that has a webhook, its customers in pages. An interest is notified once.
func (s *Store) queueNotices(ctx context.Context, tx pgx.Tx, a *Alert) error {
	rows, err := tx.Query(ctx, `WITH hit AS (
		    UPDATE notify_interests SET notified_at = now(), alert_id = $1
		     WHERE notified_at IS NULL AND sku = $2 AND (location = $3 OR ($4 <> '' AND region = $4))
		    RETURNING client_id, customer_id)
		SELECT client_id, array_agg(DISTINCT customer_id ORDER BY customer_id) FROM hit GROUP BY client_id ORDER BY client_id`,
		a.ID, a.SKU, a.Location, a.Region)
	if err != nil {
		return fmt.Errorf("notify interests: %w", err)
	}
	type group struct {
		client    string
		customers []string
	}
	groups, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (group, error) {
		var g group
		err := row.Scan(&g.client, &g.customers)
		return g, err
	})
	if err != nil {
		return fmt.Errorf("notify interests: %w", err)
	}
	for _, g := range groups {
		pages := (len(g.customers) + s.noticePage - 1) / s.noticePage
		for p := range pages {
			n := NoticePayload{Type: Notice, EventID: fmt.Sprintf("notice-%d-%s-%d", a.ID, g.client, p+1), AlertID: a.EventID,
				SKU: a.SKU, Location: a.Location, Region: a.Region, Available: a.Available, TS: a.TS, Page: p + 1, Pages: pages,
				Customers: g.customers[p*s.noticePage : min((p+1)*s.noticePage, len(g.customers))]}
			payload, _ := json.Marshal(n)
			if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, event_id, payload)
				SELECT id, $1, $2 FROM webhook_subscriptions WHERE vendor_id = $3 AND deleted_at IS NULL
				ON CONFLICT (subscription_id, event_id) DO NOTHING`, n.EventID, payload, storefront(g.client)); err != nil {
				return fmt.Errorf("queue notice: %w", err)
			}
		}
	}
	return nil
}

// LostHoldPayload is what a storefront's webhook receives of a hold part that is gone.
type LostHoldPayload struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	// HoldID is set when the part alone makes the hold (one part, placed by the fast path);
	// every hold id starts with HoldKey.
	HoldID      string `json:"hold_id,omitempty"`
	HoldKey     string `json:"hold_key"`
	Part        string `json:"part"`
	Customer    string `json:"customer_id,omitempty"`
	Location    string `json:"location"`
	SKU         string `json:"sku"`
	Qty         int64  `json:"qty"`
	Backordered bool   `json:"backordered,omitempty"`
	Sold        bool   `json:"sold,omitempty"`
	PlacedAt    int64  `json:"placed_at_ms,omitempty"`
	Reason      string `json:"reason"`
}

// HoldLost queues a notice to the webhook of the storefront (API key) that was given h that
// it is gone, once per part: the same part again changes nothing. A storefront without a
// notice webhook is not told.
func (s *Store) HoldLost(ctx context.Context, h engine.LostHold) error {
	if h.Owner == "" {
		return nil
	}
	n := LostHoldPayload{Type: HoldLostNotice, EventID: "hold-lost-" + h.EventHash, HoldID: h.HoldID, HoldKey: h.HoldKey,
		Part: h.Part, Customer: h.Customer, Location: h.Location, SKU: h.SKU, Qty: h.Qty, Backordered: h.Backordered,
		Sold: h.Sold, PlacedAt: h.PlacedAt, Reason: h.Why}
	payload, _ := json.Marshal(n)
	if _, err := s.pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, event_id, payload)
		SELECT id, $1, $2 FROM webhook_subscriptions WHERE vendor_id = $3 AND deleted_at IS NULL
		ON CONFLICT (subscription_id, event_id) DO NOTHING`, n.EventID, payload, storefront(h.Owner)); err != nil {
		return fmt.Errorf("queue lost-hold notice: %w", err)
	}
	return nil
}
