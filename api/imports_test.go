package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/internal/testredis"
)

type importEnv struct {
	*testServer
	runner *imports.Runner
	pool   *pgxpool.Pool
}

func startImports(t *testing.T, cfg imports.Config, opts ...imports.Option) importEnv {
	t.Helper()
	pool := ledgerSchema(t)
	guards := guardrails.NewStore(pool, guardrails.Limits{})
	store := imports.NewStore(pool)
	ts := startServer(t, testredis.Standalone(t), nil, WithGuardrails(guards), WithImports(store, cfg))
	limits := func(ctx context.Context, vendor string) (guardrails.Limits, error) {
		l, _, err := guards.Limits(ctx, vendor)
		return l, err
	}
	opts = append([]imports.Option{imports.WithFileCheck(ts.eng, limits)}, opts...)
	return importEnv{ts, imports.NewRunner(store, ts.srv.ImportRows, cfg, zerolog.Nop(), opts...), pool}
}

func importConfig() imports.Config {
	cfg := imports.DefaultConfig()
	cfg.Workers, cfg.Batch, cfg.MaxRows, cfg.MaxBytes, cfg.Lease = 4, 3, 50, 1<<20, 2*time.Second
	return cfg
}

// runAll applies every import waiting.
func (e importEnv) runAll(t *testing.T) {
	t.Helper()
	for {
		did, err := e.runner.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !did {
			return
		}
	}
}

func (e importEnv) stock(t *testing.T, loc, sku string) int64 {
	t.Helper()
	a, err := e.eng.Availability(context.Background(), loc, sku)
	if err != nil {
		t.Fatal(err)
	}
	return a.Available
}

func (e importEnv) importOf(t *testing.T, id, query string) (map[string]any, []any) {
	t.Helper()
	r := e.do("GET", "/v1/vendors/acme/inventory/imports/"+id+query, acmeKey, nil).want(t, 200, "")
	return r.body["import"].(map[string]any), r.body["rows"].([]any)
}

