package api

import (
	"fmt"
	"testing"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestFollowPartition: ?partition= follows one partition: next_after is always there, a poll
// with it returns what came since and nothing twice; bad partitions and cursors of another
// partition are refused. (Over the ledger, ledger TestFollowEvents: never past a missing seq.)
func TestFollowPartition(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testredis.Standalone(t), nil)
	part := ts.eng.PartitionOf("lyon", "meal", 0)
	path := fmt.Sprintf("/v1/inventory/events?partition=%d", part)
	r := ts.do("GET", path, bistroKey, nil).want(t, 200, "")
	if n := len(r.body["events"].([]any)); n != 1 || r.str("next_after") == "" {
		t.Fatalf("bistro's partition %d from its start: %s", part, r.raw)
	}
	next := r.str("next_after")
	if again := ts.do("GET", path+"&after="+next, bistroKey, nil).want(t, 200, ""); len(again.body["events"].([]any)) != 0 || again.str("next_after") != next {
		t.Fatalf("polled again with nothing new: %s", again.raw)
	}
	ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "lyon", "sku": "meal", "qty": 1}, "Idempotency-Key", "f1").want(t, 201, "")
	r = ts.do("GET", path+"&after="+next, bistroKey, nil).want(t, 200, "")
	if evs := r.body["events"].([]any); len(evs) != 1 || evs[0].(map[string]any)["type"] != "RESERVED" || r.str("next_after") == next {
		t.Fatalf("after a hold: %s", r.raw)
	}
	for _, bad := range []string{"-1", "99999", "x"} {
		ts.do("GET", "/v1/inventory/events?partition="+bad, bistroKey, nil).want(t, 422, "invalid")
	}
	ts.do("GET", fmt.Sprintf("%s&after=%d:1", path, part+1), bistroKey, nil).want(t, 422, "invalid")
	ts.do("GET", path+"&hold_id=x", bistroKey, nil).want(t, 422, "invalid")
}
