package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/stockfile"
)

// applyChange checks the pool belongs to the vendor and applies the change.
func (s *Server) applyChange(ctx context.Context, vendor string, req engine.AdjustRequest) (*engine.AdjustResult, error) {
	p, err := s.eng.Pool(ctx, req.Location, req.SKU)
	if err != nil {
		return nil, err
	}
	if p.Vendor != vendor {
		return nil, fmt.Errorf("%w: vendor %s has no %s at %s", engine.ErrUnknownPool, vendor, req.SKU, req.Location)
	}
	if s.guard != nil {
		held, err := s.hold(ctx, vendor, req)
		if err != nil {
			return nil, err
		}
		if held != nil {
			return nil, &quarantined{*held}
		}
	}
	return s.eng.Adjust(ctx, req)
}

func (s *Server) vendorUpdate(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	var ch stockfile.Change
	if err := decodeJSON(c.rc.PostBody(), &ch); err != nil {
		return err
	}
	if ch.SKU != "" || ch.ItemID != "" {
		return errorf(http.StatusBadRequest, "bad_request", "the sku is in the path; do not repeat it in the body")
	}
	ch.SKU = c.param("sku")
	if ch.TransactionID == "" {
		ch.TransactionID = string(c.rc.Request.Header.Peek("Idempotency-Key"))
	}
	if ch.TransactionID == "" {
		return errorf(http.StatusBadRequest, "missing_transaction_id", "give transaction_id in the body or an Idempotency-Key header")
	}
	req, err := ch.ToAdjust(c.actor())
	if err != nil {
		return err
	}
	res, err := s.applyChange(c.ctx, vendor, req)
	var q *quarantined
	if errors.As(err, &q) {
		return c.json(http.StatusAccepted, map[string]any{"vendor_id": vendor, "location": req.Location, "sku": req.SKU,
			"transaction_id": req.TransactionID, "status": "quarantined", "quarantine": q.item})
	}
	if err != nil {
		return err
	}
	if res.Replayed {
		c.rc.Response.Header.Set("Idempotent-Replayed", "true")
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "location": req.Location, "sku": req.SKU,
		"item_id": req.SKU, "change_type": ch.Type(), "previous_stock": res.Before, "new_stock": res.After,
		"transaction_id": req.TransactionID, "replayed": res.Replayed})
}

// bulkRow is one row of a bulk update, numbered as the caller sees it (JSON: 1-based index;
// CSV: line number, the header being line 1).
type bulkRow struct {
	Row int
	stockfile.Change
}

type rowResult struct {
	Row           int    `json:"row"`
	Location      string `json:"location,omitempty"`
	SKU           string `json:"sku,omitempty"`
	Status        string `json:"status"`
	PreviousStock *int64 `json:"previous_stock,omitempty"`
	NewStock      *int64 `json:"new_stock,omitempty"`
	Replayed      bool   `json:"replayed,omitempty"`
	Error         *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func rejected(row int, err error) rowResult {
	ae := toError(err)
	r := rowResult{Row: row, Status: "rejected"}
	r.Error = &struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{ae.Code, ae.Message}
	return r
}

// decodeBulk reads a bulk update body as JSON ({"items": [...]}) or CSV (header row naming
// the columns). Rows that cannot be read come back as rejected results; an error means the
// body as a whole could not be read.
func decodeBulk(contentType string, body []byte, maxRows int) ([]bulkRow, []rowResult, error) {
	format, err := stockfile.Format(contentType)
	if err != nil {
		return nil, nil, err
	}
	if format == stockfile.JSON {
		var b struct {
			Items []stockfile.Change `json:"items"`
		}
		if err := decodeJSON(body, &b); err != nil {
			return nil, nil, err
		}
		if len(b.Items) > maxRows {
			return nil, nil, errorf(http.StatusRequestEntityTooLarge, "too_many_rows", "%d rows; at most %d per request", len(b.Items), maxRows)
		}
		rows := make([]bulkRow, len(b.Items))
		for i, it := range b.Items {
			rows[i] = bulkRow{Row: i + 1, Change: it}
		}
		return rows, nil, nil
	}
	r, err := stockfile.NewReader(format, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	var rows []bulkRow
	var bad []rowResult
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows, bad, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if len(rows)+len(bad) >= maxRows {
			return nil, nil, errorf(http.StatusRequestEntityTooLarge, "too_many_rows", "more than %d rows; at most %d per request", maxRows, maxRows)
		}
		if row.Err != nil {
			bad = append(bad, rejected(row.N, row.Err))
			continue
		}
		rows = append(rows, bulkRow{Row: row.N, Change: row.Change})
	}
}

func (s *Server) vendorBulk(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	rows, results, err := decodeBulk(string(c.rc.Request.Header.ContentType()), c.rc.PostBody(), s.cfg.BulkMaxRows)
	if err != nil {
		return err
	}
	key := string(c.rc.Request.Header.Peek("Idempotency-Key"))
	out := make([]rowResult, len(rows))
	var wg sync.WaitGroup
	work := make(chan int)
	for range max(1, s.cfg.BulkWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = s.bulkOne(c, vendor, key, rows[i])
			}
		}()
	}
	for i := range rows {
		work <- i
	}
	close(work)
	wg.Wait()
	results = append(results, out...)
	updated, held := 0, 0
	for _, r := range results {
		switch r.Status {
		case "updated":
			updated++
		case "quarantined":
			held++
		}
	}
	sortResults(results)
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "updated_items": updated, "quarantined_items": held,
		"rejected_items": len(results) - updated - held, "results": results})
}

