package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/schedules"
)

// TestSchedulesAPI: a vendor creates, lists, reads and deletes stock schedules; bad input is
// answered with the field at fault and stores nothing.
func TestSchedulesAPI(t *testing.T) {
	t.Parallel()
	pool := ledgerSchema(t)
	rdb := testredis.Standalone(t)
	ts := startServer(t, rdb, nil, WithSchedules(schedules.NewStore(pool)))
	good := map[string]any{"location": "berlin", "sku": "sneaker", "kind": "RESTOCK", "qty": 5, "cron": "0 6 * * *", "time_zone": "Europe/Berlin"}
	with := func(k string, v any) map[string]any {
		b := map[string]any{}
		for kk, vv := range good {
			b[kk] = vv
		}
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	for field, body := range map[string]map[string]any{
		"kind":      with("kind", "SPOILAGE"),
		"qty":       with("qty", nil),
		"cron":      with("cron", "0 6 * *"),
		"time_zone": with("time_zone", "Mars/Olympus"),
		"ends_at":   with("ends_at", "2001-01-01T00:00:00Z"),
	} {
		r := ts.do("POST", "/v1/vendors/acme/schedules", acmeKey, body).want(t, 422, "invalid")
		if !strings.Contains(string(r.raw), field) {
			t.Errorf("%s: %s", field, r.raw)
		}
	}
	ts.do("POST", "/v1/vendors/acme/schedules", acmeKey, "{").want(t, 400, "bad_request")
	ts.do("POST", "/v1/vendors/acme/schedules", acmeKey, with("sku", "no-such")).want(t, 404, "unknown_pool")
	ts.do("POST", "/v1/vendors/acme/schedules", acmeKey, with("location", "lyon")).want(t, 404, "unknown_pool")
	ts.do("POST", "/v1/vendors/bistro/schedules", acmeKey, good).want(t, 403, "forbidden")
	if r := ts.do("GET", "/v1/vendors/acme/schedules", acmeKey, nil).want(t, 200, ""); len(r.body["schedules"].([]any)) != 0 {
		t.Fatalf("bad input stored a schedule: %s", r.raw)
	}

	created := ts.do("POST", "/v1/vendors/acme/schedules", acmeKey, good).want(t, 201, "")
	id := fmt.Sprint(created.body["id"])
	if created.str("next_run_at") == "" || created.str("kind") != "RESTOCK" {
		t.Fatalf("created %s", created.raw)
	}
	if r := ts.do("GET", "/v1/vendors/acme/schedules", acmeKey, nil).want(t, 200, ""); len(r.body["schedules"].([]any)) != 1 {
		t.Fatalf("list %s", r.raw)
	}
	ts.do("GET", "/v1/vendors/acme/schedules/"+id, acmeKey, nil).want(t, 200, "")
	if r := ts.do("GET", "/v1/vendors/acme/schedules/"+id+"/runs", acmeKey, nil).want(t, 200, ""); len(r.body["runs"].([]any)) != 0 {
		t.Fatalf("runs %s", r.raw)
	}
	ts.do("GET", "/v1/vendors/bistro/schedules/"+id, bistroKey, nil).want(t, 404, "schedule_not_found")
	ts.do("GET", "/v1/vendors/acme/schedules/x", acmeKey, nil).want(t, 404, "schedule_not_found")
	ts.do("DELETE", "/v1/vendors/acme/schedules/"+id, acmeKey, nil).want(t, 200, "")
	ts.do("DELETE", "/v1/vendors/acme/schedules/"+id, acmeKey, nil).want(t, 404, "schedule_not_found")
	ts.do("GET", "/v1/vendors/acme/schedules/"+id+"/runs", acmeKey, nil).want(t, 404, "schedule_not_found")

	none := startServer(t, rdb, nil)
	none.do("GET", "/v1/vendors/acme/schedules", acmeKey, nil).want(t, 503, "schedules_unavailable")
}
