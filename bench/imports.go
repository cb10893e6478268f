package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/flashhold/flashhold/engine"
)

// ImportResult is the import scenario's account: one asynchronous import of ImportRows rows
// over ImportPools pools, and checkout on other pools beside it.
type ImportResult struct {
	Rows  int64 `json:"rows"`
	Pools int   `json:"pools"`
	// UploadS: from the first byte sent to the 202; ApplyS: from the 202 to the import done.
	UploadS  float64 `json:"upload_s"`
	ApplyS   float64 `json:"apply_s"`
	TotalS   float64 `json:"total_s"`
	RowsPerS float64 `json:"rows_per_s"`
	// Applied and Rejected as the import counted them; Wrong the pools whose stock after it is
	// not what the file says.
	Applied  int64 `json:"applied"`
	Rejected int64 `json:"rejected"`
	Wrong    int64 `json:"wrong"`
	// Checkout: an open loop of one-unit holds on another pool at CheckoutRPS, alone for the
	// scenario's duration (Baseline) and while the import is applied (During).
	CheckoutRPS float64 `json:"checkout_rps"`
	Baseline    Stats   `json:"baseline"`
	During      Stats   `json:"during"`
	P99Ratio    float64 `json:"p99_ratio"`
}

const importVendor = "bench-import"

// importRounds is how many rows the file has per pool: SET 100 first, then RESTOCK 2 and
// SPOILAGE 1 in turn, so the stock a pool ends with says whether each row was applied once.
func importStock(rounds int) int64 {
	stock := int64(100)
	for r := 1; r < rounds; r++ {
		if r%2 == 1 {
			stock += 2
		} else {
			stock--
		}
	}
	return stock
}

