package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

func TestCheckoutFlow(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	body := map[string]any{"location": "berlin", "sku": "cap", "qty": 2, "customer_id": "c1"}
	h := ts.do("POST", "/v1/holds", clientKey, body, "Idempotency-Key", "k-1").want(t, 201, "")
	id := h.str("hold_id")
	if h.str("status") != "ACTIVE" || h.num("expires_at_ms") != ts.clock.Now().Add(time.Minute).UnixMilli() {
		t.Fatalf("hold %s", h.raw)
	}
	// A retry answers the same; another body under the key is refused.
	again := ts.do("POST", "/v1/holds", clientKey, body, "Idempotency-Key", "k-1").want(t, 201, "")
	if again.str("hold_id") != id || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %s %v", again.raw, again.header)
	}
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 3}, "Idempotency-Key", "k-1").
		want(t, 409, "idempotency_mismatch")

	got := ts.do("GET", "/v1/holds/"+id, clientKey, nil).want(t, 200, "")
	if got.str("status") != "ACTIVE" || got.str("customer_id") != "c1" {
		t.Fatalf("get: %s", got.raw)
	}
	ext := ts.do("POST", "/v1/holds/"+id+"/extend", clientKey, map[string]any{"ttl_ms": 600000}).want(t, 200, "")
	if ext.num("expires_at_ms") != ts.clock.Now().Add(10*time.Minute).UnixMilli() {
		t.Fatalf("extend: %s", ext.raw)
	}
	av := ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 200, "")
	if av.num("available") != 8 || av.num("held") != 2 || av.str("status") != "IN_STOCK" {
		t.Fatalf("availability: %s", av.raw)
	}
	ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, nil).want(t, 200, "")
	ts.do("POST", "/v1/holds/"+id+"/commit", clientKey, nil).want(t, 200, "") // a retried commit
	ts.do("POST", "/v1/holds/"+id+"/release", clientKey, nil).want(t, 409, "hold_committed")
	ts.do("POST", "/v1/holds/"+id+"/extend", clientKey, map[string]any{"ttl_ms": 1000}).want(t, 409, "hold_committed")

	// Release, then the released hold is gone.
	r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 4}, "Idempotency-Key", "k-2").want(t, 201, "")
	ts.do("POST", "/v1/holds/"+r.str("hold_id")+"/release", clientKey, "").want(t, 200, "")
	ts.do("POST", "/v1/holds/"+r.str("hold_id")+"/release", clientKey, "").want(t, 200, "")
	ts.do("POST", "/v1/holds/"+r.str("hold_id")+"/commit", clientKey, nil).want(t, 410, "hold_gone")

	// Expiry: commit after the hold's time is 410.
	x := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 1, "ttl_ms": 2000}, "Idempotency-Key", "k-3").want(t, 201, "")
	ts.clock.Advance(2 * time.Second)
	ts.do("POST", "/v1/holds/"+x.str("hold_id")+"/commit", clientKey, nil).want(t, 410, "hold_gone")
	if g := ts.do("GET", "/v1/holds/"+x.str("hold_id"), clientKey, nil).want(t, 200, ""); g.str("status") != "EXPIRED" {
		t.Fatalf("expired hold reads %s", g.raw)
	}

	// A cart is all or nothing.
	cart := map[string]any{"items": []map[string]any{{"location": "berlin", "sku": "sneaker", "qty": 3}, {"location": "berlin", "sku": "cap", "qty": 1}}}
	c := ts.do("POST", "/v1/holds", clientKey, cart, "Idempotency-Key", "cart-1").want(t, 201, "")
	if parts := c.body["parts"].([]any); len(parts) != 2 {
		t.Fatalf("cart parts %s", c.raw)
	}
	tooBig := map[string]any{"items": []map[string]any{{"location": "berlin", "sku": "sneaker", "qty": 3}, {"location": "berlin", "sku": "cap", "qty": 50}}}
	ts.do("POST", "/v1/holds", clientKey, tooBig, "Idempotency-Key", "cart-2").want(t, 409, "insufficient_stock")
	if a := ts.do("GET", "/v1/availability/sneaker?location=berlin", clientKey, nil).want(t, 200, ""); a.num("available") != 17 {
		t.Fatalf("failed cart kept units: %s", a.raw)
	}

	// Stock status: LIMITED below the threshold, OUT_OF_STOCK at zero.
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 5}, "Idempotency-Key", "k-4").want(t, 201, "")
	if a := ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 200, ""); a.str("status") != "LIMITED" {
		t.Fatalf("low stock: %s", a.raw)
	}
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 2}, "Idempotency-Key", "k-5").want(t, 201, "")
	if a := ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 200, ""); a.str("status") != "OUT_OF_STOCK" {
		t.Fatalf("sold out: %s", a.raw)
	}

	// Per-customer limit.
	for i := range 2 {
		ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "limited", "customer_id": "c9"}, "Idempotency-Key", fmt.Sprint("lim-", i)).want(t, 201, "")
	}
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "limited", "customer_id": "c9"}, "Idempotency-Key", "lim-3").want(t, 409, "customer_limit")
}

