// Package alerts detects stock threshold crossings in the event streams (LOW_STOCK,
// OUT_OF_STOCK, BACK_IN_STOCK) and delivers them to vendors' webhooks, signed, with retries.
package alerts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/engine"
)

// Alert types.
const (
	LowStock    = "LOW_STOCK"
	OutOfStock  = "OUT_OF_STOCK"
	BackInStock = "BACK_IN_STOCK"
	// Anomaly: stock fell faster than sales explain (see Config.AnomalyWindow); Detail says how.
	Anomaly = "ANOMALY"
)

// Types lists every alert type a subscription may ask for.
var Types = []string{LowStock, OutOfStock, BackInStock, Anomaly}

// ErrNotFound: no such subscription (for this vendor).
var ErrNotFound = errors.New("subscription not found")

// ErrTooManySubscriptions: the vendor already has as many active subscriptions as allowed.
var ErrTooManySubscriptions = errors.New("too many subscriptions")

// DefaultMaxSubscriptions is a vendor's cap on active subscriptions unless
// WithMaxSubscriptions sets another.
const DefaultMaxSubscriptions = 100

// Alert is one threshold crossing of one pool.
type Alert struct {
	ID        int64  `json:"id"`
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	Vendor    string `json:"vendor_id"`
	Location  string `json:"location"`
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Threshold int64  `json:"threshold"`
	TS        int64  `json:"ts"`
	// Detail explains an ANOMALY.
	Detail string `json:"detail,omitempty"`
	// Region is the region of the location, if it has one (BACK_IN_STOCK: for shoppers'
	// notices).
	Region string `json:"region,omitempty"`
}

// Subscription is a vendor's webhook.
type Subscription struct {
	ID          string    `json:"subscription_id"`
	Vendor      string    `json:"vendor_id"`
	CallbackURL string    `json:"callback_url"`
	EventTypes  []string  `json:"event_types"`
	Secret      string    `json:"secret,omitempty"` // shown once, when created
	CreatedAt   time.Time `json:"created_at"`
}

// Delivery is one alert on its way to one subscription.
type Delivery struct {
	ID             int64      `json:"id"`
	SubscriptionID string     `json:"subscription_id"`
	EventID        string     `json:"event_id"`
	Status         string     `json:"status"` // pending, delivered, dead
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"last_error,omitempty"`
	NextAttemptAt  time.Time  `json:"next_attempt_at"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	Payload        Alert      `json:"payload"`
}

// Store keeps subscriptions, alerts and deliveries in Postgres.
type Store struct {
	pool       *pgxpool.Pool
	policy     *URLPolicy
	maxSubs    int
	noticePage int
}

// StoreOption changes how NewStore builds a Store.
type StoreOption func(*Store)

// WithMaxSubscriptions caps each vendor's active subscriptions at n
// (FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS); n below 1 keeps the default.
func WithMaxSubscriptions(n int) StoreOption {
	return func(s *Store) {
		if n > 0 {
			s.maxSubs = n
		}
	}
}

// NewStore wraps a pool whose search_path holds the ledger schema.
func NewStore(pool *pgxpool.Pool, policy *URLPolicy, opts ...StoreOption) *Store {
	s := &Store{pool: pool, policy: policy, maxSubs: DefaultMaxSubscriptions, noticePage: DefaultNoticePage}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Subscribe registers a webhook for a vendor and returns it with its signing secret.
func (s *Store) Subscribe(ctx context.Context, vendor, callback string, types []string) (*Subscription, error) {
	if len(types) == 0 {
		return nil, &engine.ValidationError{Field: "event_types", Reason: "name at least one of LOW_STOCK, OUT_OF_STOCK, BACK_IN_STOCK"}
	}
	for _, t := range types {
		if !slices.Contains(Types, t) {
			return nil, &engine.ValidationError{Field: "event_types", Reason: fmt.Sprintf("%q is not LOW_STOCK, OUT_OF_STOCK or BACK_IN_STOCK", t)}
		}
	}
	if err := s.policy.Check(ctx, callback); err != nil {
		return nil, err
	}
	sub := &Subscription{ID: "sub_" + randomHex(12), Vendor: vendor, CallbackURL: callback, EventTypes: types, Secret: randomHex(32)}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The vendor's lock (held to commit) makes count-then-insert one step: two concurrent
	// subscribes cannot both see room for one more. The schema is in the key because the
	// lock is database-wide.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('webhook_subscriptions/' || current_schema() || '/' || $1, 0))`, vendor); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	var active int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhook_subscriptions WHERE vendor_id = $1 AND deleted_at IS NULL`, vendor).Scan(&active); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if active >= s.maxSubs {
		return nil, fmt.Errorf("%w: vendor %s has %d active subscriptions, the limit (FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS) is %d; delete one first",
			ErrTooManySubscriptions, vendor, active, s.maxSubs)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO webhook_subscriptions (id, vendor_id, callback_url, event_types, secret)
		VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, sub.ID, vendor, callback, types, sub.Secret).Scan(&sub.CreatedAt); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return sub, nil
}

