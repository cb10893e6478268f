package catalog

import (
	"context"
	"strings"
	"testing"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testredis"
)

func TestParseCSV(t *testing.T) {
	in := "sku, location ,vendor,stock,shards,customer_limit\n" +
		"a,s1,v,10,4,2\n" +
		"b,s1,v,abc\n" +
		"c,s1,v,\n" +
		"\"d,s1,v,3\n"
	rows, bad, err := Parse(strings.NewReader(in), "csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0] != (Row{Location: "s1", SKU: "a", Vendor: "v", Stock: 10, Shards: 4, CustomerLimit: 2, Line: 2}) {
		t.Fatalf("rows %+v", rows)
	}
	want := []string{`line 3: stock: "abc" is not a whole number`, "line 4: stock: required", "line 5:"}
	if len(bad) != len(want) {
		t.Fatalf("bad rows %v", bad)
	}
	for i, w := range want {
		if !strings.HasPrefix(bad[i].Error(), w) {
			t.Errorf("bad[%d] = %q, want prefix %q", i, bad[i].Error(), w)
		}
	}
}

func TestParseRefusesWholeFile(t *testing.T) {
	for _, tc := range []struct{ in, format string }{
		{"location,sku,stock\ns1,a,1\n", "csv"}, // no vendor column
		{"", "csv"},
		{`[{"location":"s1","sku":"a","bogus":1}]`, "json"},
		{`{"location":"s1"}`, "json"},
		{"x", "xml"},
	} {
		if _, _, err := Parse(strings.NewReader(tc.in), tc.format); err == nil {
			t.Errorf("%s %q: no error", tc.format, tc.in)
		}
	}
	rows, _, err := Parse(strings.NewReader(`[{"location":"s1","sku":"a","vendor":"v","stock":5}]`), "json")
	if err != nil || len(rows) != 1 || rows[0].Shards != 1 || rows[0].Stock != 5 {
		t.Fatalf("json: %+v %v", rows, err)
	}
}

// TestLoadMissingOnly: a load that names only missing pools leaves a pool that exists (and
// its sales) alone, whenever it runs, and creates and stocks the ones that do not.
func TestLoadMissingOnly(t *testing.T) {
	ctx := context.Background()
	e := testengine.New(t, testredis.Standalone(t), nil)
	rows, _, err := Parse(strings.NewReader("location,sku,vendor,stock,shards\ns1,a,v1,10,1\n"), "csv")
	if err != nil {
		t.Fatal(err)
	}
	if n, bad := Load(ctx, e, rows, "test", LoadOptions{}); n != 1 || len(bad) != 0 {
		t.Fatalf("first load: %d, %v", n, bad)
	}
	h, err := e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "a", Qty: 3}}, IdempotencyKey: "k", Actor: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(ctx, h.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	more, _, _ := Parse(strings.NewReader("location,sku,vendor,stock,shards\ns1,a,v1,10,1\ns1,b,v1,5,2\n"), "csv")
	if n, bad := Load(ctx, e, more, "test", LoadOptions{MissingOnly: true}); n != 1 || len(bad) != 0 {
		t.Fatalf("missing-only load: %d loaded (want b alone), %v", n, bad)
	}
	if n, bad := Load(ctx, e, more, "test", LoadOptions{MissingOnly: true, Reset: "another load"}); n != 0 || len(bad) != 0 {
		t.Fatalf("missing-only load after the idempotency window: %d loaded (want none), %v", n, bad)
	}
	a, _ := e.Availability(ctx, "s1", "a")
	b, _ := e.Availability(ctx, "s1", "b")
	if a.Available != 7 || b.Available != 5 {
		t.Fatalf("after missing-only loads: a has %d (want 7: 10 less the 3 sold), b %d (want 5)", a.Available, b.Available)
	}
}

// TestLoadKeepsWhatTheFileLacks: loading a stock file over a pool keeps the settings the file
// has no column for (safety stock, the window of the customer limit, substitutes, best-before,
// the inventory policy).
func TestLoadKeepsWhatTheFileLacks(t *testing.T) {
	ctx := context.Background()
	e := testengine.New(t, testredis.Standalone(t), nil)
	cfg := engine.PoolConfig{Location: "s1", SKU: "a", Vendor: "v1", Shards: 1, CustomerLimit: 2, CustomerWindow: 60_000,
		SafetyStock: 3, BestBefore: 4_102_444_800_000}
	if err := e.CreatePool(ctx, cfg, "test"); err != nil {
		t.Fatal(err)
	}
	pre := engine.PoolConfig{Location: "s1", SKU: "p", Vendor: "v1", Shards: 1, Policy: engine.PolicyPreorder, BackorderLimit: 5,
		ReleaseAt: 4_102_444_800_000}
	if err := e.CreatePool(ctx, pre, "test"); err != nil {
		t.Fatal(err)
	}
	rows, _, err := Parse(strings.NewReader("location,sku,vendor,stock,shards,customer_limit\ns1,a,v1,10,1,2\ns1,p,v1,0,1,0\n"), "csv")
	if err != nil {
		t.Fatal(err)
	}
	if n, bad := Load(ctx, e, rows, "test", LoadOptions{}); n != 2 || len(bad) != 0 {
		t.Fatalf("load: %d, %v", n, bad)
	}
	if got, err := e.Pool(ctx, "s1", "p"); err != nil || got.Policy != pre.Policy || got.BackorderLimit != 5 || got.ReleaseAt != pre.ReleaseAt {
		t.Fatalf("the preorder pool after the load: %+v %v", got, err)
	}
	got, err := e.Pool(ctx, "s1", "a")
	if err != nil || got.SafetyStock != 3 || got.CustomerWindow != 60_000 || got.BestBefore != cfg.BestBefore {
		t.Fatalf("after the load: %+v %v", got, err)
	}
	if a, _ := e.Availability(ctx, "s1", "a"); a.Available != 7 || a.Buffered != 3 {
		t.Fatalf("after the load: %d available, %d buffered; want 7 and 3", a.Available, a.Buffered)
	}
}
