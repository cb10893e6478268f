package loop

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRunFirstCall: Run calls at once, RunAfter only after one interval.
func TestRunFirstCall(t *testing.T) {
	const interval = 80 * time.Millisecond
	for _, c := range []struct {
		name    string
		run     func(context.Context, time.Duration, time.Duration, func(context.Context) error, func(error)) error
		atLeast time.Duration
	}{{"Run", Run, 0}, {"RunAfter", RunAfter, interval}} {
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		var first time.Duration
		err := c.run(ctx, interval, 0, func(context.Context) error {
			first = time.Since(start)
			cancel()
			return nil
		}, nil)
		if err != nil || first < c.atLeast || c.atLeast == 0 && first >= interval {
			t.Errorf("%s: first call after %s, %v", c.name, first, err)
		}
	}
}

// TestPacedBackoff: failures wait 100 ms, doubling up to the cap; a success resets it and its
// own wait is kept.
func TestPacedBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := []error{errors.New("a"), errors.New("b"), errors.New("c"), nil, errors.New("d")}
	var waits []time.Duration
	calls := 0
	err := Paced(ctx, 150*time.Millisecond, func(context.Context) (time.Duration, error) {
		if calls == len(results) {
			cancel()
			return 0, nil
		}
		calls++
		return time.Millisecond, results[calls-1]
	}, func(_ error, retryIn time.Duration) { waits = append(waits, retryIn) })
	want := []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond}
	if err != nil || !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v (%v)", waits, want, err)
	}
}