// TestCheckoutErrors: every refusal has its status, a JSON body naming the problem, and
// changes nothing.
func TestCheckoutErrors(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	before := ts.seqs()
	idem := []string{"Idempotency-Key", "e-1"}
	cases := []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		code               string
	}{
		{"no idempotency key", "POST", "/v1/holds", map[string]any{"location": "berlin", "sku": "cap"}, nil, 400, "missing_idempotency_key"},
		{"empty body", "POST", "/v1/holds", "", idem, 400, "bad_request"},
		{"not JSON", "POST", "/v1/holds", "qty=1", idem, 400, "bad_request"},
		{"truncated JSON", "POST", "/v1/holds", `{"location":"berlin"`, idem, 400, "bad_request"},
		{"unknown field", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qtty":1}`, idem, 400, "bad_request"},
		{"wrong type", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qty":"two"}`, idem, 400, "bad_request"},
		{"trailing data", "POST", "/v1/holds", `{"location":"berlin","sku":"cap"} {}`, idem, 400, "bad_request"},
		{"both forms", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","items":[]}`, idem, 400, "bad_request"},
		{"nothing to hold", "POST", "/v1/holds", `{"customer_id":"c"}`, idem, 400, "bad_request"},
		{"qty zero", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qty":0}`, idem, 422, "invalid"},
		{"qty negative", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qty":-1}`, idem, 422, "invalid"},
		{"qty above max", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qty":101}`, idem, 422, "invalid"},
		{"ttl too long", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","ttl_ms":99999999}`, idem, 422, "invalid"},
		{"ttl zero", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","ttl_ms":0}`, idem, 422, "invalid"},
		{"bad sku", "POST", "/v1/holds", `{"location":"berlin","sku":"c a p"}`, idem, 422, "invalid"},
		{"bad idempotency key", "POST", "/v1/holds", `{"location":"berlin","sku":"cap"}`, []string{"Idempotency-Key", "a b"}, 422, "invalid"},
		{"unknown pool", "POST", "/v1/holds", `{"location":"berlin","sku":"nope"}`, idem, 404, "unknown_pool"},
		{"more than stock", "POST", "/v1/holds", `{"location":"berlin","sku":"cap","qty":11}`, idem, 409, "insufficient_stock"},
		{"malformed hold id", "GET", "/v1/holds/xyz", nil, nil, 400, "malformed_hold_id"},
		{"unknown hold", "GET", "/v1/holds/0123456789abcdef0123.0_1.0.0", nil, nil, 404, "hold_not_found"},
		{"commit unknown hold", "POST", "/v1/holds/0123456789abcdef0123.0_1.0.0/commit", nil, nil, 404, "hold_not_found"},
		{"commit body not JSON", "POST", "/v1/holds/0123456789abcdef0123.0_1.0.0/commit", "x", nil, 400, "bad_request"},
		{"extend without ttl", "POST", "/v1/holds/0123456789abcdef0123.0_1.0.0/extend", `{}`, nil, 400, "bad_request"},
		{"extend negative", "POST", "/v1/holds/0123456789abcdef0123.0_1.0.0/extend", `{"ttl_ms":-5}`, nil, 422, "invalid"},
		{"availability without location", "GET", "/v1/availability/cap", nil, nil, 400, "bad_request"},
		{"availability of unknown pool", "GET", "/v1/availability/cap?location=paris", nil, nil, 404, "unknown_pool"},
		{"unknown route", "GET", "/v1/nothing", nil, nil, 404, "route_not_found"},
		{"wrong method", "DELETE", "/v1/holds", nil, nil, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(tc.method, tc.path, clientKey, tc.body, tc.headers...).want(t, tc.status, tc.code)
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("Allow header %q", r.header.Get("Allow"))
			}
		})
	}
	if after := ts.seqs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("rejected requests changed state: %v -> %v", before, after)
	}
}

func TestAuthAndScoping(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	hold := map[string]any{"location": "berlin", "sku": "cap"}
	ts.do("POST", "/v1/holds", "", hold, "Idempotency-Key", "a").want(t, 401, "missing_api_key")
	ts.do("POST", "/v1/holds", "not-a-key", hold, "Idempotency-Key", "a").want(t, 401, "invalid_api_key")
	ts.do("POST", "/v1/holds", acmeKey, hold, "Idempotency-Key", "a").want(t, 403, "forbidden")
	ts.do("GET", "/v1/vendors/acme/inventory", clientKey, nil).want(t, 403, "forbidden")
	ts.do("GET", "/v1/vendors/bistro/inventory", acmeKey, nil).want(t, 403, "forbidden")
	ts.do("POST", "/v1/vendors/bistro/inventory/meal/update", acmeKey, map[string]any{"location": "lyon", "change_type": "RESTOCK", "quantity_change": 1, "transaction_id": "t"}).want(t, 403, "forbidden")
	ts.do("GET", "/v1/inventory/events?vendor_id=bistro", acmeKey, nil).want(t, 403, "forbidden")
	ts.do("GET", "/v1/inventory/events", clientKey, nil).want(t, 403, "forbidden")
	ts.do("PUT", "/v1/pools/berlin/new", acmeKey, map[string]any{"vendor": "acme"}).want(t, 403, "forbidden")
	// A bearer token works as well as X-API-Key.
	ts.do("GET", "/v1/vendors/acme/inventory", "", nil, "Authorization", "Bearer "+acmeKey).want(t, 200, "")
	// Admin may do everything.
	ts.do("GET", "/v1/vendors/bistro/inventory", adminKey, nil).want(t, 200, "")
	ts.do("POST", "/v1/holds", adminKey, hold, "Idempotency-Key", "adm").want(t, 201, "")
	ts.do("PUT", "/v1/pools/berlin/new", adminKey, map[string]any{"vendor": "acme", "shards": 2}).want(t, 200, "")
	ts.do("PUT", "/v1/pools/berlin/new", adminKey, map[string]any{"vendor": "acme", "shards": 3}).want(t, 422, "invalid")
	// Rate limit: 2 per second, then 429 with Retry-After.
	ts.do("GET", "/v1/availability/cap?location=berlin", slowKey, nil).want(t, 200, "")
	ts.do("GET", "/v1/availability/cap?location=berlin", slowKey, nil).want(t, 200, "")
	r := ts.do("GET", "/v1/availability/cap?location=berlin", slowKey, nil).want(t, 429, "rate_limited")
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Another key is not limited by it.
	ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 200, "")
}

func TestVendorUpdate(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	up := func(sku string, body any, status int, code string) response {
		return ts.do("POST", "/v1/vendors/acme/inventory/"+sku+"/update", acmeKey, body).want(t, status, code)
	}
	r := up("cap", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 5, "transaction_id": "po-1"}, 200, "")
	if r.num("previous_stock") != 10 || r.num("new_stock") != 15 {
		t.Fatalf("restock: %s", r.raw)
	}
	r = up("cap", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 5, "transaction_id": "po-1"}, 200, "")
	if r.body["replayed"] != true || r.num("new_stock") != 15 {
		t.Fatalf("retried restock: %s", r.raw)
	}
	up("cap", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 6, "transaction_id": "po-1"}, 409, "idempotency_mismatch")
	r = up("cap", map[string]any{"location": "berlin", "change_type": "PURCHASE", "quantity_change": -1, "transaction_id": "sale-1"}, 200, "")
	if r.num("new_stock") != 14 {
		t.Fatalf("purchase: %s", r.raw)
	}
	up("sneaker", map[string]any{"location": "berlin", "change_type": "SPOILAGE", "quantity_change": -4, "transaction_id": "sp-1"}, 200, "")
	r = ts.do("POST", "/v1/vendors/acme/inventory/sneaker/update", acmeKey, map[string]any{"location": "berlin", "stock_quantity": 7}, "Idempotency-Key", "set-1").want(t, 200, "")
	if r.num("previous_stock") != 16 || r.num("new_stock") != 7 || r.str("change_type") != "SET" {
		t.Fatalf("set: %s", r.raw)
	}
	before := ts.seqs()
	up("cap", map[string]any{"location": "berlin", "change_type": "SPOILAGE", "quantity_change": 3, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": -3, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "change_type": "STEAL", "quantity_change": -3, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "change_type": "ADJUSTMENT", "quantity_change": 0, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "quantity_change": 2, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "stock_quantity": 3, "change_type": "RESTOCK", "quantity_change": 2, "transaction_id": "x"}, 422, "invalid")
	up("cap", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 2}, 400, "missing_transaction_id")
	up("cap", map[string]any{"location": "berlin", "sku": "cap", "change_type": "RESTOCK", "quantity_change": 2, "transaction_id": "x"}, 400, "bad_request")
	up("cap", `{"location":"berlin","change_type":"RESTOCK","quantity_change":1.5,"transaction_id":"x"}`, 400, "bad_request")
	up("cap", map[string]any{"location": "berlin", "change_type": "SPOILAGE", "quantity_change": -500, "transaction_id": "x"}, 409, "insufficient_stock")
	up("meal", map[string]any{"location": "lyon", "change_type": "RESTOCK", "quantity_change": 1, "transaction_id": "x"}, 404, "unknown_pool")
	up("nope", map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 1, "transaction_id": "x"}, 404, "unknown_pool")
	if after := ts.seqs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("refused updates changed state")
	}
}

