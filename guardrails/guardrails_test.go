package guardrails

import (
	"strings"
	"testing"
)

// TestCheck: which limit a change breaks, and that 0 turns a limit off.
func TestCheck(t *testing.T) {
	l := Limits{MaxChange: 100, MaxRelative: 0.5, Ceiling: 1000}
	for _, c := range []struct {
		before, after int64
		want          string // the rule's name, or "" for none
	}{
		{50, 120, "max_relative"}, // +70 of 50
		{500, 520, ""},            // +20
		{500, 0, "max_change"},    // -500
		{0, 80, ""},               // a pool that had none: no share to compare
		{950, 1010, "ceiling"},    // +60 above the ceiling
		{2000, 1950, ""},          // above the ceiling, but going down
		{400, 620, "max_change"},  // +220
		{10, 14, ""},              // +4 of 10
		{10, 16, "max_relative"},  // +6 of 10
	} {
		got := l.Check(c.before, c.after)
		if c.want == "" && got != "" || c.want != "" && !strings.HasPrefix(got, c.want) {
			t.Errorf("%d -> %d: %q, want %q", c.before, c.after, got, c.want)
		}
	}
	if got := (Limits{}).Check(1, 1_000_000); got != "" || !(Limits{}).Off() {
		t.Errorf("no limits: %q", got)
	}
	if (Limits{MaxChange: -1}).Validate() == nil || (Limits{MaxRelative: -0.1}).Validate() == nil || (Limits{Ceiling: -5}).Validate() == nil {
		t.Error("negative limits accepted")
	}
}
