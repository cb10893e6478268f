package engine

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// loadOldLibrary loads, on every node, a library named like an old version of flashhold's
// (deleted again when the test ends) and returns its name.
func loadOldLibrary(t *testing.T, e *Engine, tag string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("flashhold_%s%x", tag, time.Now().UnixNano())
	code := fmt.Sprintf("#!lua name=%s\nredis.register_function('%s_noop', function() return 1 end)", name, name)
	if err := e.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error { return node.FunctionLoad(ctx, code).Err() }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.DeleteLibraries(ctx, []string{name}) })
	return name
}

// libraries lists the libraries by name.
func libraries(t *testing.T, e *Engine) map[string]Library {
	t.Helper()
	libs, err := e.Libraries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Library{}
	for _, l := range libs {
		out[l.Name] = l
	}
	return out
}

// TestLibraries: an old version of the library left in Redis is listed on every node that
// holds it and can be deleted there; the engine's own library and foreign names cannot be.
func TestLibraries(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEngine(t, rdb, nil)
		var count atomic.Int32 // ForEachMaster runs the function on every master at once
		_ = e.forEachNode(ctx, func(context.Context, *redis.Client) error { count.Add(1); return nil })
		nodes := int(count.Load())
		old := loadOldLibrary(t, e, "test")

		libs := libraries(t, e)
		if l := libs[e.lib]; !l.Current || l.Nodes != nodes {
			t.Fatalf("own library %s listed as %+v on %d nodes", e.lib, l, nodes)
		}
		if l := libs[old]; l.Current || l.Nodes != nodes {
			t.Fatalf("old library %s listed as %+v on %d nodes", old, l, nodes)
		}
		for _, bad := range [][]string{{e.lib}, {"mylib"}, {old, e.lib}} {
			if _, err := e.DeleteLibraries(ctx, bad); !isValidation(err, "library") {
				t.Fatalf("delete %v: got %v, want a library error", bad, err)
			}
		}
		if n, err := e.DeleteLibraries(ctx, []string{old}); err != nil || n != nodes {
			t.Fatalf("delete %s: %d deletions, %v; want %d", old, n, err, nodes)
		}
		if n, err := e.DeleteLibraries(ctx, []string{old}); err != nil || n != 0 {
			t.Fatalf("delete %s again: %d deletions, %v; want 0", old, n, err)
		}
		if l, ok := libraries(t, e)[old]; ok {
			t.Fatalf("%s still listed after its deletion: %+v", old, l)
		}
		makePool(t, e, PoolConfig{Location: "s1", SKU: "x", Shards: 1}, 5)
		mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "x", Qty: 1}}, IdempotencyKey: "after", Actor: "shop"})
	})
}

// TestPruneLibraries (on the test's own cluster, where no other build's library is in use):
// pruning deletes every old version except those kept, and never the engine's own.
func TestPruneLibraries(t *testing.T) {
	e := newEngine(t, testredisCluster(t), nil)
	gone, kept := loadOldLibrary(t, e, "prune"), loadOldLibrary(t, e, "keep")
	deleted, err := e.PruneLibraries(context.Background(), []string{kept})
	if err != nil || len(deleted) != 1 || deleted[0] != gone {
		t.Fatalf("pruned %v, %v; want only %s", deleted, err, gone)
	}
	left := libraries(t, e)
	if _, ok := left[kept]; len(left) != 2 || !left[e.lib].Current || !ok {
		t.Fatalf("left %+v; want %s and the kept %s", left, e.lib, kept)
	}
}

func isValidation(err error, field string) bool {
	ve, ok := err.(*ValidationError)
	return ok && ve.Field == field
}
