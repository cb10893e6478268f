// Package feeds keeps vendors' stock true from their own systems: a feed is an http(s) URL
// serving the vendor's stock as CSV or JSON (the bulk update's formats), fetched on a schedule
// and applied as an import. A fetch sends the ETag and Last-Modified of the last one applied,
// so an unchanged feed (304) is not applied again; the URL must pass the same guard as
// webhooks (no loopback, private or other special-purpose address unless allowed), and the
// answer is bounded in size and time. One instance at a time runs the feeds (a lease in
// Redis); each occurrence makes at most one import (its idempotency key names the feed and the
// occurrence), whose rows are applied once each.
package feeds

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/schedules"
)

// Feed is one vendor's feed.
type Feed struct {
	ID     int64  `json:"id"`
	Vendor string `json:"vendor_id"`
	URL    string `json:"url"`
	// Format: csv or json; empty: from the answer's Content-Type.
	Format string `json:"format,omitempty"`
	// Mode: set (rows give absolute counts, stock_quantity) or delta (rows give changes).
	Mode             string `json:"mode"`
	schedules.Timing        // cron, time_zone, ends_at
	Actor            string `json:"actor"`
	// ETag and LastModified are those of the last answer applied.
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Created      time.Time `json:"created_at"`
	// LastRun is the last occurrence dealt with; LastResult what came of it; LastImport the
	// import it made.
	LastRun    *time.Time `json:"last_run_at,omitempty"`
	LastResult string     `json:"last_result,omitempty"`
	LastImport string     `json:"last_import_id,omitempty"`
	NextRun    *time.Time `json:"next_run_at,omitempty"`
}

// Results of a run.
const (
	Imported    = "imported"     // fetched and made an import (applied in the background)
	NotModified = "not_modified" // the feed answered 304: nothing to apply
	Failed      = "failed"       // fetched nothing usable: nothing applied
)

// Run is what came of one occurrence of a feed.
type Run struct {
	Feed       int64     `json:"feed_id"`
	Occurrence string    `json:"occurrence"`
	OccurredAt time.Time `json:"occurred_at"`
	RanAt      time.Time `json:"ran_at"`
	Result     string    `json:"result"`
	HTTPStatus int       `json:"http_status,omitempty"`
	ImportID   string    `json:"import_id,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// ErrInvalid wraps what is wrong with a feed; the message names the field.
var ErrInvalid = errors.New("invalid feed")

// ErrNotFound: no such feed (for this vendor), or it was deleted.
var ErrNotFound = errors.New("feed not found")

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// URLGuard checks a URL before it is fetched (package alerts' URLPolicy).
type URLGuard interface {
	Check(ctx context.Context, raw string) error
}

// Validate checks a feed as a vendor sends it, at now.
func (f *Feed) Validate(ctx context.Context, now time.Time, guard URLGuard) error {
	u, err := url.Parse(f.URL)
	switch {
	case f.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return invalid("url", "an http or https URL is required, got %q", f.URL)
	case f.Format != "" && f.Format != "csv" && f.Format != "json":
		return invalid("format", "must be csv or json (or left out: the Content-Type says), got %q", f.Format)
	case f.Mode != imports.ModeSet && f.Mode != imports.ModeDelta:
		return invalid("mode", "must be set or delta, got %q", f.Mode)
	}
	if err := f.Timing.Validate(now); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), schedules.ErrInvalid.Error()+": "))
	}
	if err := guard.Check(ctx, f.URL); err != nil {
		return invalid("url", "%s", strings.TrimPrefix(err.Error(), "callback_url: "))
	}
	return nil
}
