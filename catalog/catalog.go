// Package catalog reads pool definitions (CSV or JSON) and loads them into the engine.
//
// CSV has a header row naming its columns, in any order:
//
//	location,sku,vendor,stock,shards,low_stock,customer_limit
//
// location, sku, vendor and stock are required; shards defaults to 1, the others to 0.
// JSON is an array of objects with the same field names.
package catalog

import (
	"context"
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/flashhold/flashhold/engine"
)

// Row is one pool and the stock it should have.
type Row struct {
	Location      string `json:"location"`
	SKU           string `json:"sku"`
	Vendor        string `json:"vendor"`
	Stock         int64  `json:"stock"`
	Shards        int    `json:"shards"`
	LowStock      int64  `json:"low_stock"`
	CustomerLimit int64  `json:"customer_limit"`
	// Line is where the row was in its file (1-based; the CSV header is line 1).
	Line int `json:"-"`
}

// RowError says why one row was refused.
type RowError struct {
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Message)
}

// Parse reads rows in format "csv" or "json". Rows that cannot be read are returned as
// RowErrors; an error means the file as a whole could not be read.
func Parse(r io.Reader, format string) ([]Row, []RowError, error) {
	switch format {
	case "csv":
		return parseCSV(r)
	case "json":
		var rows []Row
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rows); err != nil {
			return nil, nil, fmt.Errorf("json: %w", err)
		}
		for i := range rows {
			rows[i].Line = i + 1
			if rows[i].Shards == 0 {
				rows[i].Shards = 1
			}
		}
		return rows, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown format %q (want csv or json)", format)
}

var required = []string{"location", "sku", "vendor", "stock"}

func parseCSV(r io.Reader) ([]Row, []RowError, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, name := range required {
		if _, ok := col[name]; !ok {
			return nil, nil, fmt.Errorf("csv header: missing column %q (have %s)", name, strings.Join(header, ","))
		}
	}
	var rows []Row
	var bad []RowError
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, RowError{Line: line, Message: pe.Err.Error()})
				continue
			}
			return nil, nil, err
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := Row{Location: get("location"), SKU: get("sku"), Vendor: get("vendor"), Shards: 1, Line: line}
		var rowErr *RowError
		num := func(name string, dst *int64) {
			s := get(name)
			if s == "" || rowErr != nil {
				return
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				rowErr = &RowError{Line: line, Field: name, Message: fmt.Sprintf("%q is not a whole number", s)}
				return
			}
			*dst = n
		}
		var shards int64 = 1
		if get("stock") == "" {
			rowErr = &RowError{Line: line, Field: "stock", Message: "required"}
		}
		num("stock", &row.Stock)
		num("shards", &shards)
		num("low_stock", &row.LowStock)
		num("customer_limit", &row.CustomerLimit)
		row.Shards = int(shards)
		if rowErr != nil {
			bad = append(bad, *rowErr)
			continue
		}
		rows = append(rows, row)
	}
	return rows, bad, nil
}

// LoadOptions changes what Load does.
type LoadOptions struct {
	// Reset names a new load (any string): stock is set again even if these rows were
	// loaded before within FLASHHOLD_IDEMPOTENCY_TTL.
	Reset string
	// MissingOnly loads only rows whose pool does not exist; existing pools, their
	// configuration and their stock are left as they are (a demo or seed loaded at every
	// start never sets stock over units already sold).
	MissingOnly bool
}

// Load creates or updates each row's pool and sets its available stock, and returns how many
// rows it loaded. The stock change of a row is idempotent for as long as the engine keeps
// transaction records (FLASHHOLD_IDEMPOTENCY_TTL): loading the same file again within it
// changes nothing, unless opts.Reset names a new load. Later, a load sets stock again, unless
// opts.MissingOnly.
func Load(ctx context.Context, e *engine.Engine, rows []Row, actor string, opts LoadOptions) (int, []RowError) {
	var bad []RowError
	n := 0
	for _, row := range rows {
		if row.Stock < 0 {
			bad = append(bad, RowError{Line: row.Line, Field: "stock", Message: "must not be negative"})
			continue
		}
		if opts.MissingOnly {
			_, err := e.Pool(ctx, row.Location, row.SKU)
			if err == nil {
				continue
			}
			if !errors.Is(err, engine.ErrUnknownPool) {
				bad = append(bad, rowError(row.Line, err))
				continue
			}
		}
		cfg := engine.PoolConfig{Location: row.Location, SKU: row.SKU, Vendor: row.Vendor, Shards: row.Shards,
			LowStock: row.LowStock, CustomerLimit: row.CustomerLimit}
		if old, err := e.Pool(ctx, row.Location, row.SKU); err == nil {
			// What a stock file has no column for stays as the pool has it.
			cfg.BestBefore, cfg.Substitutes, cfg.SafetyStock = old.BestBefore, old.Substitutes, old.SafetyStock
			cfg.Policy, cfg.BackorderLimit, cfg.ReleaseAt = old.Policy, old.BackorderLimit, old.ReleaseAt
			if cfg.CustomerLimit > 0 {
				cfg.CustomerWindow = old.CustomerWindow
			}
		}
		if err := e.CreatePool(ctx, cfg, actor); err != nil {
			bad = append(bad, rowError(row.Line, err))
			continue
		}
		sum := sha1.Sum(fmt.Appendf(nil, "%s|%s|%d|%s", row.Location, row.SKU, row.Stock, opts.Reset))
		_, err := e.Adjust(ctx, engine.AdjustRequest{Location: row.Location, SKU: row.SKU, Kind: engine.Set,
			Qty: row.Stock, TransactionID: "load-" + hex.EncodeToString(sum[:10]), Actor: actor, Reason: "catalog load"})
		if err != nil {
			bad = append(bad, rowError(row.Line, err))
			continue
		}
		n++
	}
	return n, bad
}

func rowError(line int, err error) RowError {
	var ve *engine.ValidationError
	if errors.As(err, &ve) {
		return RowError{Line: line, Field: ve.Field, Message: ve.Reason}
	}
	return RowError{Line: line, Message: err.Error()}
}
