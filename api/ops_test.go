package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
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

// TestReadyzDetail: /readyz tells callers without an admin key only ok or unavailable per
// check; an admin key also gets the error text. Not ready is 503 with Retry-After.
func TestReadyzDetail(t *testing.T) {
	const cause = "dial tcp 10.9.8.7:5432: connect: connection refused"
	failing := WithReadiness("postgres", func(context.Context) error { return errors.New(cause) })
	ts := startServer(t, testredis.Standalone(t), nil, failing)
	for _, key := range []string{"", "not-a-key", clientKey, acmeKey} {
		r := ts.do("GET", "/readyz", key, nil).want(t, 503, "")
		checks, _ := r.body["checks"].(map[string]any)
		if checks["postgres"] != "unavailable" || checks["redis"] != "ok" || strings.Contains(string(r.raw), "10.9.8.7") {
			t.Errorf("key %q: %s", key, r.raw)
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("key %q: Retry-After %q", key, r.header.Get("Retry-After"))
		}
	}
	for _, h := range [][]string{{"X-API-Key", adminKey}, {"Authorization", "Bearer " + adminKey}} {
		r := ts.do("GET", "/readyz", "", nil, h...).want(t, 503, "")
		checks, _ := r.body["checks"].(map[string]any)
		if s, _ := checks["postgres"].(string); !strings.Contains(s, cause) || checks["redis"] != "ok" {
			t.Errorf("admin key in %s: %s", h[0], r.raw)
		}
		if r.header.Get("Retry-After") == "" {
			t.Errorf("admin key in %s: no Retry-After", h[0])
		}
	}
	ready := startServer(t, testredis.Standalone(t), nil)
	r := ready.do("GET", "/readyz", "", nil).want(t, 200, "")
	if r.str("status") != "ready" || r.header.Get("Retry-After") != "" {
		t.Errorf("ready: %s, Retry-After %q", r.raw, r.header.Get("Retry-After"))
	}
}