func TestVendorInventory(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	r := ts.do("GET", "/v1/vendors/acme/inventory", acmeKey, nil).want(t, 200, "")
	items := r.body["items"].([]any)
	if len(items) != 3 || r.str("next_after") != "" {
		t.Fatalf("inventory: %s", r.raw)
	}
	first := items[0].(map[string]any)
	if first["sku"] != "cap" || first["stock_quantity"].(float64) != 10 || first["low_stock_threshold"].(float64) != 5 {
		t.Fatalf("first item %v", first)
	}
	var seen []string
	after := ""
	for range 5 {
		p := ts.do("GET", "/v1/vendors/acme/inventory?limit=1&after="+after, acmeKey, nil).want(t, 200, "")
		for _, it := range p.body["items"].([]any) {
			seen = append(seen, it.(map[string]any)["sku"].(string))
		}
		if after = p.str("next_after"); after == "" {
			break
		}
	}
	if strings.Join(seen, ",") != "cap,limited,sneaker" {
		t.Fatalf("paged inventory %v", seen)
	}
	ts.do("GET", "/v1/vendors/acme/inventory?limit=0", acmeKey, nil).want(t, 422, "invalid")
	ts.do("GET", "/v1/vendors/acme/inventory?limit=x", acmeKey, nil).want(t, 400, "bad_request")
	if r := ts.do("GET", "/v1/vendors/nobody/inventory", adminKey, nil).want(t, 200, ""); len(r.body["items"].([]any)) != 0 {
		t.Fatalf("unknown vendor: %s", r.raw)
	}
}