func (s *Server) bulkOne(c *call, vendor, key string, row bulkRow) rowResult {
	if row.TransactionID == "" && key != "" {
		row.TransactionID = key + ":" + strconv.Itoa(row.Row)
	}
	if row.TransactionID == "" {
		return rejected(row.Row, errorf(http.StatusBadRequest, "missing_transaction_id", "give the row a transaction_id, or send an Idempotency-Key header"))
	}
	req, err := row.ToAdjust(c.actor())
	if err != nil {
		return rejected(row.Row, err)
	}
	res, err := s.applyChange(c.ctx, vendor, req)
	var q *quarantined
	if errors.As(err, &q) {
		r := rejected(row.Row, errorf(http.StatusAccepted, "quarantined", "held back by a guardrail (quarantine %d): %s", q.item.ID, q.item.Rule))
		r.Location, r.SKU, r.Status = req.Location, req.SKU, "quarantined"
		return r
	}
	if err != nil {
		r := rejected(row.Row, err)
		r.Location, r.SKU = req.Location, req.SKU
		return r
	}
	return rowResult{Row: row.Row, Location: req.Location, SKU: req.SKU, Status: "updated",
		PreviousStock: &res.Before, NewStock: &res.After, Replayed: res.Replayed}
}

func sortResults(rs []rowResult) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Row < rs[j].Row })
}

type inventoryItem struct {
	Location      string `json:"location"`
	SKU           string `json:"sku"`
	ItemID        string `json:"item_id"`
	StockQuantity int64  `json:"stock_quantity"`
	SafetyStock   int64  `json:"safety_stock"`
	Available     int64  `json:"available"`
	Held          int64  `json:"held"`
	Committed     int64  `json:"committed"`
	Status        string `json:"status"`
	LowStock      int64  `json:"low_stock_threshold"`
	CustomerLimit int64  `json:"customer_limit"`
	// CustomerWindowMs: the window of the per-customer limit (0: for good).
	CustomerWindowMs int64 `json:"customer_window_ms"`
	Shards           int   `json:"shards"`
	IsPerishable     bool  `json:"is_perishable"`
	BestBeforeMs     int64 `json:"best_before_ms,omitempty"`
	// InventoryPolicy (deny, backorder, preorder); Backordered the units owed to backorders.
	InventoryPolicy string `json:"inventory_policy"`
	BackorderLimit  int64  `json:"backorder_limit,omitempty"`
	ReleaseAtMs     int64  `json:"release_at_ms,omitempty"`
	Backordered     int64  `json:"backordered"`
}

