package ledger

import (
	"context"
	"fmt"
	"testing"

	"github.com/flashhold/flashhold/engine"
)

// TestRegionDeleteNotUndone: a copy of the regions read from Redis before a region was
// deleted, and written after the delete, does not bring it back; a copy read after (the
// region made again) does.
func TestRegionDeleteNotUndone(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	r1 := engine.Region{Name: "r1", Strategy: engine.StrategyPriority, Locations: []engine.RegionLocation{{Location: "a"}}}
	names := func() string {
		rs, err := s.Regions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return fmt.Sprint(out)
	}
	sync := func(read func(context.Context) ([]engine.Region, error)) {
		t.Helper()
		if err := s.SyncRegions(ctx, read); err != nil {
			t.Fatal(err)
		}
	}
	sync(func(context.Context) ([]engine.Region, error) { return []engine.Region{r1}, nil })
	if got := names(); got != "[r1]" {
		t.Fatalf("after the first copy: %s", got)
	}
	// Read from Redis, then deleted (by the API), then the stale copy written.
	sync(func(ctx context.Context) ([]engine.Region, error) {
		if err := s.DeleteRegion(ctx, "r1"); err != nil {
			return nil, err
		}
		return []engine.Region{r1}, nil
	})
	if got := names(); got != "[]" {
		t.Fatalf("a copy read before the delete brought the region back: %s", got)
	}
	sync(func(context.Context) ([]engine.Region, error) { return nil, nil }) // an empty Redis removes nothing
	sync(func(context.Context) ([]engine.Region, error) { return []engine.Region{r1}, nil })
	if got := names(); got != "[r1]" {
		t.Fatalf("the region made again: %s", got)
	}
}