// Subscriptions lists a vendor's active subscriptions (without their secrets).
func (s *Store) Subscriptions(ctx context.Context, vendor string) ([]Subscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, vendor_id, callback_url, event_types, created_at FROM webhook_subscriptions
		WHERE vendor_id = $1 AND deleted_at IS NULL ORDER BY created_at, id`, vendor)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) {
		var sub Subscription
		err := r.Scan(&sub.ID, &sub.Vendor, &sub.CallbackURL, &sub.EventTypes, &sub.CreatedAt)
		return sub, err
	})
}

// Unsubscribe deletes a vendor's subscription; its pending deliveries are dropped.
func (s *Store) Unsubscribe(ctx context.Context, vendor, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE webhook_subscriptions SET deleted_at = now()
		WHERE id = $1 AND vendor_id = $2 AND deleted_at IS NULL`, id, vendor)
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	_, err = s.pool.Exec(ctx, `UPDATE webhook_deliveries SET status = 'dropped' WHERE subscription_id = $1 AND status = 'pending'`, id)
	return err
}

// Deliveries lists a vendor's deliveries, newest first; status "" means any.
func (s *Store) Deliveries(ctx context.Context, vendor, status string, limit int) ([]Delivery, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempts, d.last_error,
		       d.next_attempt_at, d.delivered_at, d.payload
		  FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
		 WHERE s.vendor_id = $1 AND ($2 = '' OR d.status = $2)
		 ORDER BY d.id DESC LIMIT $3`, vendor, status, limit)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		var payload []byte
		err := r.Scan(&d.ID, &d.SubscriptionID, &d.EventID, &d.Status, &d.Attempts, &d.LastError, &d.NextAttemptAt, &d.DeliveredAt, &payload)
		if err == nil {
			err = json.Unmarshal(payload, &d.Payload)
		}
		return d, err
	})
}

// Alerts lists alerts after id afterID (all vendors when vendor is ""), oldest first.
func (s *Store) Alerts(ctx context.Context, vendor string, afterID int64, limit int) ([]Alert, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, type, vendor_id, location, sku, available, threshold, ts, detail FROM stock_alerts
		WHERE id > $1 AND ($2 = '' OR vendor_id = $2) ORDER BY id LIMIT $3`, afterID, vendor, limit)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alert, error) {
		var a Alert
		err := r.Scan(&a.ID, &a.Type, &a.Vendor, &a.Location, &a.SKU, &a.Available, &a.Threshold, &a.TS, &a.Detail)
		a.EventID = eventID(a.ID)
		return a, err
	})
}

func eventID(id int64) string { return fmt.Sprintf("alert-%d", id) }

// record stores alerts and queues one delivery per matching subscription, in one transaction.
func (s *Store) record(ctx context.Context, alerts []Alert) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("record alerts: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for i := range alerts {
		a := &alerts[i]
		if err := tx.QueryRow(ctx, `INSERT INTO stock_alerts (vendor_id, location, sku, type, available, threshold, ts, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`, a.Vendor, a.Location, a.SKU, a.Type, a.Available, a.Threshold, a.TS, a.Detail).Scan(&a.ID); err != nil {
			return fmt.Errorf("record alert: %w", err)
		}
		a.EventID = eventID(a.ID)
		payload, _ := json.Marshal(a)
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, event_id, payload)
			SELECT id, $1, $2 FROM webhook_subscriptions
			 WHERE vendor_id = $3 AND deleted_at IS NULL AND $4 = ANY (event_types)
			ON CONFLICT (subscription_id, event_id) DO NOTHING`, a.EventID, payload, a.Vendor, a.Type); err != nil {
			return fmt.Errorf("queue deliveries: %w", err)
		}
		if a.Type == BackInStock {
			if err := s.queueNotices(ctx, tx, a); err != nil {
				return err
			}
		}
	}
	return tx.Commit(ctx)
}

// lastLevels reads the level each pool was last alerted at.
func (s *Store) lastLevels(ctx context.Context) (map[engine.PoolKey]level, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (location, sku) location, sku, type FROM stock_alerts
		WHERE type <> 'ANOMALY' ORDER BY location, sku, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("last alert levels: %w", err)
	}
	defer rows.Close()
	out := map[engine.PoolKey]level{}
	for rows.Next() {
		var k engine.PoolKey
		var t string
		if err := rows.Scan(&k.Location, &k.SKU, &t); err != nil {
			return nil, err
		}
		out[k] = levelAfter(t)
	}
	return out, rows.Err()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recordActivity adds events per vendor and minute (ms / 60,000) to vendor_activity.
func (s *Store) recordActivity(ctx context.Context, counts map[string]map[int64]int64) error {
	batch := &pgx.Batch{}
	for vendor, minutes := range counts {
		for m, n := range minutes {
			batch.Queue(`INSERT INTO vendor_activity (vendor_id, minute, events) VALUES ($1, $2, $3)
				ON CONFLICT (vendor_id, minute) DO UPDATE SET events = vendor_activity.events + EXCLUDED.events`,
				vendor, time.UnixMilli(m*60_000).UTC(), n)
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record vendor activity: %w", err)
	}
	return nil
}

// EventsSince counts vendor's events from since on, by the minute (as the alert detector has
// read them: a few seconds behind, and counted again if the detector read them twice).
func (s *Store) EventsSince(ctx context.Context, vendor string, since time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM vendor_activity WHERE vendor_id = $1 AND minute >= $2`,
		vendor, since.Truncate(time.Minute)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("vendor activity: %w", err)
	}
	return n, nil
}
