package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/schedules"
)

// Feeds is what the API needs of the vendors' feeds (package feeds).
type Feeds interface {
	Create(ctx context.Context, f feeds.Feed) (feeds.Feed, error)
	List(ctx context.Context, vendor string) ([]feeds.Feed, error)
	Get(ctx context.Context, vendor string, id int64) (feeds.Feed, error)
	Delete(ctx context.Context, vendor string, id int64) error
	Runs(ctx context.Context, id int64, limit int) ([]feeds.Run, error)
}

// WithFeeds enables the vendors' feeds; guard checks their URLs (the webhooks' guard).
func WithFeeds(st Feeds, guard feeds.URLGuard) Option {
	return func(s *Server) { s.feeds, s.feedGuard = st, guard }
}

// feedTarget checks the caller may act for the path's vendor and that feeds are on, and reads
// the path's feed id when there is one.
func (s *Server) feedTarget(c *call) (string, int64, error) {
	vendor, err := c.ledgerVendor(s.feeds != nil, "feeds")
	if err != nil {
		return "", 0, err
	}
	if c.param("id") == "" {
		return vendor, 0, nil
	}
	id, err := strconv.ParseInt(c.param("id"), 10, 64)
	if err != nil || id < 1 {
		return "", 0, errorf(http.StatusNotFound, "feed_not_found", "no feed %q", c.param("id"))
	}
	return vendor, id, nil
}

type feedBody struct {
	URL      string     `json:"url"`
	Format   string     `json:"format"`
	Mode     string     `json:"mode"`
	Cron     string     `json:"cron"`
	TimeZone string     `json:"time_zone"`
	EndsAt   *time.Time `json:"ends_at"`
}

// createFeed serves POST /v1/vendors/{vendor}/feeds.
func (s *Server) createFeed(c *call) error {
	vendor, _, err := s.feedTarget(c)
	if err != nil {
		return err
	}
	var b feedBody
	if err := decodeJSON(c.rc.PostBody(), &b); err != nil {
		return err
	}
	f := feeds.Feed{Vendor: vendor, URL: b.URL, Format: b.Format, Mode: b.Mode, Actor: c.actor(),
		Timing: schedules.Timing{Cron: b.Cron, TimeZone: b.TimeZone, EndsAt: b.EndsAt}}
	if err := f.Validate(c.ctx, s.now(), s.feedGuard); err != nil {
		if errors.Is(err, feeds.ErrInvalid) {
			return errorf(http.StatusUnprocessableEntity, "invalid", "%s", err.Error())
		}
		return err
	}
	out, err := s.feeds.Create(c.ctx, f)
	if err != nil {
		return err
	}
	out.NextRun = out.Next(s.now())
	return c.json(http.StatusCreated, out)
}

// listFeeds serves GET /v1/vendors/{vendor}/feeds, each with its next and last run.
func (s *Server) listFeeds(c *call) error {
	vendor, _, err := s.feedTarget(c)
	if err != nil {
		return err
	}
	list, err := s.feeds.List(c.ctx, vendor)
	if err != nil {
		return err
	}
	if list == nil {
		list = []feeds.Feed{}
	}
	for i := range list {
		list[i].NextRun = list[i].Next(s.now())
	}
	return c.json(http.StatusOK, map[string]any{"vendor_id": vendor, "feeds": list})
}

// getFeed serves GET /v1/vendors/{vendor}/feeds/{id}.
func (s *Server) getFeed(c *call) error {
	vendor, id, err := s.feedTarget(c)
	if err != nil {
		return err
	}
	f, err := s.feeds.Get(c.ctx, vendor, id)
	if err != nil {
		return err
	}
	f.NextRun = f.Next(s.now())
	return c.json(http.StatusOK, f)
}

// deleteFeed serves DELETE /v1/vendors/{vendor}/feeds/{id}: it is fetched no more.
func (s *Server) deleteFeed(c *call) error {
	vendor, id, err := s.feedTarget(c)
	if err != nil {
		return err
	}
	if err := s.feeds.Delete(c.ctx, vendor, id); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"id": id, "status": "deleted"})
}

// feedRuns serves GET /v1/vendors/{vendor}/feeds/{id}/runs, newest first.
func (s *Server) feedRuns(c *call) error {
	vendor, id, err := s.feedTarget(c)
	if err != nil {
		return err
	}
	if _, err := s.feeds.Get(c.ctx, vendor, id); err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 50, 1, 500)
	if err != nil {
		return err
	}
	runs, err := s.feeds.Runs(c.ctx, id, limit)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []feeds.Run{}
	}
	return c.json(http.StatusOK, map[string]any{"feed_id": id, "runs": runs})
}