// TestImports: an upload is answered 202 at once and applied in the background; every row is
// counted as applied, unchanged, rejected (with the reason, paged) or quarantined (by the
// vendor's guardrails), and the stock is what the rows say; the same Idempotency-Key gets the
// same import; bad uploads are refused whole, naming the problem, and store nothing.
func TestImports(t *testing.T) {
	t.Parallel()
	e := startImports(t, importConfig())
	e.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"max_change": 1000}).want(t, 200, "")
	csv := strings.Join([]string{
		"location,sku,stock_quantity,change_type,quantity_change,reason",
		"berlin,cap,25,,,",                      // 2: applied (10 -> 25)
		"berlin,sneaker,20,,,",                  // 3: unchanged
		"berlin,limited,,RESTOCK,5,delivery 17", // 4: applied (50 -> 55)
		"berlin,cap,abc,,,",                     // 5: rejected, not a number
		"berlin,nothing,5,,,",                   // 6: rejected, unknown pool
		"lyon,meal,9,,,",                        // 7: rejected, another vendor's pool
		"berlin,cap,,SPOILAGE,-100,",            // 8: rejected, more than there is
		"berlin,limited,9000,,,",                // 9: quarantined (max_change)
		"berlin,cap,,RESTOCK,-3,",               // 10: rejected, RESTOCK needs a positive quantity
		"berlin,cap,,ADJUSTMENT,-5,",            // 11: applied (25 -> 20)
	}, "\n") + "\n"
	r := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, csv, "Content-Type", "text/csv", "Idempotency-Key", "nightly-1").
		want(t, 202, "")
	id := r.str("id")
	if r.str("status") != imports.Queued || r.num("total_rows") != 10 || r.header.Get("Location") != "/v1/vendors/acme/inventory/imports/"+id {
		t.Fatalf("created %s (Location %q)", r.raw, r.header.Get("Location"))
	}
	if e.stock(t, "berlin", "cap") != 10 {
		t.Fatal("applied before the runner ran")
	}
	again := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, csv, "Content-Type", "text/csv", "Idempotency-Key", "nightly-1").
		want(t, 202, "")
	if again.str("id") != id || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("same key: %s", again.raw)
	}
	e.runAll(t)
	im, rows := e.importOf(t, id, "")
	got := fmt.Sprintf("%v %v %v %v %v %v %v", im["status"], im["applied"], im["unchanged"], im["rejected"], im["quarantined"], im["rows_done"], im["progress"])
	if got != "done 3 1 5 1 10 1" {
		t.Fatalf("import %v, want done 3 1 5 1 10 1: %v", got, im)
	}
	codes := []string{}
	for _, row := range rows {
		m := row.(map[string]any)
		codes = append(codes, fmt.Sprint(m["row"], ":", m["code"]))
	}
	if want := "[5:invalid 6:unknown_pool 7:unknown_pool 8:insufficient_stock 9:quarantined 10:invalid]"; fmt.Sprint(codes) != want {
		t.Fatalf("rows %v, want %s", codes, want)
	}
	if s := fmt.Sprint(e.stock(t, "berlin", "cap"), e.stock(t, "berlin", "sneaker"), e.stock(t, "berlin", "limited"), e.stock(t, "lyon", "meal")); s != "20 20 55 5" {
		t.Fatalf("stock cap sneaker limited meal = %s, want 20 20 55 5", s)
	}
	// Paged, and by status.
	_, page := e.importOf(t, id, "?rows_limit=2&rows_after=6")
	if len(page) != 2 || page[0].(map[string]any)["row"] != 7.0 {
		t.Fatalf("page %v", page)
	}
	_, held := e.importOf(t, id, "?rows=quarantined")
	q := held[0].(map[string]any)
	if len(held) != 1 || q["quarantine_id"] == nil {
		t.Fatalf("quarantined rows %v", held)
	}
	quarantine := e.do("GET", "/v1/vendors/acme/quarantine?status=pending", acmeKey, nil).want(t, 200, "")
	if items := quarantine.body["quarantine"].([]any); len(items) != 1 || items[0].(map[string]any)["transaction_id"] != id+"-9" {
		t.Fatalf("quarantine %s", quarantine.raw)
	}
	// Approving the quarantined row applies it as it was.
	e.do("POST", fmt.Sprintf("/v1/vendors/acme/quarantine/%v/approve", q["quarantine_id"]), acmeKey, nil).want(t, 200, "")
	if s := e.stock(t, "berlin", "limited"); s != 9000 {
		t.Fatalf("limited %d after approval, want 9000", s)
	}

	// JSON, streamed in the same way.
	js := `{"items": [{"location": "berlin", "sku": "cap", "change_type": "RESTOCK", "quantity_change": 4},
		{"location": "berlin", "sku": "cap", "stock_quantity": "x"}, {"location": "berlin", "sku": "cap", "colour": "red"}]}`
	jr := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, js, "Content-Type", "application/json").want(t, 202, "")
	e.runAll(t)
	jim, _ := e.importOf(t, jr.str("id"), "")
	if fmt.Sprint(jim["applied"], jim["rejected"]) != "1 2" || e.stock(t, "berlin", "cap") != 24 {
		t.Fatalf("json import %v, cap %d", jim, e.stock(t, "berlin", "cap"))
	}

	// Refused whole, nothing stored.
	post := func(body, ct string, key string) response {
		return e.do("POST", "/v1/vendors/acme/inventory/imports", key, body, "Content-Type", ct)
	}
	post("location,colour\nberlin,red\n", "text/csv", acmeKey).want(t, 400, "bad_request")
	post(`{"items": [{"location": "berlin"}`, "application/json", acmeKey).want(t, 400, "bad_request")
	post(`{"rows": []}`, "application/json", acmeKey).want(t, 400, "bad_request")
	post("<x/>", "application/xml", acmeKey).want(t, 415, "unsupported_media_type")
	post("location,sku,stock_quantity\n"+strings.Repeat("berlin,cap,1\n", 51), "text/csv", acmeKey).want(t, 413, "too_many_rows")
	post("location,sku,stock_quantity\n"+strings.Repeat("berlin,cap,1"+strings.Repeat(" ", 30000)+"\n", 40), "text/csv", acmeKey).
		want(t, 413, "payload_too_large")
	post(csv, "text/csv", bistroKey).want(t, 403, "forbidden")
	list := e.do("GET", "/v1/vendors/acme/inventory/imports", acmeKey, nil).want(t, 200, "")
	if n := len(list.body["imports"].([]any)); n != 2 {
		t.Fatalf("%d imports listed, want 2: %s", n, list.raw)
	}
	e.do("GET", "/v1/vendors/acme/inventory/imports/imp_nothing", acmeKey, nil).want(t, 404, "import_not_found")
	e.do("GET", "/v1/vendors/bistro/inventory/imports/"+id, bistroKey, nil).want(t, 404, "import_not_found")
	e.do("GET", "/v1/vendors/acme/inventory/imports/"+id+"?rows=odd", acmeKey, nil).want(t, 422, "invalid")
	e.do("POST", "/v1/vendors/acme/inventory/imports/"+id+"/approve", acmeKey, nil).want(t, 409, "not_held")
}

