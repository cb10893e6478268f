package api

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/ledger"
)

// ledgerSchema is a fresh schema with the ledger's migrations applied.
func ledgerSchema(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func webhookStore(t *testing.T, allow []string) *alerts.Store {
	pool := ledgerSchema(t)
	policy, err := alerts.NewURLPolicy(allow)
	if err != nil {
		t.Fatal(err)
	}
	return alerts.NewStore(pool, policy)
}

func TestSubscriptions(t *testing.T) {
	rdb := testredis.Standalone(t)
	ts := startServer(t, rdb, nil, WithWebhooks(webhookStore(t, []string{"127.0.0.1"})))
	sub := ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey,
		map[string]any{"callback_url": "http://127.0.0.1:9/hook", "event_types": []string{"LOW_STOCK", "OUT_OF_STOCK"}}).want(t, 201, "")
	id := sub.str("subscription_id")
	if id == "" || len(sub.str("secret")) != 64 {
		t.Fatalf("subscription %s", sub.raw)
	}
	list := ts.do("GET", "/v1/vendors/acme/inventory/subscriptions", acmeKey, nil).want(t, 200, "")
	if subs := list.body["subscriptions"].([]any); len(subs) != 1 || subs[0].(map[string]any)["secret"] != nil {
		t.Fatalf("list %s", list.raw)
	}
	ts.do("GET", "/v1/vendors/acme/inventory/deliveries?status=dead", acmeKey, nil).want(t, 200, "")
	ts.do("GET", "/v1/vendors/acme/inventory/deliveries?status=lost", acmeKey, nil).want(t, 422, "invalid")
	if r := ts.do("GET", "/v1/inventory/events?kind=alerts", acmeKey, nil).want(t, 200, ""); len(r.body["alerts"].([]any)) != 0 {
		t.Fatalf("alerts %s", r.raw)
	}
	ts.do("GET", "/v1/inventory/events?kind=other", acmeKey, nil).want(t, 422, "invalid")
	ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, map[string]any{"callback_url": "ftp://example.com/", "event_types": []string{"LOW_STOCK"}}).want(t, 422, "invalid")
	ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, map[string]any{"callback_url": "http://127.0.0.1:9/", "event_types": []string{"PRICE_DROP"}}).want(t, 422, "invalid")
	ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, map[string]any{"event_types": []string{"LOW_STOCK"}}).want(t, 400, "bad_request")
	ts.do("POST", "/v1/vendors/bistro/inventory/subscribe", acmeKey, map[string]any{"callback_url": "http://127.0.0.1:9/", "event_types": []string{"LOW_STOCK"}}).want(t, 403, "forbidden")
	ts.do("DELETE", "/v1/vendors/bistro/inventory/subscriptions/"+id, bistroKey, nil).want(t, 404, "subscription_not_found")
	ts.do("DELETE", "/v1/vendors/acme/inventory/subscriptions/"+id, acmeKey, nil).want(t, 200, "")
	ts.do("DELETE", "/v1/vendors/acme/inventory/subscriptions/"+id, acmeKey, nil).want(t, 404, "subscription_not_found")

	// Without the allow-list a loopback callback is refused.
	strict := startServer(t, rdb, nil, WithWebhooks(webhookStore(t, nil)))
	strict.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey,
		map[string]any{"callback_url": "http://127.0.0.1:9/hook", "event_types": []string{"LOW_STOCK"}}).want(t, 422, "invalid")
	// Without a ledger there are no webhooks.
	none := startServer(t, rdb, nil)
	none.do("GET", "/v1/vendors/acme/inventory/subscriptions", acmeKey, nil).want(t, 503, "webhooks_unavailable")
}

// TestSubscriptionLimit: a vendor may hold at most FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS (100 by
// default) active subscriptions; one more is refused with 409 and creates nothing, while other
// vendors and freed places are unaffected.
func TestSubscriptionLimit(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil, WithWebhooks(webhookStore(t, []string{"127.0.0.1"})))
	hook := map[string]any{"callback_url": "http://127.0.0.1:9/hook", "event_types": []string{"LOW_STOCK"}}
	var first string
	for i := range 100 {
		r := ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, hook).want(t, 201, "")
		if i == 0 {
			first = r.str("subscription_id")
		}
	}
	over := ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, hook).want(t, 409, "too_many_subscriptions")
	if msg := over.body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "100") {
		t.Errorf("the refusal does not name the limit: %s", over.raw)
	}
	list := ts.do("GET", "/v1/vendors/acme/inventory/subscriptions", acmeKey, nil).want(t, 200, "")
	if n := len(list.body["subscriptions"].([]any)); n != 100 {
		t.Fatalf("%d subscriptions after a refused one, want 100", n)
	}
	ts.do("POST", "/v1/vendors/bistro/inventory/subscribe", bistroKey, hook).want(t, 201, "")
	ts.do("DELETE", "/v1/vendors/acme/inventory/subscriptions/"+first, acmeKey, nil).want(t, 200, "")
	ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, hook).want(t, 201, "")
	ts.do("POST", "/v1/vendors/acme/inventory/subscribe", acmeKey, hook).want(t, 409, "too_many_subscriptions")
}
