package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testredis"
)

// TestBackInStockNotices: a storefront sets its webhook and registers customers' interest in a
// SKU at a location or in a region; when the pool comes back, its webhook receives the
// customers in pages, signed, each interest once — a second restock tells nobody again, unless
// they asked again. Bad requests are refused naming the field.
func TestBackInStockNotices(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	policy, err := alerts.NewURLPolicy([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	store := alerts.NewStore(pool, policy, alerts.WithNoticePage(2))
	ts := startServer(t, testredis.Standalone(t), nil, WithWebhooks(store))
	cfg := alerts.Config{Group: "alerts", Interval: 10 * time.Millisecond, Batch: 1000, Hysteresis: 0.1, Allow: []string{"127.0.0.1"},
		Timeout: 2 * time.Second, MaxAttempts: 3, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	det := alerts.NewDetector(ts.eng, store, cfg, zerolog.Nop(), ts.clock.Now)
	del := alerts.NewDeliverer(store, cfg, zerolog.Nop())

	var mu sync.Mutex
	var got []alerts.NoticePayload
	var secret string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alerts.Verify(secret, r.Header.Get(alerts.HeaderTimestamp), body, r.Header.Get(alerts.HeaderSignature)) {
			t.Errorf("a notice not signed with the storefront's secret: %s", body)
		}
		var n alerts.NoticePayload
		json.Unmarshal(body, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)

	notify := func(body map[string]any, status int, code string) response {
		t.Helper()
		return ts.do("POST", "/v1/notify", clientKey, body).want(t, status, code)
	}
	notify(map[string]any{"customer_id": "c1", "sku": "cap", "location": "berlin"}, 409, "no_webhook")
	r := ts.do("PUT", "/v1/notify/webhook", clientKey, map[string]any{"callback_url": hook.URL + "/notices"}).want(t, 200, "")
	if secret = r.str("secret"); len(secret) != 64 {
		t.Fatalf("webhook: %s", r.raw)
	}
	ts.do("PUT", "/v1/notify/webhook", clientKey, map[string]any{"callback_url": "ftp://example.com/"}).want(t, 422, "invalid")
	ts.do("PUT", "/v1/regions/city", adminKey, map[string]any{"locations": []map[string]any{{"location": "berlin"}}}).want(t, 200, "")
	first := notify(map[string]any{"customer_id": "c1", "sku": "cap", "location": "berlin"}, 201, "")
	if again := notify(map[string]any{"customer_id": "c1", "sku": "cap", "location": "berlin"}, 200, ""); again.num("id") != first.num("id") {
		t.Fatalf("the same interest twice: %s, then %s", first.raw, again.raw)
	}
	notify(map[string]any{"customer_id": "c2", "sku": "cap", "location": "berlin"}, 201, "")
	notify(map[string]any{"customer_id": "c3", "sku": "cap", "region": "city"}, 201, "")
	notify(map[string]any{"customer_id": "c4", "sku": "sneaker", "location": "berlin"}, 201, "")
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"customer_id": "c5", "sku": "cap", "region": "nowhere"}, "region"},
		{map[string]any{"customer_id": "c5", "sku": "cap", "region": "city", "location": "berlin"}, "location"},
		{map[string]any{"customer_id": "c5", "sku": "cap"}, "location"},
		{map[string]any{"sku": "cap", "location": "berlin"}, "customer_id"},
	} {
		if r := notify(c.body, 422, "invalid"); !strings.HasPrefix(r.body["error"].(map[string]any)["message"].(string), c.field+":") {
			t.Errorf("%v: %s, want the field %s named", c.body, r.raw, c.field)
		}
	}
	notify(map[string]any{"customer_id": "c5", "sku": "nope", "location": "berlin"}, 404, "unknown_pool")
	if r := ts.do("GET", "/v1/notify?customer_id=c1", clientKey, nil).want(t, 200, ""); len(r.body["interests"].([]any)) != 1 {
		t.Fatalf("c1's interests: %s", r.raw)
	}

	ctx := context.Background()
	set := func(qty int64, tx string) {
		t.Helper()
		if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: "berlin", SKU: "cap", Kind: engine.Set, Qty: qty, TransactionID: tx, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	cycle := func(n int) []string { // sold out, then back; the notices delivered, as "page/pages:customers"
		t.Helper()
		mu.Lock()
		got = nil
		mu.Unlock()
		set(0, fmt.Sprint("out-", n))
		if _, err := det.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		set(20, fmt.Sprint("back-", n))
		if _, err := det.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := del.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range got {
			if p.Type != alerts.Notice || p.SKU != "cap" || p.Location != "berlin" || p.Region != "city" || p.Available != 20 {
				t.Errorf("notice %+v", p)
			}
			out = append(out, fmt.Sprintf("%d/%d:%s", p.Page, p.Pages, strings.Join(p.Customers, ",")))
		}
		sort.Strings(out)
		return out
	}
	if _, err := det.RunOnce(ctx); err != nil { // the detector's group starts here
		t.Fatal(err)
	}
	if n := cycle(1); fmt.Sprint(n) != "[1/2:c1,c2 2/2:c3]" {
		t.Fatalf("first restock: notices %v", n)
	}
	if n := cycle(2); len(n) != 0 {
		t.Fatalf("second restock told again: %v", n)
	}
	notify(map[string]any{"customer_id": "c2", "sku": "cap", "location": "berlin"}, 201, "")
	if n := cycle(3); fmt.Sprint(n) != "[1/1:c2]" {
		t.Fatalf("third restock, c2 asked again: notices %v", n)
	}
	// c4 waits for sneakers still; cancelled, it is gone.
	r = ts.do("GET", "/v1/notify", clientKey, nil).want(t, 200, "")
	ins := r.body["interests"].([]any)
	if len(ins) != 1 || ins[0].(map[string]any)["customer_id"] != "c4" {
		t.Fatalf("waiting: %s", r.raw)
	}
	id := fmt.Sprint(int64(ins[0].(map[string]any)["id"].(float64)))
	ts.do("DELETE", "/v1/notify/"+id, clientKey, nil).want(t, 200, "")
	ts.do("DELETE", "/v1/notify/"+id, clientKey, nil).want(t, 404, "interest_not_found")
}
