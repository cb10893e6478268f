package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/internal/testredis"
)

// feedServer serves one feed body with an ETag, answering 304 to a request that names it.
type feedServer struct {
	mu          sync.Mutex
	body, etag  string
	conditional []string // If-None-Match of each request
}

func (f *feedServer) set(body, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body, f.etag = body, etag
}

func (f *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conditional = append(f.conditional, r.Header.Get("If-None-Match"))
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Content-Type", "text/csv")
	fmt.Fprint(w, f.body)
}

// TestFeeds: a vendor's feed is fetched at each occurrence and applied as an import (changed
// rows applied, unchanged rows counted so); an unchanged feed answers 304 to the ETag sent and
// nothing is applied; a malformed feed fails its run and changes nothing (and the next fetch
// still sends the last good ETag); a row of the wrong kind for the feed's mode is rejected;
// every run is recorded. Bad feeds are refused naming the field, a URL to a private address
// included (the webhooks' guard).
func TestFeeds(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	store, feedStore := imports.NewStore(pool), feeds.NewStore(pool)
	guard, err := alerts.NewURLPolicy([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := importConfig()
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(guardrails.NewStore(pool, guardrails.Limits{})),
		WithImports(store, cfg), WithFeeds(feedStore, guard))
	applier := imports.NewRunner(store, ts.srv.ImportRows, cfg, zerolog.Nop())
	now := time.Now()
	clock := func() time.Time { return now }
	runner := feeds.NewRunner(ts.eng, feedStore, store, guard, cfg, feeds.Config{Interval: time.Second, Timeout: 5 * time.Second},
		zerolog.Nop(), feeds.WithClock(clock))
	src := &feedServer{}
	web := httptest.NewServer(src)
	t.Cleanup(web.Close)
	stock := func(sku string) int64 {
		a, err := ts.eng.Availability(context.Background(), "berlin", sku)
		if err != nil {
			t.Fatal(err)
		}
		return a.Available
	}

	post := func(body map[string]any) response {
		return ts.do("POST", "/v1/vendors/acme/feeds", acmeKey, body)
	}
	good := map[string]any{"url": web.URL + "/stock.csv", "mode": "set", "cron": "*/5 * * * *", "time_zone": "UTC"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	for _, bad := range []struct {
		field string
		body  map[string]any
	}{
		{"url", with("url", "ftp://127.0.0.1/stock.csv")},
		{"url", with("url", "http://10.1.2.3/stock.csv")},
		{"mode", with("mode", "replace")},
		{"format", with("format", "xml")},
		{"cron", with("cron", "0 6 * *")},
		{"time_zone", with("time_zone", "Mars/Olympus")},
	} {
		r := post(bad.body).want(t, 422, "invalid")
		if msg := r.body["error"].(map[string]any)["message"].(string); !strings.HasPrefix(msg, "invalid feed: "+bad.field+":") {
			t.Errorf("%s: %s", bad.field, msg)
		}
	}
	ts.do("POST", "/v1/vendors/acme/feeds", bistroKey, good).want(t, 403, "forbidden")
	f := post(good).want(t, 201, "")
	id := f.num("id")
	if f.str("next_run_at") == "" {
		t.Fatalf("feed %s", f.raw)
	}

	step := func() (int, imports.Import) {
		t.Helper()
		now = now.Add(5 * time.Minute)
		n, err := runner.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for {
			did, err := applier.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !did {
				break
			}
		}
		list := ts.do("GET", "/v1/vendors/acme/inventory/imports?limit=1", acmeKey, nil).want(t, 200, "").body["imports"].([]any)
		var last imports.Import
		if len(list) > 0 {
			m := list[0].(map[string]any)
			last = imports.Import{ID: fmt.Sprint(m["id"]), Status: fmt.Sprint(m["status"]), Source: fmt.Sprint(m["source"]),
				Counts: imports.Counts{Applied: int64(m["applied"].(float64)), Unchanged: int64(m["unchanged"].(float64)),
					Rejected: int64(m["rejected"].(float64))}}
		}
		return n, last
	}

	// First occurrence: cap changes, sneaker is as it was.
	src.set("location,sku,stock_quantity\nberlin,cap,30\nberlin,sneaker,20\n", `"v1"`)
	if n, im := step(); n != 1 || im.Status != imports.Done || im.Applied != 1 || im.Unchanged != 1 || im.Source != fmt.Sprint("feed:", id) {
		t.Fatalf("first run: %d, %+v", n, im)
	}
	if stock("cap") != 30 || stock("sneaker") != 20 {
		t.Fatalf("cap %d sneaker %d", stock("cap"), stock("sneaker"))
	}
	first := ts.do("GET", "/v1/vendors/acme/inventory/imports", acmeKey, nil).body["imports"].([]any)
	// Unchanged: 304 to the ETag, no import.
	if n, _ := step(); n != 1 || src.conditional[1] != `"v1"` {
		t.Fatalf("second run: %d, sent If-None-Match %q", n, src.conditional)
	}
	if again := ts.do("GET", "/v1/vendors/acme/inventory/imports", acmeKey, nil).body["imports"].([]any); len(again) != len(first) {
		t.Fatalf("a 304 made an import: %d imports, then %d", len(first), len(again))
	}
	// Malformed: the run fails, nothing changes, the good ETag is kept.
	src.set("location,colour\nberlin,red\n", `"v2"`)
	step()
	if stock("cap") != 30 {
		t.Fatalf("a malformed feed changed cap to %d", stock("cap"))
	}
	// A change row in a set feed is rejected; the SET row is applied.
	src.set("location,sku,stock_quantity,change_type,quantity_change\nberlin,cap,,RESTOCK,5\nberlin,cap,12,,\n", `"v3"`)
	if _, im := step(); im.Applied != 1 || im.Rejected != 1 || stock("cap") != 12 {
		t.Fatalf("fourth run: %+v, cap %d", im, stock("cap"))
	}
	if src.conditional[3] != `"v1"` {
		t.Fatalf("after the failed run the fetch sent If-None-Match %q, want the last applied \"v1\"", src.conditional[3])
	}
	runs := ts.do("GET", fmt.Sprintf("/v1/vendors/acme/feeds/%d/runs", id), acmeKey, nil).want(t, 200, "").body["runs"].([]any)
	var results []string
	for _, r := range runs {
		results = append(results, fmt.Sprint(r.(map[string]any)["result"]))
	}
	if fmt.Sprint(results) != "[imported failed not_modified imported]" {
		t.Fatalf("runs %v", results)
	}
	feed := ts.do("GET", fmt.Sprintf("/v1/vendors/acme/feeds/%d", id), acmeKey, nil).want(t, 200, "")
	if feed.str("etag") != `"v3"` || feed.str("last_result") != "imported" {
		t.Fatalf("feed %s", feed.raw)
	}
	ts.do("GET", fmt.Sprintf("/v1/vendors/bistro/feeds/%d", id), bistroKey, nil).want(t, 404, "feed_not_found")
	ts.do("DELETE", fmt.Sprintf("/v1/vendors/acme/feeds/%d", id), acmeKey, nil).want(t, 200, "")
	if n, _ := step(); n != 0 {
		t.Fatalf("a deleted feed ran")
	}
	ts.do("GET", fmt.Sprintf("/v1/vendors/acme/feeds/%d", id), acmeKey, nil).want(t, 404, "feed_not_found")
}