func TestBulkUpdate(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	bulk := func(ct, body string, headers ...string) response {
		return ts.do("POST", "/v1/vendors/acme/inventory/bulk_update", acmeKey, body, append([]string{"Content-Type", ct}, headers...)...)
	}
	js := `{"items":[
		{"location":"berlin","item_id":"cap","stock_quantity":100,"transaction_id":"b1"},
		{"location":"berlin","sku":"sneaker","change_type":"RESTOCK","quantity_change":4,"transaction_id":"b2"},
		{"location":"berlin","sku":"nope","stock_quantity":1,"transaction_id":"b3"},
		{"location":"lyon","sku":"meal","stock_quantity":1,"transaction_id":"b4"},
		{"location":"berlin","sku":"cap","change_type":"SPOILAGE","quantity_change":2,"transaction_id":"b5"},
		{"location":"berlin","sku":"cap","stock_quantity":-1,"transaction_id":"b6"},
		{"location":"berlin","sku":"cap","stock_quantity":5}
	]}`
	r := bulk("application/json", js).want(t, 200, "")
	if r.num("updated_items") != 2 || r.num("rejected_items") != 5 {
		t.Fatalf("json bulk: %s", r.raw)
	}
	codes := map[float64]string{}
	for _, x := range r.body["results"].([]any) {
		row := x.(map[string]any)
		if e, ok := row["error"].(map[string]any); ok {
			codes[row["row"].(float64)] = e["code"].(string)
		} else {
			codes[row["row"].(float64)] = row["status"].(string)
		}
	}
	want := map[float64]string{1: "updated", 2: "updated", 3: "unknown_pool", 4: "unknown_pool", 5: "invalid", 6: "invalid", 7: "missing_transaction_id"}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("row results %v, want %v", codes, want)
	}
	// The same file again: everything replays, nothing changes.
	before := ts.seqs()
	if r := bulk("application/json", js).want(t, 200, ""); r.num("updated_items") != 2 {
		t.Fatalf("replayed bulk: %s", r.raw)
	}
	if fmt.Sprint(ts.seqs()) != fmt.Sprint(before) {
		t.Fatal("a replayed bulk update changed state")
	}

	csvBody := "location,sku,stock_quantity,change_type,quantity_change\n" +
		"berlin,cap,50,,\n" +
		"berlin,sneaker,,PURCHASE,-1\n" +
		"berlin,cap,abc,,\n" +
		"berlin,cap,,PURCHASE,1\n" +
		"\"berlin,cap,1,,\n"
	r = bulk("text/csv; charset=utf-8", csvBody, "Idempotency-Key", "upload-7").want(t, 200, "")
	if r.num("updated_items") != 2 || r.num("rejected_items") != 3 {
		t.Fatalf("csv bulk: %s", r.raw)
	}
	if a, _ := ts.eng.Availability(context.Background(), "berlin", "cap"); a.Available != 50 {
		t.Fatalf("cap after bulk: %d", a.Available)
	}

	// Thousands of rows in one request.
	var sb strings.Builder
	sb.WriteString("location,sku,change_type,quantity_change,transaction_id\n")
	for i := range 500 {
		fmt.Fprintf(&sb, "berlin,cap,RESTOCK,1,many-%d\n", i)
	}
	start := time.Now()
	r = bulk("text/csv", sb.String()).want(t, 200, "")
	if r.num("updated_items") != 500 {
		t.Fatalf("500-row bulk: %s", r.raw[:200])
	}
	t.Logf("500 rows in %s", time.Since(start))
	if a, _ := ts.eng.Availability(context.Background(), "berlin", "cap"); a.Available != 550 {
		t.Fatalf("cap after 500 restocks: %d", a.Available)
	}
	sb.WriteString("berlin,cap,RESTOCK,1,one-too-many\n")
	bulk("text/csv", sb.String()).want(t, 413, "too_many_rows")
	bulk("application/xml", "<x/>").want(t, 415, "unsupported_media_type")
	bulk("text/csv", "location,colour\nberlin,red\n").want(t, 400, "bad_request")
	bulk("text/csv", "sku,stock_quantity\ncap,1\n").want(t, 400, "bad_request")
	bulk("application/json", `{"items":[{"location":"berlin","bogus":1}]}`).want(t, 400, "bad_request")
	ts.do("POST", "/v1/vendors/bistro/inventory/bulk_update", acmeKey, `{"items":[]}`).want(t, 403, "forbidden")
}

