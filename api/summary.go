package api

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/flashhold/flashhold/guardrails"
)

// VendorActivity counts a vendor's events (package alerts' Store).
type VendorActivity interface {
	EventsSince(ctx context.Context, vendor string, since time.Time) (int64, error)
}

// WithVendorActivity lets the vendor summary count the events of the last hour.
func WithVendorActivity(a VendorActivity) Option { return func(s *Server) { s.activity = a } }

// stockCounts are a vendor's pools by state, over all its locations or one.
type stockCounts struct {
	Pools       int `json:"pools"`
	InStock     int `json:"in_stock"`
	Low         int `json:"low"`
	Out         int `json:"out"`
	Quarantined int `json:"quarantined"`
}

// summaryPage is how many pools the summary reads a round trip.
const summaryPage = 1000

// vendorSummary serves GET /v1/vendors/{vendor}/summary: the vendor's pools by state, over
// all its locations and per location; changes waiting in quarantine; its last import and last
// feed run; its events in the last hour.
func (s *Server) vendorSummary(c *call) error {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return err
	}
	var total stockCounts
	byLocation := map[string]*stockCounts{}
	at := func(loc string) *stockCounts {
		if byLocation[loc] == nil {
			byLocation[loc] = &stockCounts{}
		}
		return byLocation[loc]
	}
	for after := ""; ; {
		pools, more, err := s.eng.VendorPools(c.ctx, vendor, after, summaryPage)
		if err != nil {
			return err
		}
		avail, err := s.eng.Availabilities(c.ctx, pools)
		if err != nil {
			return err
		}
		for _, a := range avail {
			for _, n := range []*stockCounts{&total, at(a.Location)} {
				n.Pools++
				switch {
				case a.Available == 0:
					n.Out++
				case a.LowStock > 0 && a.Available <= a.LowStock:
					n.Low++
					n.InStock++
				default:
					n.InStock++
				}
			}
		}
		if !more {
			break
		}
		after = pools[len(pools)-1].Key().String()
	}
	body := map[string]any{"vendor_id": vendor}
	if s.guard != nil {
		pending, err := s.guard.List(c.ctx, vendor, guardrails.Pending, 1000)
		if err != nil {
			return err
		}
		for _, it := range pending {
			total.Quarantined++
			at(it.Location).Quarantined++
		}
	}
	if s.imports != nil {
		list, err := s.imports.List(c.ctx, vendor, "", 1)
		if err != nil {
			return err
		}
		if len(list) > 0 {
			body["last_import"] = viewOf(list[0])
		}
	}
	if s.feeds != nil {
		list, err := s.feeds.List(c.ctx, vendor)
		if err != nil {
			return err
		}
		var last map[string]any
		var lastAt time.Time
		for _, f := range list {
			if f.LastRun != nil && f.LastRun.After(lastAt) {
				lastAt = *f.LastRun
				last = map[string]any{"feed_id": f.ID, "occurred_at": f.LastRun, "result": f.LastResult, "import_id": f.LastImport}
			}
		}
		if last != nil {
			body["last_feed_run"] = last
		}
	}
	if s.activity != nil {
		n, err := s.activity.EventsSince(c.ctx, vendor, s.now().Add(-time.Hour))
		if err != nil {
			return err
		}
		body["events_last_hour"] = n
	}
	type locationCounts struct {
		Location string `json:"location"`
		stockCounts
	}
	locations := make([]locationCounts, 0, len(byLocation))
	for loc, n := range byLocation {
		locations = append(locations, locationCounts{loc, *n})
	}
	sort.Slice(locations, func(i, j int) bool { return locations[i].Location < locations[j].Location })
	body["totals"], body["locations"] = total, locations
	return c.json(http.StatusOK, body)
}