func (s *Server) vendorInventory(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	pools, more, err := s.eng.VendorPools(c.ctx, vendor, c.query("after"), limit)
	if err != nil {
		return err
	}
	avail, err := s.eng.Availabilities(c.ctx, pools)
	if err != nil {
		return err
	}
	items := make([]inventoryItem, len(avail))
	for i, a := range avail {
		items[i] = inventoryItem{Location: a.Location, SKU: a.SKU, ItemID: a.SKU, StockQuantity: a.Unsold(),
			SafetyStock: a.SafetyStock, Available: a.Available, Held: a.Held, Committed: a.Committed, Status: a.Status, LowStock: a.LowStock,
			CustomerLimit: a.CustomerLimit, CustomerWindowMs: a.CustomerWindow, Shards: a.PoolConfig.Shards, IsPerishable: a.BestBefore > 0, BestBeforeMs: a.BestBefore,
			InventoryPolicy: policyName(a.Policy), BackorderLimit: a.BackorderLimit, ReleaseAtMs: a.ReleaseAt, Backordered: a.Backordered}
	}
	body := map[string]any{"vendor_id": vendor, "items": items}
	if more {
		body["next_after"] = pools[len(pools)-1].Key().String()
	}
	return c.json(http.StatusOK, body)
}

func intQuery(c *call, name string, def, lo, hi int) (int, error) {
	s := c.query(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "bad_request", "%s must be a whole number", name)
	}
	if n < lo || n > hi {
		return 0, errorf(http.StatusUnprocessableEntity, "invalid", "%s must be %d..%d", name, lo, hi)
	}
	return n, nil
}

type poolBody struct {
	Vendor        string   `json:"vendor"`
	Shards        int      `json:"shards"`
	LowStock      int64    `json:"low_stock"`
	CustomerLimit int64    `json:"customer_limit"`
	BestBeforeMs  int64    `json:"best_before_ms"`
	Substitutes   []string `json:"substitutes"`
	SafetyStock   int64    `json:"safety_stock"`
	// CustomerWindowMs makes the per-customer limit one over a sliding window (0: for good).
	CustomerWindowMs int64 `json:"customer_window_ms"`
	// InventoryPolicy (deny, backorder or preorder), BackorderLimit and ReleaseAtMs: see
	// engine.PoolConfig.Policy.
	InventoryPolicy string `json:"inventory_policy"`
	BackorderLimit  int64  `json:"backorder_limit"`
	ReleaseAtMs     int64  `json:"release_at_ms"`
}

// putPool creates a pool (with no stock) or updates its threshold, limit, best-before date,
// substitutes, safety stock and inventory policy.
func (s *Server) putPool(c *call) error {
	var b poolBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.Shards == 0 {
		b.Shards = 1
	}
	cfg := engine.PoolConfig{Location: c.param("location"), SKU: c.param("sku"), Vendor: b.Vendor, Shards: b.Shards,
		LowStock: b.LowStock, CustomerLimit: b.CustomerLimit, BestBefore: b.BestBeforeMs, Substitutes: b.Substitutes,
		SafetyStock: b.SafetyStock, CustomerWindow: b.CustomerWindowMs, Policy: b.InventoryPolicy, BackorderLimit: b.BackorderLimit,
		ReleaseAt: b.ReleaseAtMs}
	if err := s.eng.CreatePool(c.ctx, cfg, c.actor()); err != nil {
		return err
	}
	if s.poolStore != nil {
		// Kept durably at once, so that a Redis that loses its data can be restored with it
		// (the persister also copies every pool periodically).
		if err := s.poolStore.SyncPools(c.ctx, []engine.PoolConfig{cfg}); err != nil {
			s.log.Warn().Err(err).Str("pool", cfg.Key().String()).Msg("pool not yet recorded in the ledger; the persister's next sync records it")
		}
	}
	return c.json(http.StatusOK, cfg)
}

// PoolStore keeps pool configurations and regions durably.
type PoolStore interface {
	SyncPools(ctx context.Context, pools []engine.PoolConfig) error
	SyncRegions(ctx context.Context, read func(context.Context) ([]engine.Region, error)) error
	DeleteRegion(ctx context.Context, name string) error
}

// WithPoolStore makes PUT /v1/pools record each pool in store as well.
func WithPoolStore(store PoolStore) Option { return func(s *Server) { s.poolStore = store } }