// TestImportFileCheck: an import that would zero more of the vendor's pools than its
// file_max_share is held before anything is applied; rejected, nothing is; approved, it is
// applied whole.
func TestImportFileCheck(t *testing.T) {
	t.Parallel()
	e := startImports(t, importConfig())
	e.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"file_max_share": 1.5}).want(t, 422, "invalid")
	e.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"file_max_share": 0.5, "file_factor": 1}).want(t, 422, "invalid")
	e.do("PUT", "/v1/vendors/acme/guardrails", acmeKey, map[string]any{"file_max_share": 0.5}).want(t, 200, "")
	// A truncated export: acme's three pools, two of them to nothing (67% > 50%).
	truncated := "location,sku,stock_quantity\nberlin,cap,0\nberlin,sneaker,0\nberlin,limited,50\n"
	upload := func() string {
		return e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, truncated, "Content-Type", "text/csv").want(t, 202, "").str("id")
	}
	first, second := upload(), upload()
	e.runAll(t)
	status := func(id string) map[string]any {
		im, _ := e.importOf(t, id, "")
		return im
	}
	// The first is held; the second waits behind it (a vendor's imports go in order).
	if im := status(first); im["status"] != imports.Held || !strings.Contains(fmt.Sprint(im["held_reason"]), "zero 2") {
		t.Fatalf("import %v, want held", im)
	}
	if im := status(second); im["status"] != imports.Queued {
		t.Fatalf("the second import %v, want queued behind the held one", im)
	}
	if e.stock(t, "berlin", "cap") != 10 || e.stock(t, "berlin", "sneaker") != 20 {
		t.Fatal("a held import changed stock")
	}
	rej := e.do("POST", "/v1/vendors/acme/inventory/imports/"+first+"/reject", acmeKey, nil).want(t, 200, "")
	e.do("POST", "/v1/vendors/acme/inventory/imports/"+first+"/approve", acmeKey, nil).want(t, 409, "not_held")
	e.runAll(t) // the second now runs, and is held in its turn
	if im := status(second); im["status"] != imports.Held {
		t.Fatalf("the second import %v, want held", im)
	}
	ok := e.do("POST", "/v1/vendors/acme/inventory/imports/"+second+"/approve", adminKey, nil).want(t, 200, "")
	e.runAll(t)
	im := status(second)
	if rej.str("status") != imports.Rejected || ok.str("status") != imports.Queued || im["status"] != imports.Done || im["applied"] != 2.0 {
		t.Fatalf("rejected %s, approved %s, then %v", rej.raw, ok.raw, im)
	}
	if e.stock(t, "berlin", "cap") != 0 || e.stock(t, "berlin", "sneaker") != 0 {
		t.Fatal("the approved import was not applied")
	}
	// One pool of three multiplied by 10 is within the share.
	small := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, "location,sku,stock_quantity\nberlin,limited,500\n",
		"Content-Type", "text/csv").want(t, 202, "").str("id")
	e.runAll(t)
	if im, _ := e.importOf(t, small, ""); im["status"] != imports.Done {
		t.Fatalf("small import %v", im)
	}
}

