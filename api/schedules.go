package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/flashhold/flashhold/schedules"
)

// Schedules is what the API needs of the vendors' stock schedules (package schedules).
type Schedules interface {
	Create(ctx context.Context, s schedules.Schedule) (schedules.Schedule, error)
	List(ctx context.Context, vendor string) ([]schedules.Schedule, error)
	Get(ctx context.Context, vendor string, id int64) (schedules.Schedule, error)
	Delete(ctx context.Context, vendor string, id int64) error
	Runs(ctx context.Context, vendor string, id int64, limit int) ([]schedules.Run, error)
}

// WithSchedules enables the vendors' stock schedules.
func WithSchedules(st Schedules) Option { return func(s *Server) { s.schedules = st } }

// scheduleCall checks the caller may act for the path's vendor and that schedules are on.
func (s *Server) scheduleCall(c *call) (string, error) {
	return c.ledgerVendor(s.schedules != nil, "schedules")
}

// scheduleTarget is scheduleCall and the path's schedule id.
func (s *Server) scheduleTarget(c *call) (string, int64, error) {
	vendor, err := s.scheduleCall(c)
	if err != nil {
		return "", 0, err
	}
	id, err := strconv.ParseInt(c.param("id"), 10, 64)
	if err != nil || id < 1 {
		return "", 0, errorf(http.StatusNotFound, "schedule_not_found", "no schedule %q", c.param("id"))
	}
	return vendor, id, nil
}

type scheduleBody struct {
	Location string     `json:"location"`
	SKU      string     `json:"sku"`
	Kind     string     `json:"kind"`
	Qty      *int64     `json:"qty"`
	Cron     string     `json:"cron"`
	TimeZone string     `json:"time_zone"`
	EndsAt   *time.Time `json:"ends_at"`
}

// createSchedule serves POST /v1/vendors/{vendor}/schedules.
func (s *Server) createSchedule(c *call) error {
	vendor, err := s.scheduleCall(c)
	if err != nil {
		return err
	}
	var b scheduleBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	if b.Qty == nil {
		return errorf(http.StatusUnprocessableEntity, "invalid", "qty: required")
	}
	sc := schedules.Schedule{Vendor: vendor, Location: b.Location, SKU: b.SKU, Kind: b.Kind, Qty: *b.Qty,
		Timing: schedules.Timing{Cron: b.Cron, TimeZone: b.TimeZone, EndsAt: b.EndsAt}}
	if err := sc.Validate(s.now()); err != nil {
		return errorf(http.StatusUnprocessableEntity, "invalid", "%s", err.Error())
	}
	pool, err := s.eng.Pool(c.ctx, sc.Location, sc.SKU)
	if err != nil {
		return err
	}
	if pool.Vendor != vendor {
		return errorf(http.StatusNotFound, "unknown_pool", "vendor %s has no pool %s at %s", vendor, sc.SKU, sc.Location)
	}
	out, err := s.schedules.Create(c.ctx, sc)
	if err != nil {
		return err
	}
	out.NextRun = out.Next(s.now())
	return c.json(http.StatusCreated, out)
}

// listSchedules serves GET /v1/vendors/{vendor}/schedules, each with its next and last run.
func (s *Server) listSchedules(c *call) error {
	vendor, err := s.scheduleCall(c)
	if err != nil {
		return err
	}
	list, err := s.schedules.List(c.ctx, vendor)
	if err != nil {
		return err
	}
	if list == nil {
		list = []schedules.Schedule{}
	}
	for i := range list {
		list[i].NextRun = list[i].Next(s.now())
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "schedules": list})
}

// getSchedule serves GET /v1/vendors/{vendor}/schedules/{id}.
func (s *Server) getSchedule(c *call) error {
	vendor, id, err := s.scheduleTarget(c)
	if err != nil {
		return err
	}
	sc, err := s.schedules.Get(c.ctx, vendor, id)
	if err != nil {
		return err
	}
	sc.NextRun = sc.Next(s.now())
	return c.json(http.StatusOK, sc)
}

// deleteSchedule serves DELETE /v1/vendors/{vendor}/schedules/{id}: it runs no more.
func (s *Server) deleteSchedule(c *call) error {
	vendor, id, err := s.scheduleTarget(c)
	if err != nil {
		return err
	}
	if err := s.schedules.Delete(c.ctx, vendor, id); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"id": id, "status": "deleted"})
}

// scheduleRuns serves GET /v1/vendors/{vendor}/schedules/{id}/runs, newest first.
func (s *Server) scheduleRuns(c *call) error {
	vendor, id, err := s.scheduleTarget(c)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	runs, err := s.schedules.Runs(c.ctx, vendor, id, limit)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []schedules.Run{}
	}
	return c.json(http.StatusOK, map[string]any{"schedule_id": id, "runs": runs})
}
