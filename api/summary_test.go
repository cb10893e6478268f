package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/internal/testredis"
)

// TestVendorSummary: a vendor's summary counts its pools in stock, low and out, in all and
// per location, the changes waiting in quarantine, its last import, and its events of the last
// hour as the alert detector read them; another vendor's summary is refused.
func TestVendorSummary(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	policy, _ := alerts.NewURLPolicy(nil)
	hooks := alerts.NewStore(pool, policy)
	store := imports.NewStore(pool)
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(guardrails.NewStore(pool, guardrails.Limits{})),
		WithImports(store, importConfig()), WithVendorActivity(hooks))
	ts.srv.now = ts.clock.Now // the events' time is the engine's clock
	ctx := context.Background()
	cfg := alerts.DefaultConfig()
	det := alerts.NewDetector(ts.eng, hooks, cfg, zerolog.Nop(), ts.clock.Now)
	if _, err := det.RunOnce(ctx); err != nil { // joins the streams
		t.Fatal(err)
	}
	update := func(sku string, body map[string]any, status int) {
		t.Helper()
		body["location"] = "berlin"
		ts.do("POST", "/v1/vendors/acme/inventory/"+sku+"/update", acmeKey, body).want(t, status, "")
	}
	update("sneaker", map[string]any{"stock_quantity": 0, "transaction_id": "sum-1"}, 200) // out
	update("cap", map[string]any{"stock_quantity": 3, "transaction_id": "sum-2"}, 200)     // low (threshold 5)
	ts.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"max_change": 100}).want(t, 200, "")
	update("limited", map[string]any{"stock_quantity": 900, "transaction_id": "sum-3"}, 202) // quarantined
	im := ts.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, "location,sku,change_type,quantity_change\nberlin,limited,RESTOCK,1\n",
		"Content-Type", "text/csv").want(t, 202, "")
	if _, err := det.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r := ts.do("GET", "/v1/vendors/acme/summary", acmeKey, nil).want(t, 200, "")
	totals := r.body["totals"].(map[string]any)
	got := fmt.Sprintf("%v %v %v %v %v", totals["pools"], totals["in_stock"], totals["low"], totals["out"], totals["quarantined"])
	if got != "3 2 1 1 1" {
		t.Fatalf("totals %s, want pools 3, in stock 2, low 1, out 1, quarantined 1: %s", got, r.raw)
	}
	locs := r.body["locations"].([]any)
	if len(locs) != 1 || locs[0].(map[string]any)["location"] != "berlin" || locs[0].(map[string]any)["pools"] != 3.0 {
		t.Fatalf("locations %v", locs)
	}
	if last := r.body["last_import"].(map[string]any); last["id"] != im.str("id") {
		t.Fatalf("last import %v, want %s", last, im.str("id"))
	}
	if n := r.body["events_last_hour"].(float64); n < 2 {
		t.Fatalf("events in the last hour %v, want the 2 changes at least", n)
	}
	ts.do("GET", "/v1/vendors/bistro/summary", acmeKey, nil).want(t, 403, "forbidden")
	if b := ts.do("GET", "/v1/vendors/bistro/summary", bistroKey, nil).want(t, 200, ""); b.body["totals"].(map[string]any)["pools"] != 1.0 {
		t.Fatalf("bistro %s", b.raw)
	}
}
