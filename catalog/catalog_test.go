package catalog

import (
	"strings"
	"testing"
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