// TestImportResumes: an import stopped after some batches (its instance gone, its lease run
// out) is taken up by another instance from the last batch recorded, and every row is applied
// exactly once: each row's change is replayed, not made again.
func TestImportResumes(t *testing.T) {
	t.Parallel()
	cfg := importConfig()
	cfg.MaxRows, cfg.Batch, cfg.Lease = 1000, 40, time.Second
	ctx, stop := context.WithCancel(context.Background())
	var stoppedAt int64
	e := startImports(t, cfg, imports.WithOwner("first"), imports.AfterBatch(func(im *imports.Import, next int64) {
		if next > 200 && stoppedAt == 0 {
			stoppedAt = next
			stop() // the instance dies: the rows of the batch in hand may be applied, not recorded
		}
	}))
	var b strings.Builder
	b.WriteString("location,sku,change_type,quantity_change\n")
	for range 600 {
		b.WriteString("berlin,cap,RESTOCK,1\n")
	}
	id := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, b.String(), "Content-Type", "text/csv").want(t, 202, "").str("id")
	if _, err := e.runner.RunOnce(ctx); err == nil {
		t.Fatal("the first instance did not stop")
	}
	im, _ := e.importOf(t, id, "")
	if im["status"] != imports.Running || im["rows_done"] != float64(stoppedAt-1) {
		t.Fatalf("after the stop: %v (stopped at %d)", im, stoppedAt)
	}
	second := imports.NewRunner(imports.NewStore(e.pool), e.srv.ImportRows, cfg, zerolog.Nop(), imports.WithOwner("second"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		did, err := second.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if did || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	im, _ = e.importOf(t, id, "")
	if im["status"] != imports.Done || im["applied"] != 600.0 || im["attempts"] != 2.0 {
		t.Fatalf("after the resume: %v", im)
	}
	if s := e.stock(t, "berlin", "cap"); s != 10+600 {
		t.Fatalf("cap %d, want %d: a row applied twice or not at all", s, 610)
	}
}

// TestImportSurvivesUploadReadError: an upload that cannot be read back for a moment (the
// instance stops, Postgres does not answer) leaves the import to be taken up again, not
// failed half-applied; the next instance finishes it, each row once.
func TestImportSurvivesUploadReadError(t *testing.T) {
	t.Parallel()
	cfg := importConfig()
	cfg.MaxRows, cfg.MaxBytes, cfg.Batch, cfg.Lease = 100_000, 4<<20, 40_000, time.Second
	ctx, stop := context.WithCancel(context.Background())
	e := startImports(t, cfg, imports.WithOwner("first"), imports.AfterBatch(func(*imports.Import, int64) { stop() }))
	var b strings.Builder
	b.WriteString("location,sku,change_type,quantity_change\n")
	for range 60_000 { // 1.3 MB: two chunks of the upload
		b.WriteString("berlin,cap,RESTOCK,1\n")
	}
	id := e.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, b.String(), "Content-Type", "text/csv").want(t, 202, "").str("id")
	e.runner.RunOnce(ctx) // the first batch, then the second chunk cannot be read
	if im, _ := e.importOf(t, id, ""); im["status"] != imports.Running {
		t.Fatalf("after a read error: %v", im)
	}
	second := imports.NewRunner(imports.NewStore(e.pool), e.srv.ImportRows, cfg, zerolog.Nop(), imports.WithOwner("second"))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if did, err := second.RunOnce(context.Background()); err != nil || did || time.Now().After(deadline) {
			break
		}
	}
	if im, _ := e.importOf(t, id, ""); im["status"] != imports.Done || im["applied"] != 60_000.0 || e.stock(t, "berlin", "cap") != 60_010 {
		t.Fatalf("after the resume: %v, cap %d", im, e.stock(t, "berlin", "cap"))
	}
}

// TestImportLeaseRenewedDuringBatch: a batch that takes longer than the lease keeps its
// import: the lease is renewed while it runs, and another instance does not take the import
// over meanwhile.
func TestImportLeaseRenewedDuringBatch(t *testing.T) {
	t.Parallel()
	cfg := importConfig()
	cfg.Lease = time.Second
	pool := ledgerSchema(t)
	store := imports.NewStore(pool)
	ts := startServer(t, testredis.Standalone(t), nil, WithImports(store, cfg))
	slow := func(ctx context.Context, vendor string, reqs []engine.AdjustRequest) ([]imports.Outcome, error) {
		time.Sleep(2500 * time.Millisecond)
		return ts.srv.ImportRows(ctx, vendor, reqs)
	}
	first := imports.NewRunner(store, slow, cfg, zerolog.Nop(), imports.WithOwner("first"))
	second := imports.NewRunner(store, ts.srv.ImportRows, cfg, zerolog.Nop(), imports.WithOwner("second"))
	id := ts.do("POST", "/v1/vendors/acme/inventory/imports", acmeKey, "location,sku,change_type,quantity_change\nberlin,cap,RESTOCK,1\n",
		"Content-Type", "text/csv").want(t, 202, "").str("id")
	done := make(chan error, 1)
	go func() {
		_, err := first.RunOnce(context.Background())
		done <- err
	}()
	time.Sleep(1800 * time.Millisecond) // past the lease, within the batch
	if did, err := second.RunOnce(context.Background()); err != nil || did {
		t.Fatalf("another instance took the import during a long batch (%v, %v)", did, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := ts.do("GET", "/v1/vendors/acme/inventory/imports/"+id, acmeKey, nil).want(t, 200, "")
	if im := r.body["import"].(map[string]any); im["status"] != imports.Done || im["attempts"] != 1.0 {
		t.Fatalf("import %v", im)
	}
}