func TestEventsAPI(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "lyon", "sku": "meal", "qty": 2}, "Idempotency-Key", "m1").want(t, 201, "")
	// Bistro sees its seed event and the reservation, paged one at a time.
	var types []string
	after := ""
	for range 10 {
		r := ts.do("GET", "/v1/inventory/events?limit=1&after="+after, bistroKey, nil).want(t, 200, "")
		for _, x := range r.body["events"].([]any) {
			ev := x.(map[string]any)
			if ev["location"] != "lyon" || ev["event_id"] == "" || ev["hash"] == "" {
				t.Fatalf("event %v", ev)
			}
			types = append(types, ev["type"].(string))
		}
		if after = r.str("next_after"); after == "" {
			break
		}
	}
	if strings.Join(types, ",") != "ADJUSTED,RESERVED" {
		t.Fatalf("bistro events %v", types)
	}
	all := ts.do("GET", "/v1/inventory/events?limit=1000", adminKey, nil).want(t, 200, "")
	if n := len(all.body["events"].([]any)); n < 9 {
		t.Fatalf("admin sees %d events", n)
	}
	ts.do("GET", "/v1/inventory/events?after=x", acmeKey, nil).want(t, 400, "bad_request")
	ts.do("GET", "/v1/inventory/events?limit=5000", acmeKey, nil).want(t, 422, "invalid")

	// One hold's history: its reservation and its release, and nothing of another hold.
	h := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "lyon", "sku": "meal", "qty": 1}, "Idempotency-Key", "m2").want(t, 201, "")
	id := h.str("hold_id")
	ts.do("POST", "/v1/holds/"+id+"/release", clientKey, nil).want(t, 200, "")
	r := ts.do("GET", "/v1/inventory/events?hold_id="+id, bistroKey, nil).want(t, 200, "")
	var got []string
	for _, x := range r.body["events"].([]any) {
		got = append(got, x.(map[string]any)["type"].(string))
	}
	if strings.Join(got, ",") != "RESERVED,RELEASED" || r.str("next_after") != "" {
		t.Fatalf("hold %s events %v", id, got)
	}
	if n := len(ts.do("GET", "/v1/inventory/events?hold_id="+id, acmeKey, nil).want(t, 200, "").body["events"].([]any)); n != 0 {
		t.Fatalf("another vendor sees %d events of the hold", n)
	}
	ts.do("GET", "/v1/inventory/events?hold_id=nope", bistroKey, nil).want(t, 400, "malformed_hold_id")
}

