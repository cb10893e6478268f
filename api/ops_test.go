package api

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestMetricMethodLabels: whatever methods callers make up, the HTTP metrics label only the
// standard ones and OTHER, so the number of series stays bounded.
func TestMetricMethodLabels(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	for i := range 40 {
		method := fmt.Sprintf("MADEUP%d", i)
		ts.do(method, "/healthz", "", nil).want(t, 405, "method_not_allowed")
		ts.do(method, "/no/such/route", "", nil).want(t, 404, "route_not_found")
		ts.do(method, "/v1/holds/x", clientKey, nil).want(t, 405, "method_not_allowed")
	}
	ts.do("GET", "/healthz", "", nil).want(t, 200, "")
	ts.do("DELETE", "/healthz", "", nil).want(t, 405, "method_not_allowed")
	known := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
		"PATCH": true, "OPTIONS": true, "OTHER": true}
	m := ts.do("GET", "/metrics", "", nil).want(t, 200, "")
	seen := map[string]bool{}
	for _, g := range regexp.MustCompile(`method="([^"]*)"`).FindAllStringSubmatch(string(m.raw), -1) {
		if !known[g[1]] && !seen[g[1]] {
			t.Errorf("metric label method=%q", g[1])
		}
		seen[g[1]] = true
	}
	for _, want := range []string{"GET", "DELETE", "OTHER"} {
		if !seen[want] {
			t.Errorf("no series with method=%q", want)
		}
	}
	series := regexp.MustCompile(`(?m)^flashhold_http_requests_total\{`).FindAllIndex(m.raw, -1)
	if len(series) > 10 {
		t.Errorf("%d request counter series after 120 requests over 3 routes with made-up methods", len(series))
	}
}
