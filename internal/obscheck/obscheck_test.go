// Package obscheck checks flashhold's observability against the running service: every
// metric that the Prometheus rules and the Grafana dashboard under deploy/observability name
// is one it exports, and its OpenTelemetry spans (tracing_test.go).
package obscheck

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/app"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

const (
	clientKey = "obs-client-key"
	adminKey  = "obs-admin-key"
)

// metricName is a flashhold metric in PromQL or in an exposition; recording rules
// (flashhold:…) do not match.
var metricName = regexp.MustCompile(`\bflashhold_[a-z0-9_]+`)

func TestRulesAndDashboardNameExportedMetrics(t *testing.T) {
	base := startServe(t)

	sell(t, base, nil)

	wanted := map[string][]string{} // metric -> files that name it
	for _, f := range []string{"prometheus/rules.yml", "grafana/flashhold.json"} {
		for _, name := range namesIn(t, f) {
			wanted[name] = append(wanted[name], f)
		}
	}
	if len(wanted) < 20 {
		t.Fatalf("the rules and the dashboard name only %d flashhold metrics; the parser misses some", len(wanted))
	}

	// The background services publish their series after their first pass.
	var missing []string
	testwait.For(20*time.Second, func() bool {
		exported := exportedNames(t, base)
		missing = missing[:0]
		for name := range wanted {
			if !exported[name] {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0
	})
	sort.Strings(missing)
	for _, name := range missing {
		t.Errorf("%s (named in %s) is not in /metrics", name, strings.Join(wanted[name], ", "))
	}
}

// startServe runs flashhold in process on a Redis prefix and a Postgres schema of the test's
// own, with every background service on; it stops when the test ends.
func startServe(t *testing.T, opts ...app.Option) string {
	t.Helper()
	rdb := testredis.Standalone(t)
	prefix := testredis.Prefix(t, rdb)
	pg, _ := testpg.Schema(t)

	cfg := config.Default()
	cfg.Engine.Prefix = prefix
	cfg.API.Addr = "127.0.0.1:0"
	cfg.MigrateOnStart = true
	cfg.Reconcile.Every = time.Second // so the reconcile series exist
	cfg.ShutdownTimeout = 5 * time.Second
	keys := []api.KeySpec{
		{ID: "obs-client", SHA256: api.HashKey(clientKey), Role: api.RoleClient, RateLimit: -1},
		{ID: "obs-admin", SHA256: api.HashKey(adminKey), Role: api.RoleAdmin, RateLimit: -1},
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zerolog.Nop(), append([]app.Option{app.WithRedis(rdb), app.WithPostgres(pg), app.WithKeys(keys)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; a.Close() })
	return "http://" + a.Addr()
}

// sell places a hold on a pool of one unit, commits it, and is refused a second hold; it
// returns the hold's id.
func sell(t *testing.T, base string, extra http.Header) string {
	t.Helper()
	call(t, base, http.MethodPut, "/v1/pools/obs-store/obs-sku", adminKey, "", `{"vendor":"obsv","shards":1}`, http.StatusOK)
	call(t, base, http.MethodPost, "/v1/vendors/obsv/inventory/obs-sku/update", adminKey, "stock-1",
		`{"location":"obs-store","stock_quantity":1}`, http.StatusOK)
	var hold struct {
		ID string `json:"hold_id"`
	}
	body := call(t, base, http.MethodPost, "/v1/holds", clientKey, "order-1", `{"location":"obs-store","sku":"obs-sku"}`, http.StatusCreated, extra)
	if err := json.Unmarshal(body, &hold); err != nil || hold.ID == "" {
		t.Fatalf("reserve answered %s", body)
	}
	call(t, base, http.MethodPost, "/v1/holds/"+hold.ID+"/commit", clientKey, "", "", http.StatusOK)
	call(t, base, http.MethodPost, "/v1/holds", clientKey, "order-2", `{"location":"obs-store","sku":"obs-sku"}`, http.StatusConflict)
	return hold.ID
}

// namesIn returns the flashhold metrics that a file under deploy/observability names: for the
// dashboard, in its targets' expressions; for the rules, anywhere (the file holds expressions
// and text about them).
func namesIn(t *testing.T, rel string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "observability", rel))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	if strings.HasSuffix(rel, ".json") {
		var exprs []string
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		collectExprs(doc, &exprs)
		if len(exprs) == 0 {
			t.Fatalf("%s: no expressions found", rel)
		}
		text = strings.Join(exprs, "\n")
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range metricName.FindAllString(text, -1) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// collectExprs gathers every "expr" and templating "query" string of a dashboard.
func collectExprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query") {
				*out = append(*out, s)
				continue
			}
			if q, ok := x.(map[string]any); ok && k == "query" {
				if s, ok := q["query"].(string); ok {
					*out = append(*out, s)
				}
			}
			collectExprs(x, out)
		}
	case []any:
		for _, x := range v {
			collectExprs(x, out)
		}
	}
}

// exportedNames scrapes /metrics and returns the names of its samples (histograms appear as
// their _bucket, _sum and _count).
func exportedNames(t *testing.T, base string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, line := range scrape(t, base) {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// metricValue sums the samples of an unlabelled or labelled metric in /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	var sum float64
	for _, line := range scrape(t, base) {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				sum += v
			}
		}
	}
	return sum
}

func call(t *testing.T, base, method, path, key, idem, body string, want int, extra ...http.Header) []byte {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	for _, h := range extra {
		for k, v := range h {
			req.Header[k] = v
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	return raw
}

// scrape reads /metrics and returns its lines.
func scrape(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(raw), "\n")
}
