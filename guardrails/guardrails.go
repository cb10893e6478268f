// Package guardrails keeps a vendor's stock changes within limits: a change that would move a
// pool by more units, or by a larger share of its stock, than the vendor allows, or leave more
// units than its ceiling, is not applied but quarantined, until the vendor or an admin
// approves it (applied as it would have been, if the pool has not changed since) or rejects it.
package guardrails

import (
	"errors"
	"fmt"
	"time"
)

// Limits bound what one change may do to a pool; 0 turns a limit off.
type Limits struct {
	// MaxChange: the most units one change may add or remove.
	MaxChange int64 `json:"max_change"`
	// MaxRelative: the largest change as a share of the units available before it (not
	// applied to a pool that had none).
	MaxRelative float64 `json:"max_relative"`
	// Ceiling: the most units a change may leave available.
	Ceiling int64 `json:"ceiling"`
	// FileMaxShare: the largest share of the vendor's pools one import may zero (from some
	// units to none) or multiply (by FileFactor or more); a larger one is held for approval.
	FileMaxShare float64 `json:"file_max_share"`
	// FileFactor: how many times its units a pool must get to count as multiplied (0: 10).
	FileFactor float64 `json:"file_factor"`
}

// defaultFileFactor is FileFactor when it is not set.
const defaultFileFactor = 10

// Factor is FileFactor, or its default.
func (l Limits) Factor() float64 {
	if l.FileFactor == 0 {
		return defaultFileFactor
	}
	return l.FileFactor
}

// ErrInvalid wraps what is wrong with limits; the message names the field.
var ErrInvalid = errors.New("invalid guardrails")

// Validate reports the first limit that cannot work.
func (l Limits) Validate() error {
	switch {
	case l.MaxChange < 0:
		return fmt.Errorf("%w: max_change must not be negative, got %d", ErrInvalid, l.MaxChange)
	case l.MaxRelative < 0:
		return fmt.Errorf("%w: max_relative must not be negative, got %g", ErrInvalid, l.MaxRelative)
	case l.Ceiling < 0:
		return fmt.Errorf("%w: ceiling must not be negative, got %d", ErrInvalid, l.Ceiling)
	case l.FileMaxShare < 0 || l.FileMaxShare > 1:
		return fmt.Errorf("%w: file_max_share must be 0..1, got %g", ErrInvalid, l.FileMaxShare)
	case l.FileFactor != 0 && l.FileFactor <= 1:
		return fmt.Errorf("%w: file_factor must be more than 1 (or 0 for %d), got %g", ErrInvalid, defaultFileFactor, l.FileFactor)
	}
	return nil
}

// Off reports whether no limit on a single change is set.
func (l Limits) Off() bool { return l.MaxChange == 0 && l.MaxRelative == 0 && l.Ceiling == 0 }

// Check names the limit a change from before to after available units breaks, or "".
func (l Limits) Check(before, after int64) string {
	delta := after - before
	size := max(delta, -delta)
	switch {
	case l.MaxChange > 0 && size > l.MaxChange:
		return fmt.Sprintf("max_change: %+d units, more than %d", delta, l.MaxChange)
	case l.MaxRelative > 0 && before > 0 && float64(size) > l.MaxRelative*float64(before):
		return fmt.Sprintf("max_relative: %+d units is %.0f%% of the %d available, more than %.0f%%", delta,
			100*float64(size)/float64(before), before, 100*l.MaxRelative)
	case l.Ceiling > 0 && after > l.Ceiling && delta > 0:
		return fmt.Sprintf("ceiling: %d units available after it, more than %d", after, l.Ceiling)
	}
	return ""
}

// Item statuses.
const (
	Pending  = "pending"
	Approved = "approved"
	Rejected = "rejected"
	// Stale: approval came after the pool had changed; nothing was applied.
	Stale = "stale"
)

// Item is a quarantined change.
type Item struct {
	ID            int64      `json:"id"`
	Vendor        string     `json:"vendor_id"`
	Location      string     `json:"location"`
	SKU           string     `json:"sku"`
	Kind          string     `json:"kind"`
	Qty           int64      `json:"qty"`
	TransactionID string     `json:"transaction_id"`
	Actor         string     `json:"actor"`
	Reason        string     `json:"reason,omitempty"`
	Before        int64      `json:"available_before"`
	Rule          string     `json:"rule"`
	Status        string     `json:"status"`
	Created       time.Time  `json:"created_at"`
	Decided       *time.Time `json:"decided_at,omitempty"`
	DecidedBy     string     `json:"decided_by,omitempty"`
	NewAvailable  *int64     `json:"new_available,omitempty"`
}
