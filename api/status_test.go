package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/ledger"
)

// TestPoolStatus: "why can't shoppers buy this?" names every reason, from Redis and the
// ledger as they are: all stock held (until the first hold expires), a per-customer limit, a
// quarantined change waiting, low stock, out of stock, a fenced partition, a perishable past
// its date; and the pool's latest changes with their sources (a sale, an import, a vendor's
// call). Another vendor's pool, or no location, is refused.
func TestPoolStatus(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	store := ledger.NewStore(pool)
	guards := guardrails.NewStore(pool, guardrails.Limits{})
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(guards), WithPoolHistory(store))
	ctx := context.Background()
	status := func(sku string) (response, map[string]string) {
		t.Helper()
		r := ts.do("GET", "/v1/vendors/acme/inventory/"+sku+"/status?location=berlin", acmeKey, nil).want(t, 200, "")
		codes := map[string]string{}
		for _, x := range r.body["reasons"].([]any) {
			m := x.(map[string]any)
			codes[m["code"].(string)] = fmt.Sprint(m["until_ms"])
		}
		return r, codes
	}
	if r, codes := status("cap"); r.body["sellable"] != true || len(codes) != 0 {
		t.Fatalf("a stocked pool: %s", r.raw)
	}
	// Hold all 10 caps: ALL_HELD, until the hold's expiry.
	h := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 10}, "Idempotency-Key", "st-1").
		want(t, 201, "")
	if r, codes := status("cap"); r.body["sellable"] != false || codes["ALL_HELD"] != fmt.Sprint(float64(h.num("expires_at_ms"))) {
		t.Fatalf("all held: %v (hold expires %d): %s", codes, h.num("expires_at_ms"), r.raw)
	}
	// Limited pool: a per-customer limit; a quarantined change waiting.
	ts.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"max_change": 10}).want(t, 200, "")
	ts.do("POST", "/v1/vendors/acme/inventory/limited/update", acmeKey, map[string]any{"location": "berlin", "stock_quantity": 5000,
		"transaction_id": "st-big"}).want(t, 202, "")
	if _, codes := status("limited"); codes["CUSTOMER_LIMIT"] == "" || codes["QUARANTINE_PENDING"] == "" {
		t.Fatalf("limited: %v", codes)
	}
	// Sneaker down to 3 (low stock at 5), then sold out.
	ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey, map[string]any{"location": "berlin", "change_type": "SPOILAGE",
		"quantity_change": -7, "transaction_id": "st-spoil"}).want(t, 200, "")
	ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey, map[string]any{"location": "berlin", "change_type": "SPOILAGE",
		"quantity_change": -10, "transaction_id": "st-spoil-2"}).want(t, 200, "")
	if _, codes := status("sneaker"); codes["LOW_STOCK"] == "" {
		t.Fatalf("sneaker at 3: %v", codes)
	}
	ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey, map[string]any{"location": "berlin", "stock_quantity": 0,
		"transaction_id": "st-zero"}).want(t, 200, "")
	if _, codes := status("sneaker"); codes["OUT_OF_STOCK"] == "" {
		t.Fatalf("sneaker at 0: %v", codes)
	}
	// A fenced partition and a perishable past its date.
	parts := func(sku string) []int {
		hs, err := ts.eng.Holds(ctx, "berlin", sku)
		if err != nil {
			t.Fatal(err)
		}
		return hs.Partitions
	}
	if err := ts.eng.Fence(ctx, parts("cap")[0], "test repair"); err != nil {
		t.Fatal(err)
	}
	if r, codes := status("cap"); codes["FENCED"] == "" || r.body["sellable"] != false {
		t.Fatalf("fenced: %s", r.raw)
	}
	if _, err := ts.eng.Unfence(ctx, parts("cap")[0]); err != nil {
		t.Fatal(err)
	}
	ts.do("PUT", "/v1/pools/berlin/limited", adminKey, map[string]any{"vendor": "acme", "shards": 2, "customer_limit": 2,
		"best_before_ms": ts.clock.Now().Add(-time.Minute).UnixMilli()}).want(t, 200, "")
	if r, codes := status("limited"); codes["PERISHABLE_EXPIRED"] == "" || r.body["sellable"] != false {
		t.Fatalf("past its date: %s", r.raw)
	}
	// The latest changes, from the ledger, with their sources.
	p := ledger.NewPersister(ts.eng, store, ledger.DefaultPersistConfig())
	for range 3 {
		if _, err := p.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := status("cap")
	changes, _ := r.body["recent_changes"].([]any)
	sources := map[string]bool{}
	for _, x := range changes {
		sources[x.(map[string]any)["source"].(string)] = true
	}
	if !sources["sale"] || !sources["vendor call"] {
		t.Fatalf("cap's changes %s", r.raw)
	}
	ts.do("GET", "/v1/vendors/acme/inventory/cap/status", acmeKey, nil).want(t, 422, "invalid")
	ts.do("GET", "/v1/vendors/acme/inventory/meal/status?location=lyon", acmeKey, nil).want(t, 404, "unknown_pool")
	ts.do("GET", "/v1/vendors/bistro/inventory/meal/status?location=lyon", acmeKey, nil).want(t, 403, "forbidden")
}
