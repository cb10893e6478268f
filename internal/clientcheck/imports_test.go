package clientcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testpg"
)

// TestImportSurvivesKill: serve is killed (SIGKILL) while it applies an import; restarted, it
// takes the import up again once its lease runs out and finishes it, and every row was applied
// exactly once: each pool has the units its rows add, the ledger has one event per row, and
// `flashhold reconcile` finds nothing wrong.
func TestImportSurvivesKill(t *testing.T) {
	t.Parallel()
	heavy(t)
	s := Start(t, false, "FLASHHOLD_IMPORT_LEASE=2s", "FLASHHOLD_IMPORT_POLL=200ms", "FLASHHOLD_IMPORT_BATCH=500")
	const pools, rows = 200, 40_000
	call := func(method, path, key string, body []byte, headers ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
		req.Header.Set("X-API-Key", key)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}
	for i := range pools {
		if code, body := call("PUT", fmt.Sprintf("/v1/pools/imp/p%d", i), AdminKey, []byte(`{"vendor":"`+Vendor+`"}`)); code != 200 {
			t.Fatalf("create pool: %d %v", code, body)
		}
	}
	var csv strings.Builder
	csv.WriteString("location,sku,change_type,quantity_change\n")
	for i := range rows {
		fmt.Fprintf(&csv, "imp,p%d,RESTOCK,1\n", i%pools)
	}
	code, created := call("POST", "/v1/vendors/"+Vendor+"/inventory/imports", VendorKey, []byte(csv.String()), "Content-Type", "text/csv")
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, created)
	}
	path := fmt.Sprintf("/v1/vendors/%s/inventory/imports/%v", Vendor, created["id"])
	state := func() map[string]any {
		t.Helper()
		code, body := call("GET", path, VendorKey, nil)
		if code != 200 {
			t.Fatalf("read import: %d %v", code, body)
		}
		return body["import"].(map[string]any)
	}
	deadline := time.Now().Add(60 * time.Second)
	for state()["rows_done"].(float64) < rows/5 {
		if time.Now().After(deadline) {
			t.Fatalf("the import did not start: %v\n%s", state(), s.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.KillServe()
	s.Logf("serve killed")
	s.StartServe()
	s.Logf("serve restarted")
	var im map[string]any
	for im = state(); im["status"] != "done"; im = state() {
		if time.Now().After(deadline) {
			t.Fatalf("the import did not finish: %v\n%s", im, s.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Logf("import: %v", im)
	if im["applied"] != float64(rows) || im["rejected"] != 0.0 || im["attempts"].(float64) < 2 {
		t.Fatalf("import %v: want %d applied after 2 attempts or more", im, rows)
	}
	for i := range pools {
		code, a := call("GET", fmt.Sprintf("/v1/availability/p%d?location=imp", i), ShopKey, nil)
		if code != 200 || a["available"] != float64(rows/pools) {
			t.Fatalf("p%d: %d %v, want %d available", i, code, a, rows/pools)
		}
	}
	if !s.WaitPersisted(30 * time.Second) {
		t.Fatalf("ledger behind:\n%s", s.Streams(t))
	}
	ledger := testpg.Pool(t, testpg.URL(), s.schema)
	var events, distinct int
	if err := ledger.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT idem) FROM inventory_events
		WHERE idem LIKE $1`, Vendor+":"+fmt.Sprint(created["id"])+"-%").Scan(&events, &distinct); err != nil {
		t.Fatal(err)
	}
	if events != rows || distinct != rows {
		t.Fatalf("ledger: %d events of %d transactions for %d rows", events, distinct, rows)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code, out := s.Flashhold(ctx, "reconcile"); code != 0 {
		t.Fatalf("reconcile exited %d: %s", code, out)
	}
}