func TestOpsEndpoints(t *testing.T) {
	failing := WithReadiness("postgres", func(context.Context) error { return errors.New("connection refused") })
	ts := startServer(t, testredis.Standalone(t), func(c *Config) { c.MaxBody = 256 }, failing)
	ts.do("GET", "/healthz", "", nil).want(t, 200, "")
	r := ts.do("GET", "/readyz", adminKey, nil).want(t, 503, "")
	checks := r.body["checks"].(map[string]any)
	if checks["redis"] != "ok" || !strings.Contains(checks["postgres"].(string), "connection refused") {
		t.Fatalf("readyz %s", r.raw)
	}
	ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 200, "")
	m := ts.do("GET", "/metrics", "", nil).want(t, 200, "")
	for _, name := range []string{"flashhold_http_requests_total", "flashhold_http_request_duration_seconds_bucket",
		`flashhold_http_request_duration_seconds_count{method="GET",route="/v1/availability/{sku}",status="200"} 1`, "flashhold_holds_total", "flashhold_soldout_rejections_total", "flashhold_soldout_lookups_total", "flashhold_engine_batch_size", "flashhold_engine_round_trips_total", "flashhold_engine_coalesced_ops_total"} {
		if !strings.Contains(string(m.raw), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	doc := ts.do("GET", "/openapi.json", "", nil).want(t, 200, "")
	if doc.str("openapi") != "3.0.3" {
		t.Fatalf("openapi: %.100s", doc.raw)
	}
	// Body over the limit: 413 as JSON, nothing read.
	big := `{"location":"berlin","sku":"cap","customer_id":"` + strings.Repeat("x", 400) + `"}`
	ts.do("POST", "/v1/holds", clientKey, big, "Idempotency-Key", "big").want(t, 413, "payload_too_large")
}

// TestRedisUnavailable: when Redis cannot be reached, requests get 503 with a JSON body.
func TestRedisUnavailable(t *testing.T) {
	rdb := testredis.Standalone(t)
	ts := startServer(t, rdb, nil)
	other := testredis.Standalone(t) // the prefix's own cleanup needs the client closed below
	t.Cleanup(func() { testredis.DeletePrefix(context.Background(), other, ts.eng.Config().Prefix) })
	rdb.Close()
	ts.do("GET", "/v1/availability/cap?location=berlin", clientKey, nil).want(t, 503, "redis_unavailable")
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap"}, "Idempotency-Key", "r1").want(t, 503, "redis_unavailable")
	ts.do("GET", "/readyz", "", nil).want(t, 503, "")
}

// TestOpenAPICoversRoutes: every route the server registers is in the OpenAPI document, and
// the document names no route the server lacks.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := New(apiConfig(), nil, nil); err == nil {
		t.Fatal("a server without an engine should not be built")
	}
	s := &Server{}
	s.routes()
	registered := map[string]bool{}
	for _, r := range s.router.routes {
		key := strings.ToLower(r.Method) + " " + r.Pattern
		registered[key] = true
		if _, ok := doc.Paths[r.Pattern][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s %s is not in openapi.json", r.Method, r.Pattern)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !registered[method+" "+path] {
				t.Errorf("openapi.json has %s %s, which the server does not serve", method, path)
			}
		}
	}
}

