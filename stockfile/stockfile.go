// Package stockfile reads vendors' stock changes as they send them: one change as a JSON
// object, or many as rows of a CSV file or of a JSON document {"items": [...]}. Files are read
// row by row from a stream, so a file of a million rows is never held whole in memory; a row
// that cannot be read is reported with its number and the reason, and reading goes on.
package stockfile

import (
	"fmt"
	"net/http"

	"github.com/flashhold/flashhold/engine"
)

// Change is one vendor stock change: either a new absolute stock_quantity, or a change_type
// with a signed quantity_change.
type Change struct {
	Location       string `json:"location"`
	SKU            string `json:"sku"`
	ItemID         string `json:"item_id"` // another name for sku
	StockQuantity  *int64 `json:"stock_quantity"`
	ChangeType     string `json:"change_type"`
	QuantityChange *int64 `json:"quantity_change"`
	TransactionID  string `json:"transaction_id"`
	Reason         string `json:"reason"`
}

// Error is what is wrong with a change or a file: the HTTP status and code an API answers
// with, and a message naming the field.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) *Error {
	return errorf(http.StatusUnprocessableEntity, "invalid", format, args...)
}

// Type names the change: SET for an absolute stock_quantity, else its change_type.
func (ch Change) Type() string {
	if ch.StockQuantity != nil {
		return engine.Set
	}
	return ch.ChangeType
}

// ToAdjust checks a change and turns it into an engine request. Signs follow the vendor's
// view: PURCHASE and SPOILAGE take units away (negative), RESTOCK adds (positive),
// ADJUSTMENT corrects either way.
func (ch Change) ToAdjust(actor string) (engine.AdjustRequest, error) {
	sku := ch.SKU
	if sku == "" {
		sku = ch.ItemID
	} else if ch.ItemID != "" && ch.ItemID != sku {
		return engine.AdjustRequest{}, invalidf("sku and item_id differ")
	}
	req := engine.AdjustRequest{Location: ch.Location, SKU: sku, TransactionID: ch.TransactionID, Actor: actor, Reason: ch.Reason}
	if ch.Location == "" {
		return req, invalidf("location is required")
	}
	if ch.StockQuantity != nil {
		if ch.ChangeType != "" || ch.QuantityChange != nil {
			return req, invalidf("give stock_quantity or change_type with quantity_change, not both")
		}
		req.Kind, req.Qty = engine.Set, *ch.StockQuantity
		return req, nil
	}
	if ch.QuantityChange == nil {
		return req, invalidf("quantity_change (or stock_quantity) is required")
	}
	q := *ch.QuantityChange
	sign := func(want int, what string) error {
		if (want < 0 && q >= 0) || (want > 0 && q <= 0) {
			return invalidf("quantity_change: %s needs a %s quantity, got %d", ch.ChangeType, what, q)
		}
		return nil
	}
	var err error
	switch ch.ChangeType {
	case "PURCHASE":
		err = sign(-1, "negative")
		req.Kind, req.Qty = engine.Adjustment, q
		if req.Reason == "" {
			req.Reason = "PURCHASE"
		}
	case "RESTOCK":
		err = sign(1, "positive")
		req.Kind, req.Qty = engine.Restock, q
	case "SPOILAGE":
		err = sign(-1, "negative")
		req.Kind, req.Qty = engine.Spoilage, -q
	case "ADJUSTMENT":
		if q == 0 {
			err = invalidf("quantity_change: ADJUSTMENT needs a non-zero quantity")
		}
		req.Kind, req.Qty = engine.Adjustment, q
	case "":
		err = invalidf("change_type is required with quantity_change")
	default:
		err = invalidf("change_type must be PURCHASE, RESTOCK, SPOILAGE or ADJUSTMENT, got %q", ch.ChangeType)
	}
	return req, err
}
