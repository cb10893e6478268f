package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// Keys the test servers accept (the hashes are computed from these).
const (
	clientKey = "test-client-key"
	acmeKey   = "test-acme-key"
	bistroKey = "test-bistro-key"
	adminKey  = "test-admin-key"
	slowKey   = "test-slow-key" // 2 requests per second
	otherKey  = "test-other-shop-key"
)

func testKeys() []KeySpec {
	return []KeySpec{
		{ID: "shop", SHA256: HashKey(clientKey), Role: RoleClient},
		{ID: "acme-ops", SHA256: HashKey(acmeKey), Role: RoleVendor, Vendor: "acme"},
		{ID: "bistro-ops", SHA256: HashKey(bistroKey), Role: RoleVendor, Vendor: "bistro"},
		{ID: "admin", SHA256: HashKey(adminKey), Role: RoleAdmin},
		{ID: "slow", SHA256: HashKey(slowKey), Role: RoleClient, RateLimit: 2},
		{ID: "other-shop", SHA256: HashKey(otherKey), Role: RoleClient},
	}
}

// testServer is a running API server on a loopback port.
type testServer struct {
	t     testing.TB
	url   string
	srv   *Server
	eng   *engine.Engine
	clock *testengine.Clock
	http  *http.Client
}

func apiConfig() Config {
	return Config{RateLimit: 10000, RateBurst: 10000, MaxBody: 1 << 20, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, RequestTimeout: 5 * time.Second,
		BulkMaxRows: 500, BulkWorkers: 4}
}

// startServer runs a server over a fresh key prefix of rdb, with a fake engine clock.
func startServer(t testing.TB, rdb redis.UniversalClient, mod func(*Config), opts ...Option) *testServer {
	t.Helper()
	clk := testengine.NewClock()
	eng := testengine.New(t, rdb, nil, engine.WithClock(clk.Now))
	cfg := apiConfig()
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, eng, testKeys(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	ts := &testServer{t: t, url: "http://" + ln.Addr().String(), srv: srv, eng: eng, clock: clk,
		http: &http.Client{Timeout: 10 * time.Second}}
	ts.seed()
	return ts
}

// seed creates the pools most tests use.
func (ts *testServer) seed() {
	ctx := context.Background()
	for _, p := range []struct {
		cfg   engine.PoolConfig
		stock int64
	}{
		{engine.PoolConfig{Location: "berlin", SKU: "sneaker", Vendor: "acme", Shards: 4, LowStock: 5}, 20},
		{engine.PoolConfig{Location: "berlin", SKU: "cap", Vendor: "acme", Shards: 1, LowStock: 5}, 10},
		{engine.PoolConfig{Location: "berlin", SKU: "limited", Vendor: "acme", Shards: 2, CustomerLimit: 2}, 50},
		{engine.PoolConfig{Location: "lyon", SKU: "meal", Vendor: "bistro", Shards: 1}, 5},
	} {
		if err := ts.eng.CreatePool(ctx, p.cfg, "test"); err != nil {
			ts.t.Fatal(err)
		}
		if _, err := ts.eng.Adjust(ctx, engine.AdjustRequest{Location: p.cfg.Location, SKU: p.cfg.SKU, Kind: engine.Set,
			Qty: p.stock, TransactionID: "seed-" + p.cfg.SKU, Actor: "test"}); err != nil {
			ts.t.Fatal(err)
		}
	}
}

type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends a request; body may be a string (sent as is) or a value (sent as JSON).
func (ts *testServer) do(method, path, key string, body any, headers ...string) response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.http.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &out.body)
	return out
}

// want checks the status and, for errors, the JSON error code.
func (r response) want(t *testing.T, status int, code string) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if code != "" {
		e, _ := r.body["error"].(map[string]any)
		if e == nil || e["code"] != code || e["message"] == "" {
			t.Fatalf("error body %s, want code %q with a message", r.raw, code)
		}
	}
	return r
}

func (r response) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

func (r response) num(k string) int64 {
	f, _ := r.body[k].(float64)
	return int64(f)
}

// seqs reads every partition's event seq: unchanged seqs mean unchanged state.
func (ts *testServer) seqs() []int64 {
	ts.t.Helper()
	out := make([]int64, ts.eng.Partitions())
	for p := range out {
		s, err := ts.eng.Snapshot(context.Background(), p)
		if err != nil {
			ts.t.Fatal(err)
		}
		out[p] = s.Seq
	}
	return out
}
