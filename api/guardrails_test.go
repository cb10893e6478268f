package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/internal/testredis"
)

// TestGuardrails: a vendor's limits hold back changes that break them (single and bulk),
// without changing the stock; a retry gets the same answer; approval applies the change as it
// was sent unless the pool changed since (stale); rejection applies nothing; bad limits are
// refused.
func TestGuardrails(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(guardrails.NewStore(pool, guardrails.Limits{})))
	stock := func() int64 {
		a, err := ts.eng.Availability(context.Background(), "berlin", "sneaker")
		if err != nil {
			t.Fatal(err)
		}
		return a.Available
	}
	update := func(body map[string]any, status int) response {
		return ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey, body).want(t, status, "")
	}
	// Defaults off: anything goes.
	update(map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 500, "transaction_id": "big-0"}, 200)
	base := stock()
	if r := ts.do("GET", "/v1/vendors/acme/guardrails", acmeKey, nil).want(t, 200, ""); r.body["defaults"] != true {
		t.Fatalf("guardrails %s", r.raw)
	}
	ts.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"max_change": -1}).want(t, 422, "invalid")
	ts.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"max_change": 100, "max_relative": 0.5, "ceiling": 1000}).want(t, 200, "")
	ts.do("PUT", "/v1/vendors/bistro/guardrails", acmeKey, map[string]any{"max_change": 1}).want(t, 403, "forbidden")

	// Within the limits: applied.
	update(map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 50, "transaction_id": "ok-1"}, 200)
	base += 50
	// A unit mix-up (x1000): quarantined, nothing changed; its retry answers the same.
	held := update(map[string]any{"location": "berlin", "stock_quantity": 520000, "transaction_id": "mixup"}, 202)
	again := update(map[string]any{"location": "berlin", "stock_quantity": 520000, "transaction_id": "mixup"}, 202)
	if held.str("status") != "quarantined" || string(held.raw) != string(again.raw) || stock() != base {
		t.Fatalf("held %s, again %s, stock %d (want %d)", held.raw, again.raw, stock(), base)
	}
	// A truncated export (everything to 0): more than half of the stock.
	zero := update(map[string]any{"location": "berlin", "stock_quantity": 0, "transaction_id": "zero"}, 202)
	// Bulk: one row fine, one over the limit.
	bulk := ts.do("POST", "/v1/vendors/acme/inventory/bulk_update", acmeKey, map[string]any{"items": []map[string]any{
		{"location": "berlin", "sku": "sneaker", "change_type": "SPOILAGE", "quantity_change": -5, "transaction_id": "b1"},
		{"location": "berlin", "sku": "sneaker", "change_type": "SPOILAGE", "quantity_change": -200, "transaction_id": "b2"},
	}}).want(t, 200, "")
	if fmt.Sprint(bulk.body["updated_items"], bulk.body["quarantined_items"]) != "1 1" {
		t.Fatalf("bulk %s", bulk.raw)
	}
	base -= 5
	list := ts.do("GET", "/v1/vendors/acme/quarantine?status=pending", acmeKey, nil).want(t, 200, "")
	if n := len(list.body["quarantine"].([]any)); n != 3 || stock() != base {
		t.Fatalf("pending %d: %s; stock %d (want %d)", n, list.raw, stock(), base)
	}
	id := func(r response) string {
		return fmt.Sprint(r.body["quarantine"].(map[string]any)["id"])
	}
	// Reject the mix-up; approving the zeroing after the pool changed (the bulk spoilage) is stale.
	ts.do("POST", "/v1/vendors/acme/quarantine/"+id(held)+"/reject", acmeKey, nil).want(t, 200, "")
	ts.do("POST", "/v1/vendors/acme/quarantine/"+id(held)+"/approve", acmeKey, nil).want(t, 409, "already_decided")
	ts.do("POST", "/v1/vendors/acme/quarantine/"+id(zero)+"/approve", acmeKey, nil).want(t, 409, "stale")
	if stock() != base {
		t.Fatalf("stock %d after a rejection and a stale approval, want %d", stock(), base)
	}
	// A change approved while the pool is as it was: applied as sent.
	big := update(map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 300, "transaction_id": "delivery"}, 202)
	ok := ts.do("POST", "/v1/vendors/acme/quarantine/"+id(big)+"/approve", adminKey, nil).want(t, 200, "")
	if ok.str("status") != "approved" || stock() != base+300 {
		t.Fatalf("approved %s, stock %d (want %d)", ok.raw, stock(), base+300)
	}
	ts.do("POST", "/v1/vendors/acme/quarantine/999999/approve", acmeKey, nil).want(t, 404, "quarantine_not_found")
	ts.do("GET", "/v1/vendors/acme/quarantine?status=odd", acmeKey, nil).want(t, 422, "invalid")
}

// TestGuardrailsWithoutPostgres: with the ledger gone, a vendor change that needs the
// guardrails answers 503 with Retry-After (never 500); a vendor whose limits were read
// before goes on with what was read.
func TestGuardrailsWithoutPostgres(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	st := guardrails.NewStore(pool, guardrails.Limits{})
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(st))
	ts.do("PUT", "/v1/vendors/bistro/guardrails", bistroKey, map[string]any{"max_change": 100}).want(t, 200, "")
	ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey,
		map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 5, "transaction_id": "before"}).want(t, 200, "")
	pool.Close()
	r := ts.do("POST", "/v1/vendors/bistro/inventory/meal/update", bistroKey,
		map[string]any{"location": "lyon", "change_type": "RESTOCK", "quantity_change": 5, "transaction_id": "down"}).want(t, 503, "postgres_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey,
		map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 5, "transaction_id": "during"}).want(t, 200, "")
}
