package schedules

import (
	"errors"
	"testing"
	"time"
)

func berlin(t *testing.T, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestDueAfterDowntime: after downtime, the missed occurrences collapse into the latest.
func TestDueAfterDowntime(t *testing.T) {
	s := &Schedule{Kind: "RESTOCK", Qty: 5, Timing: Timing{Cron: "0 6 * * *", TimeZone: "Europe/Berlin"}}
	due, err := s.Due(berlin(t, "2026-06-01 07:00"), berlin(t, "2026-06-04 09:00"))
	if err != nil || !due.Equal(berlin(t, "2026-06-04 06:00")) {
		t.Fatalf("due %s, %v; want the 4th at 06:00 only", due, err)
	}
	if due, _ := s.Due(due, berlin(t, "2026-06-04 09:00")); !due.IsZero() {
		t.Fatalf("due again: %s", due)
	}
	if next := s.Next(berlin(t, "2026-06-04 09:00")); next == nil || !next.Equal(berlin(t, "2026-06-05 06:00")) {
		t.Fatalf("next %v", next)
	}
}

// TestEndsAt: no occurrence after the end, and no next run.
func TestEndsAt(t *testing.T) {
	end := berlin(t, "2026-06-03 12:00")
	s := &Schedule{Kind: "SET", Qty: 50, Timing: Timing{Cron: "0 6 * * *", TimeZone: "Europe/Berlin", EndsAt: &end}}
	if due, _ := s.Due(berlin(t, "2026-06-03 07:00"), berlin(t, "2026-06-09 09:00")); !due.IsZero() {
		t.Fatalf("due after the end: %s", due)
	}
	if next := s.Next(berlin(t, "2026-06-03 07:00")); next != nil {
		t.Fatalf("next after the end: %s", next)
	}
}

// TestClocksGoForward: on the day clocks go forward (Europe/Berlin, 2026-03-29, 02:00 ->
// 03:00) a time in the skipped hour does not occur; other times occur as on any day.
func TestClocksGoForward(t *testing.T) {
	skipped := &Schedule{Kind: "RESTOCK", Qty: 1, Timing: Timing{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"}}
	due, _ := skipped.Due(berlin(t, "2026-03-28 12:00"), berlin(t, "2026-03-29 23:00"))
	if !due.IsZero() {
		t.Fatalf("02:30 occurred on the day without it: %s", due)
	}
	if next := skipped.Next(berlin(t, "2026-03-28 12:00")); next == nil || !next.Equal(berlin(t, "2026-03-30 02:30")) {
		t.Fatalf("next after the 28th: %v, want the 30th", next)
	}
	six := &Schedule{Kind: "RESTOCK", Qty: 1, Timing: Timing{Cron: "0 6 * * *", TimeZone: "Europe/Berlin"}}
	if due, _ := six.Due(berlin(t, "2026-03-28 12:00"), berlin(t, "2026-03-29 23:00")); !due.Equal(berlin(t, "2026-03-29 06:00")) {
		t.Fatalf("06:00 on the 29th: %s", due)
	}
}

// TestClocksGoBack: on the day clocks go back (2026-10-25, 03:00 -> 02:00) 02:30 comes twice;
// both instants have one occurrence key and one transaction id, so the change is made once.
func TestClocksGoBack(t *testing.T) {
	s := &Schedule{ID: 7, Kind: "RESTOCK", Qty: 1, Timing: Timing{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"}}
	cest := time.Date(2026, 10, 25, 0, 45, 0, 0, time.UTC) // 02:45 CEST, before the clocks go back
	first, _ := s.Due(berlin(t, "2026-10-24 12:00"), cest)
	end := time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC) // 03:00 CET, after both
	second, _ := s.Due(first, end)
	if first.IsZero() || second.IsZero() || second.Sub(first) != time.Hour {
		t.Fatalf("02:30 CEST %s, then 02:30 CET %s", first, second)
	}
	if s.OccurrenceKey(first) != s.OccurrenceKey(second) || s.transactionID(first) != s.transactionID(second) {
		t.Fatalf("the repeated 02:30 is another occurrence: %s / %s", s.transactionID(first), s.transactionID(second))
	}
	if s.transactionID(first) != "schedule-7-202610250230" {
		t.Fatalf("transaction id %s", s.transactionID(first))
	}
}

// TestValidate: what a vendor may not send, each answered with the field at fault.
func TestValidate(t *testing.T) {
	now := berlin(t, "2026-06-01 12:00")
	past := now.Add(-time.Hour)
	ok := Schedule{Location: "berlin", SKU: "cap", Kind: "SET", Qty: 50, Timing: Timing{Cron: "0 6 * * *", TimeZone: "Europe/Berlin"}}
	if err := ok.Validate(now); err != nil {
		t.Fatal(err)
	}
	for field, bad := range map[string]func(*Schedule){
		"kind":      func(s *Schedule) { s.Kind = "SPOILAGE" },
		"qty":       func(s *Schedule) { s.Kind, s.Qty = "RESTOCK", 0 },
		"cron":      func(s *Schedule) { s.Cron = "0 6 * *" },
		"time_zone": func(s *Schedule) { s.TimeZone = "Mars/Olympus" },
		"ends_at":   func(s *Schedule) { s.EndsAt = &past },
		"location":  func(s *Schedule) { s.SKU = "" },
	} {
		s := ok
		bad(&s)
		err := s.Validate(now)
		if !errors.Is(err, ErrInvalid) || !contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