// importFile writes the scenario's CSV: row i changes pool i mod pools.
func importFile(w io.Writer, rows int64, pools int) error {
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, "location,sku,stock_quantity,change_type,quantity_change\n"...)
	for i := range rows {
		p, round := int(i%int64(pools)), i/int64(pools)
		buf = append(buf, "store,i"...)
		buf = strconv.AppendInt(buf, int64(p), 10)
		switch {
		case round == 0:
			buf = append(buf, ",100,,\n"...)
		case round%2 == 1:
			buf = append(buf, ",,RESTOCK,2\n"...)
		default:
			buf = append(buf, ",,SPOILAGE,-1\n"...)
		}
		if len(buf) > 60<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

// imports measures one large import: the pools are made, checkout on another pool is measured
// alone, then the file is streamed to the API and checkout measured again until the import is
// done; every pool's stock is checked afterwards.
func (b *bench) imports(ctx context.Context) (*Scenario, error) {
	o := b.opts
	pools := make([]engine.PoolConfig, o.ImportPools)
	for i := range pools {
		pools[i] = engine.PoolConfig{Location: "store", SKU: "i" + strconv.Itoa(i), Vendor: importVendor, Shards: 1}
	}
	b.say("import: making %d pools", len(pools))
	if err := b.makePools(ctx, pools, 0); err != nil {
		return nil, err
	}
	shop := engine.PoolConfig{Location: "bench", SKU: "import-shop", Vendor: "bench", Shards: 1}
	const shopStock = 1_000_000_000
	if err := b.makePools(ctx, []engine.PoolConfig{shop}, shopStock); err != nil {
		return nil, err
	}
	b.settle(ctx, 60*time.Second)
	res := &ImportResult{Rows: o.ImportRows, Pools: o.ImportPools, CheckoutRPS: o.ImportCheckoutRate}
	var granted []string
	checkout := func(done func() bool, d time.Duration) Stats {
		op := b.newReserveOp("imp"+randomHex(3), shop.Location, shop.SKU, holdTTL)
		defer op.cl.close()
		run := Drive(ctx, Load{Workers: o.Clients, Rate: o.ImportCheckoutRate, Duration: d, Done: done,
			Progress: b.progress("import checkout")}, op.op)
		granted = append(granted, op.granted()...)
		return summarize(run.Samples, run.Elapsed, nil)
	}
	b.say("import: checkout alone, %.0f/s for %s", o.ImportCheckoutRate, o.Duration)
	res.Baseline = checkout(nil, o.Duration)

	var finished atomic.Bool
	type outcome struct {
		upload, apply time.Duration
		body          map[string]any
		err           error
	}
	out := make(chan outcome, 1)
	go func() {
		defer finished.Store(true)
		t0 := time.Now()
		id, err := b.upload(ctx, res.Rows, res.Pools)
		if err != nil {
			out <- outcome{err: err}
			return
		}
		uploaded := time.Now()
		body, err := b.waitImport(ctx, id)
		out <- outcome{upload: uploaded.Sub(t0), apply: time.Since(uploaded), body: body, err: err}
	}()
	b.say("import: %d rows over %d pools, checkout beside it", res.Rows, res.Pools)
	res.During = checkout(finished.Load, time.Hour)
	r := <-out
	if r.err != nil {
		return nil, r.err
	}
	res.UploadS, res.ApplyS = round(r.upload.Seconds(), 2), round(r.apply.Seconds(), 2)
	res.TotalS = round((r.upload + r.apply).Seconds(), 2)
	res.RowsPerS = round(float64(res.Rows)/(r.upload+r.apply).Seconds(), 0)
	res.Applied, res.Rejected = int64(num(r.body["applied"])), int64(num(r.body["rejected"]))
	if res.Baseline.P99Ms > 0 {
		res.P99Ratio = round(res.During.P99Ms/res.Baseline.P99Ms, 2)
	}
	wrong, err := b.checkImported(ctx, pools, res.Rows)
	if err != nil {
		return nil, err
	}
	res.Wrong = wrong
	failed := b.endHolds(ctx, granted, true)
	iv, err := b.check(ctx, []expectation{{pool: shop, stock: shopStock, committed: int64(len(granted)) - failed}}, false)
	if err != nil {
		return nil, err
	}
	if wrong > 0 {
		iv.Violations = append(iv.Violations, fmt.Sprintf("%d imported pools not as the file says", wrong))
	}
	sc := &Scenario{Name: Import, ThroughputRPS: res.RowsPerS, P50Ms: res.During.P50Ms, P99Ms: res.During.P99Ms,
		P999Ms: res.During.P999Ms, Errors: res.During.Errors, Import: res, Invariants: iv, Oversold: iv.Oversold, Undersold: iv.Undersold,
		Phases: []Phase{{Name: "checkout alone", Stats: res.Baseline}, {Name: "checkout during the import", Stats: res.During}}}
	b.say("import: %d rows in %.1f s (upload %.1f s), %.0f rows/s; checkout p99 %.2f ms alone, %.2f ms beside it; wrong pools %d",
		res.Rows, res.TotalS, res.UploadS, res.RowsPerS, res.Baseline.P99Ms, res.During.P99Ms, wrong)
	return sc, nil
}

func num(v any) float64 { f, _ := v.(float64); return f }

// upload streams the file to the imports API (chunked: its length is not known before) and
// returns the import's id.
func (b *bench) upload(ctx context.Context, rows int64, pools int) (string, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(importFile(pw, rows, pools)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.addr+"/v1/vendors/"+importVendor+"/inventory/imports", pr)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("X-API-Key", b.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("import upload: %w", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(raw, &body) != nil {
		return "", fmt.Errorf("import upload: %d %s", resp.StatusCode, raw)
	}
	return fmt.Sprint(body["id"]), nil
}

// waitImport polls the import until it is done and returns it.
func (b *bench) waitImport(ctx context.Context, id string) (map[string]any, error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+"/v1/vendors/"+importVendor+"/inventory/imports/"+id+"?rows_limit=1", nil)
		req.Header.Set("X-API-Key", b.apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var body struct {
			Import map[string]any `json:"import"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		switch body.Import["status"] {
		case "done":
			return body.Import, nil
		case "failed", "held", "rejected":
			return nil, fmt.Errorf("import %s: %v", id, body.Import)
		}
		if b.env.Progress != nil {
			fmt.Fprintf(b.env.Progress, "%-28s %10.0f of %v rows\n", "import", num(body.Import["rows_done"]), body.Import["total_rows"])
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// checkImported counts the pools whose stock is not what the file's rows make it: pool i has
// a row in each round, and one more when i < rows mod pools.
func (b *bench) checkImported(ctx context.Context, pools []engine.PoolConfig, rows int64) (int64, error) {
	var wrong int64
	n := int64(len(pools))
	for start := 0; start < len(pools); start += 1000 {
		avail, err := b.eng.Availabilities(ctx, pools[start:min(start+1000, len(pools))])
		if err != nil {
			return 0, err
		}
		for j, a := range avail {
			rounds := rows / n
			if int64(start+j) < rows%n {
				rounds++
			}
			if a.Unsold() != importStock(int(rounds)) {
				wrong++
			}
		}
	}
	return wrong, nil
}