// TestGracefulShutdown: requests in flight when shutdown starts complete; new connections are
// refused afterwards.
func TestGracefulShutdown(t *testing.T) {
	// Each request takes seconds (1,500 rows one at a time, more under the race detector on a
	// loaded machine): a deadline far past that, so the test sees shutdown, not RequestTimeout.
	ts := startServer(t, testredis.Standalone(t), func(c *Config) { c.BulkMaxRows = 5000; c.BulkWorkers = 1; c.RequestTimeout = time.Minute })
	var sb strings.Builder
	sb.WriteString("location,sku,change_type,quantity_change,transaction_id\n")
	for i := range 1500 {
		fmt.Fprintf(&sb, "berlin,cap,RESTOCK,1,gs-%d\n", i)
	}
	type result struct {
		status  int
		updated int64
		err     error
	}
	done := make(chan result, 4)
	for i := range 4 {
		go func() {
			body := strings.ReplaceAll(sb.String(), "gs-", fmt.Sprintf("gs%d-", i))
			req, _ := http.NewRequest("POST", ts.url+"/v1/vendors/acme/inventory/bulk_update", strings.NewReader(body))
			req.Header.Set("X-API-Key", acmeKey)
			req.Header.Set("Content-Type", "text/csv")
			resp, err := ts.http.Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			var out struct {
				Updated int64 `json:"updated_items"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			done <- result{status: resp.StatusCode, updated: out.Updated, err: err}
		}()
	}
	testwait.Until(t, 5*time.Second, "the requests reach the server", func() bool { return ts.srv.srv.GetOpenConnectionsCount() >= 4 })
	time.Sleep(20 * time.Millisecond) // the bodies are read; each takes far longer to apply
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		r := <-done
		if r.err != nil || r.status != 200 || r.updated != 1500 {
			t.Fatalf("a request in flight at shutdown: %+v", r)
		}
	}
	if _, err := http.Get(ts.url + "/healthz"); err == nil {
		t.Fatal("the server still accepts connections after shutdown")
	}
	if a, _ := ts.eng.Availability(context.Background(), "berlin", "cap"); a.Available != 10+4*1500 {
		t.Fatalf("cap has %d units after 4x1500 restocks", a.Available)
	}
}

// TestStreamedBodies: the server streams request bodies (for imports), yet every other route
// gets its body whole and at most MaxBody bytes, sent with a length or in chunks; a body it
// does not read closes the connection, and the next request is served.
func TestStreamedBodies(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testredis.Standalone(t), nil)
	chunked := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // no length: sent in chunks
	hold := `{"location":"berlin","sku":"cap","qty":1}`
	big := `{"location":"berlin","sku":"cap","customer_id":"` + strings.Repeat("x", 2<<20) + `"}`
	send := func(path, key string, body io.Reader) response {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.url+path, body)
		req.Header.Set("X-API-Key", key)
		req.Header.Set("Idempotency-Key", fmt.Sprint("sb-", time.Now().UnixNano()))
		resp, err := ts.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
		json.Unmarshal(raw, &out.body)
		return out
	}
	send("/v1/holds", clientKey, chunked(hold)).want(t, 201, "")
	send("/v1/holds", clientKey, chunked(big)).want(t, 413, "payload_too_large")
	send("/v1/holds", clientKey, strings.NewReader(big)).want(t, 413, "payload_too_large")
	send("/v1/holds", "", chunked(big)).want(t, 401, "missing_api_key")
	send("/v1/vendors/acme/inventory/bulk_update", acmeKey, chunked(big)).want(t, 413, "payload_too_large")
	send("/v1/holds", clientKey, strings.NewReader(hold)).want(t, 201, "")
	if a, _ := ts.eng.Availability(context.Background(), "berlin", "cap"); a.Held != 2 {
		t.Fatalf("held %d, want the 2 holds answered 201", a.Held)
	}
}

// TestUnreadBodyClosesConnection: a request answered without its body being read (no key, no
// route) closes the connection, so the rest of its body is never taken for the next request.
func TestUnreadBodyClosesConnection(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testredis.Standalone(t), nil)
	body := strings.Repeat("x", 20_000) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, path := range []string{"/v1/holds", "/v1/no-such-route"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, 20_000, body)
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, _ := io.ReadAll(conn)
		conn.Close()
		if n := strings.Count(string(got), "HTTP/1.1 "); n != 1 || !strings.Contains(string(got), "Connection: close") {
			t.Fatalf("%s: %d answers on one connection, want 1 and the connection closed:\n%s", path, n, got)
		}
	}
}

// TestTruncatedBodyRefused: a body cut short (the client stops sending before Content-Length
// bytes) is refused whole, never taken as a shorter request: a bulk update and an import whose
// CSV breaks off between two rows change and keep nothing.
func TestTruncatedBodyRefused(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	cfg := importConfig()
	cfg.MaxRows = 1000
	ts := startServer(t, testredis.Standalone(t), nil, WithImports(imports.NewStore(pool), cfg))
	var csv strings.Builder
	csv.WriteString("location,sku,change_type,quantity_change,transaction_id\n")
	for i := range 400 { // past the 8 KiB fasthttp reads ahead: the rest is streamed
		fmt.Fprintf(&csv, "berlin,cap,RESTOCK,1,tb-%d\n", i)
	}
	sent := csv.String()
	for _, path := range []string{"/v1/vendors/acme/inventory/bulk_update", "/v1/vendors/acme/inventory/imports"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s",
			path, acmeKey, len(sent)+500, sent) // 500 bytes promised and never sent
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(conn)
		conn.Close()
		if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
			t.Errorf("%s: a body cut short answered %.200s", path, got)
		}
	}
	if a, _ := ts.eng.Availability(context.Background(), "berlin", "cap"); a.Available != 10 {
		t.Fatalf("cap %d after bodies cut short, want 10", a.Available)
	}
	if list := ts.do("GET", "/v1/vendors/acme/inventory/imports", acmeKey, nil).want(t, 200, "").body["imports"].([]any); len(list) != 0 {
		t.Fatalf("an import was kept from a body cut short: %v", list)
	}
}

// TestRefusedUpdateStands: a vendor told its change was refused (not enough stock, or too
// many units) gets the same refusal when it sends the change again with the same transaction
// id, however the pool changed in between: a refused change never happens later, on a
// single-shard pool and on a sharded one.
func TestRefusedUpdateStands(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testredis.Standalone(t), nil)
	up := func(sku string, body map[string]any, status int, code string) response {
		t.Helper()
		return ts.do("POST", "/v1/vendors/acme/inventory/"+sku+"/update", acmeKey, body).want(t, status, code)
	}
	for _, sku := range []string{"cap", "sneaker"} { // 10 units on 1 shard, 20 on 4
		spoil := map[string]any{"location": "berlin", "change_type": "SPOILAGE", "quantity_change": -30, "transaction_id": "spoil-" + sku}
		first := up(sku, spoil, 409, "insufficient_stock")
		up(sku, map[string]any{"location": "berlin", "change_type": "RESTOCK", "quantity_change": 100, "transaction_id": "more-" + sku}, 200, "")
		before := ts.seqs()
		again := up(sku, spoil, 409, "insufficient_stock")
		if fmt.Sprint(again.body["error"]) != fmt.Sprint(first.body["error"]) {
			t.Errorf("%s: refused %s, then %s", sku, first.raw, again.raw)
		}
		if fmt.Sprint(ts.seqs()) != fmt.Sprint(before) {
			t.Errorf("%s: the refused change's retry changed state", sku)
		}
	}
	for sku, want := range map[string]int64{"cap": 110, "sneaker": 120} {
		if a, err := ts.eng.Availability(context.Background(), "berlin", sku); err != nil || a.Available != want {
			t.Errorf("%s: %+v %v, want %d available", sku, a, err, want)
		}
	}
}
