package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
)

// FuzzDecodeReserve: no body makes the reservation decoder panic, and whatever it accepts
// has at least one item.
func FuzzDecodeReserve(f *testing.F) {
	for _, s := range []string{
		`{"location":"berlin","sku":"cap","qty":2,"customer_id":"c1","ttl_ms":60000}`,
		`{"items":[{"location":"berlin","sku":"cap","qty":1},{"location":"lyon","sku":"meal"}]}`,
		`{"items":[]}`, `{"qty":-9223372036854775808}`, `{"ttl_ms":9223372036854775807,"sku":"x"}`,
		`[]`, `null`, `{"items":null,"location":""}`, "{\"sku\":\"\u0000\"}", `{"location":"a"}{"b":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeReserve(body)
		if err == nil && len(req.Items) == 0 {
			t.Fatalf("accepted %q with no items", body)
		}
		if err != nil {
			if ae := toError(err); ae.Status != 400 && ae.Status != 422 {
				t.Fatalf("decode error maps to %d", ae.Status)
			}
		}
	})
}

// FuzzDecodeBulk: no JSON or CSV body makes the bulk decoder panic; rows it accepts or
// rejects are numbered, and never more than the limit.
func FuzzDecodeBulk(f *testing.F) {
	for _, s := range []string{
		"location,sku,stock_quantity\nberlin,cap,5\n",
		"location,item_id,change_type,quantity_change,transaction_id\nberlin,cap,PURCHASE,-1,t1\n\"x,y\n",
		"location,sku\n", "LOCATION , SKU,stock_quantity\nb,c,1,2,3\n", "location,location\n", "\n\n",
		"location,sku,quantity_change\nb,c,99999999999999999999\n",
	} {
		f.Add(true, []byte(s))
	}
	for _, s := range []string{
		`{"items":[{"location":"b","sku":"c","stock_quantity":1}]}`, `{"items":[{}]}`, `{"items":{}}`, `{}`,
	} {
		f.Add(false, []byte(s))
	}
	f.Fuzz(func(t *testing.T, csv bool, body []byte) {
		ct := "application/json"
		if csv {
			ct = "text/csv"
		}
		rows, bad, err := decodeBulk(ct, body, 50)
		if err != nil {
			return
		}
		if len(rows)+len(bad) > 50 {
			t.Fatalf("%d rows past the limit of 50", len(rows)+len(bad))
		}
		for _, r := range rows {
			if r.Row < 1 {
				t.Fatalf("row numbered %d", r.Row)
			}
		}
	})
}

// FuzzServer sends arbitrary requests to a running server: every answer is JSON (an error
// body for 4xx/5xx), and none is a 500 — nothing panics or fails unexpectedly.
func FuzzServer(f *testing.F) {
	seeds := []struct{ method, path, ct, body string }{
		{"POST", "/v1/holds", "application/json", `{"location":"berlin","sku":"cap","qty":1}`},
		{"POST", "/v1/holds", "application/json", `{"items":[{"location":"berlin","sku":"sneaker","qty":30}]}`},
		{"POST", "/v1/holds/0123456789abcdef0123.0_1.0.0/commit", "", ""},
		{"POST", "/v1/holds/0123456789abcdef0123_99999.0.0/extend", "application/json", `{"ttl_ms":1}`},
		{"GET", "/v1/holds/%00%ff", "", ""},
		{"GET", "/v1/availability/cap?location=berlin&location=x", "", ""},
		{"POST", "/v1/vendors/acme/inventory/cap/update", "application/json", `{"location":"berlin","change_type":"RESTOCK","quantity_change":1,"transaction_id":"f1"}`},
		{"POST", "/v1/vendors/acme/inventory/bulk_update", "text/csv", "location,sku,stock_quantity\nberlin,cap,3\n"},
		{"POST", "/v1/vendors/acme/inventory/bulk_update", "multipart/form-data; boundary=x", "--x--"},
		{"GET", "/v1/inventory/events?after=99999:1&limit=1000", "", ""},
		{"PUT", "/v1/pools/berlin/cap", "application/json", `{"vendor":"acme","shards":1}`},
		{"PATCH", "/v1//holds", "", ""},
		{"GET", "/../../etc/passwd", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.ct, []byte(s.body))
	}
	ts := startServer(f, testredis.Standalone(f), nil)
	client := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, method, path, ct string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
		if err != nil {
			return // not a request net/http can send
		}
		req.Header.Set("X-API-Key", adminKey)
		req.Header.Set("Idempotency-Key", "fuzz")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := client.Do(req)
		if err != nil {
			if ue, ok := err.(interface{ Timeout() bool }); ok && ue.Timeout() {
				t.Fatalf("%s %s (%s) %q: no answer in 10s", method, path, ct, body)
			}
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 && resp.StatusCode != 503 {
			t.Fatalf("%s %s (%s) %q -> %d %s", method, path, ct, body, resp.StatusCode, raw)
		}
		if path == "/metrics" || strings.HasPrefix(path, "/metrics?") || method == "HEAD" {
			return
		}
		if resp.StatusCode >= 400 {
			var e errorBody
			if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
				t.Fatalf("%s %s -> %d without a JSON error body: %q", method, path, resp.StatusCode, raw)
			}
		}
	})
}
