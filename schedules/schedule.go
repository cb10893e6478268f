// Package schedules applies vendors' recurring stock rules: SET a pool to a count, or RESTOCK
// it by a number of units, at each occurrence of a cron expression in a time zone, until an
// optional end. Each occurrence is applied once across any number of instances: one instance
// at a time runs the schedules (a lease in Redis), and each occurrence's change carries a
// transaction id derived from the schedule and the occurrence, which the engine applies once.
package schedules

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/flashhold/flashhold/engine"
)

// Schedule is one recurring stock rule of one pool.
type Schedule struct {
	ID       int64  `json:"id"`
	Vendor   string `json:"vendor_id"`
	Location string `json:"location"`
	SKU      string `json:"sku"`
	// Kind is SET (available := Qty) or RESTOCK (available += Qty).
	Kind    string    `json:"kind"`
	Qty     int64     `json:"qty"`
	Timing            // cron, time_zone, ends_at
	Created time.Time `json:"created_at"`
	// LastRun is the last occurrence dealt with, LastResult what came of it.
	LastRun    *time.Time `json:"last_run_at,omitempty"`
	LastResult string     `json:"last_result,omitempty"`
	// NextRun is the next occurrence (absent once the schedule has ended).
	NextRun *time.Time `json:"next_run_at,omitempty"`
}

// Timing is when something recurs: at each occurrence of a cron expression in a time zone,
// until an optional end (schedules, and vendors' feeds).
type Timing struct {
	Cron     string     `json:"cron"`
	TimeZone string     `json:"time_zone"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
}

// Run is what came of one occurrence.
type Run struct {
	Schedule int64 `json:"schedule_id"`
	// Occurrence is the wall-clock time in the schedule's zone (2006-01-02T15:04); OccurredAt
	// the instant.
	Occurrence    string    `json:"occurrence"`
	OccurredAt    time.Time `json:"occurred_at"`
	RanAt         time.Time `json:"ran_at"`
	TransactionID string    `json:"transaction_id"`
	// Result: applied, replayed (the change was made before, e.g. by another instance),
	// or failed (Error says why).
	Result   string `json:"result"`
	Previous *int64 `json:"previous_available,omitempty"`
	New      *int64 `json:"new_available,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Run results.
const (
	Applied  = "applied"
	Replayed = "replayed"
	Failed   = "failed"
)

// parser reads the five standard cron fields (minute hour day-of-month month day-of-week),
// and the descriptors @hourly, @daily, @weekly, @monthly, @yearly.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrInvalid wraps what is wrong with a schedule; the message names the field.
var ErrInvalid = errors.New("invalid schedule")

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks a schedule as a vendor sends it, at now.
func (s *Schedule) Validate(now time.Time) error {
	switch {
	case s.Kind != engine.Set && s.Kind != engine.Restock:
		return invalid("kind", "must be SET or RESTOCK, got %q", s.Kind)
	case s.Kind == engine.Set && s.Qty < 0:
		return invalid("qty", "SET needs a count of 0 or more, got %d", s.Qty)
	case s.Kind == engine.Restock && s.Qty < 1:
		return invalid("qty", "RESTOCK needs at least 1 unit, got %d", s.Qty)
	case s.Location == "" || s.SKU == "":
		return invalid("location", "location and sku are required")
	}
	return s.Timing.Validate(now)
}

// Validate checks a timing as a vendor sends it, at now.
func (s *Timing) Validate(now time.Time) error {
	if s.EndsAt != nil && !s.EndsAt.After(now) {
		return invalid("ends_at", "must be in the future")
	}
	_, _, err := s.spec()
	return err
}

// spec parses the cron expression and loads the time zone.
func (s *Timing) spec() (cron.Schedule, *time.Location, error) {
	if s.TimeZone == "" {
		return nil, nil, invalid("time_zone", "required, e.g. Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return nil, nil, invalid("time_zone", "unknown zone %q", s.TimeZone)
	}
	sp, err := parser.Parse(s.Cron)
	if err != nil {
		return nil, nil, invalid("cron", "%v (five fields: minute hour day-of-month month day-of-week)", err)
	}
	return sp, loc, nil
}

// maxSteps bounds the occurrences walked to find the latest one due (a minute-by-minute
// schedule is a week of occurrences): a schedule that was off longer applies its latest.
const maxSteps = 10080

// Due is the latest occurrence after after and at or before now (zero: none), in the
// schedule's zone. After downtime the missed occurrences collapse into this one.
func (s *Timing) Due(after, now time.Time) (time.Time, error) {
	sp, loc, err := s.spec()
	if err != nil {
		return time.Time{}, err
	}
	if s.EndsAt != nil && now.After(*s.EndsAt) {
		now = *s.EndsAt
	}
	if d := now.Sub(after); d > maxSteps*time.Minute {
		after = now.Add(-maxSteps * time.Minute) // older occurrences would be passed over anyway
	}
	var last time.Time
	for t, i := sp.Next(after.In(loc)), 0; !t.IsZero() && !t.After(now) && i < maxSteps; t, i = sp.Next(t), i+1 {
		last = t
	}
	return last, nil
}

// Next is the first occurrence after now (nil: none before the schedule ends).
func (s *Timing) Next(now time.Time) *time.Time {
	sp, loc, err := s.spec()
	if err != nil {
		return nil
	}
	t := sp.Next(now.In(loc))
	if t.IsZero() || s.EndsAt != nil && t.After(*s.EndsAt) {
		return nil
	}
	return &t
}

// OccurrenceKey is an occurrence's wall-clock time in the zone: the hour repeated when clocks
// go back gives two instants with one key, dealt with once.
func (s *Timing) OccurrenceKey(t time.Time) string {
	_, loc, _ := s.spec()
	return t.In(loc).Format("2006-01-02T15:04")
}

// transactionID is the engine transaction of an occurrence: the same for every instance and
// every retry, so the change is made once.
func (s *Schedule) transactionID(t time.Time) string {
	_, loc, _ := s.spec()
	return "schedule-" + strconv.FormatInt(s.ID, 10) + "-" + t.In(loc).Format("200601021504")
}
