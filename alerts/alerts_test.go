package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
	"github.com/flashhold/flashhold/ledger"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func testConfig() Config {
	return Config{Group: "alerts", Interval: 10 * time.Millisecond, Batch: 1000, Hysteresis: 0.1, Cooldown: 0,
		Allow: []string{"127.0.0.1"}, Timeout: 2 * time.Second, MaxAttempts: 3, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
}

type fixture struct {
	e     *engine.Engine
	store *Store
	det   *Detector
	del   *Deliverer
	clk   *testengine.Clock
}

func setup(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := testengine.NewClock()
	e := testengine.New(t, testredis.Standalone(t), func(c *engine.Config) { c.SoldOutMemory = 0 }, engine.WithClock(clk.Now))
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	policy, err := NewURLPolicy(cfg.Allow)
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(pool, policy)
	return &fixture{e: e, store: st, det: NewDetector(e, st, cfg, zerolog.Nop(), clk.Now), del: NewDeliverer(st, cfg, zerolog.Nop()), clk: clk}
}

// receiver records what it is sent; fail decides, per call number, to answer 500.
type receiver struct {
	mu    sync.Mutex
	got   []*http.Request
	body  [][]byte
	calls atomic.Int32
	fail  func(n int32) bool
	srv   *httptest.Server
}

func newReceiver(t *testing.T, fail func(int32) bool) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := r.calls.Add(1)
		body, _ := io.ReadAll(req.Body)
		if r.fail != nil && r.fail(n) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.mu.Lock()
		r.got, r.body = append(r.got, req), append(r.body, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (f *fixture) reserve(t *testing.T, sku string, qty int64, key string) string {
	t.Helper()
	h, err := f.e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: sku, Qty: qty}}, IdempotencyKey: key, Actor: "shop"})
	if err != nil {
		t.Fatalf("reserve %d: %v", qty, err)
	}
	return h.ID
}

func (f *fixture) detect(t *testing.T) []string {
	t.Helper()
	raised, err := f.det.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, a := range raised {
		types = append(types, a.Type)
	}
	return types
}

// TestScriptedCrossings: a receiver gets exactly the crossings a scripted workload causes, in
// order, each signed; a count hovering at the threshold raises nothing.
func TestScriptedCrossings(t *testing.T) {
	ctx := context.Background()
	f := setup(t, testConfig())
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "cap", Shards: 1, LowStock: 5}, 10)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "quiet", Shards: 1, LowStock: 5, Vendor: "other"}, 10)
	rcv := newReceiver(t, nil)
	sub, err := f.store.Subscribe(ctx, "v1", rcv.srv.URL+"/hook", Types)
	if err != nil {
		t.Fatal(err)
	}
	f.detect(t) // joins the streams: alerts are about what happens from now on

	step := func(want string, do func()) {
		t.Helper()
		do()
		if got := strings.Join(f.detect(t), ","); got != want {
			t.Fatalf("want alerts %q, got %q", want, got)
		}
	}
	var a, b string
	step("LOW_STOCK", func() { a = f.reserve(t, "cap", 6, "a") })    // 10 -> 4
	step("OUT_OF_STOCK", func() { b = f.reserve(t, "cap", 4, "b") }) // 4 -> 0
	step("BACK_IN_STOCK", func() { f.e.Release(ctx, b, "shop") })    // 0 -> 4
	step("", func() { f.e.Release(ctx, a, "shop") })                 // 4 -> 10: restocked, re-armed
	step("", func() { f.reserve(t, "cap", 5, "c") })                 // 10 -> 5: at the threshold
	step("LOW_STOCK", func() { f.reserve(t, "cap", 1, "d") })        // 5 -> 4
	for i, q := range []int64{1, -1, 1, -1} {                        // hovering at 4..5
		step("", func() {
			if q > 0 {
				f.e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "cap", Kind: engine.Restock, Qty: 1, TransactionID: "h" + string(rune('0'+i)), Actor: "v"})
			} else {
				f.reserve(t, "cap", 1, "h"+string(rune('0'+i)))
			}
		})
	}
	step("", func() { f.reserve(t, "quiet", 2, "q") }) // another vendor's pool, above its threshold

	for range 20 {
		if n, err := f.del.RunOnce(ctx); err != nil || n == 0 {
			break
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	type got struct{ id, typ string }
	var seen []got
	for i, req := range rcv.got {
		if !Verify(sub.Secret, req.Header.Get(HeaderTimestamp), rcv.body[i], req.Header.Get(HeaderSignature)) {
			t.Fatalf("delivery %d: signature does not verify", i)
		}
		var body Alert
		json.Unmarshal(rcv.body[i], &body)
		if body.Type != req.Header.Get(HeaderEventType) || body.EventID != req.Header.Get(HeaderEventID) || body.SKU != "cap" {
			t.Fatalf("delivery %d: %s", i, rcv.body[i])
		}
		seen = append(seen, got{body.EventID, body.Type})
	}
	sort.Slice(seen, func(i, j int) bool {
		return len(seen[i].id) < len(seen[j].id) || (len(seen[i].id) == len(seen[j].id) && seen[i].id < seen[j].id)
	})
	var types []string
	for _, s := range seen {
		types = append(types, s.typ)
	}
	if strings.Join(types, ",") != "LOW_STOCK,OUT_OF_STOCK,BACK_IN_STOCK,LOW_STOCK" {
		t.Fatalf("receiver got %v", types)
	}
	// A forged or altered delivery does not verify.
	if Verify(sub.Secret, rcv.got[0].Header.Get(HeaderTimestamp), append(rcv.body[0], ' '), rcv.got[0].Header.Get(HeaderSignature)) {
		t.Fatal("an altered body verified")
	}
	list, _ := f.store.Alerts(ctx, "v1", 0, 100)
	if len(list) != 4 {
		t.Fatalf("%d alerts recorded", len(list))
	}
}

// TestRetriesAndDeadLetters: a receiver that fails twice then recovers gets the alert on the
// third attempt; one that never recovers is dead-lettered and listed.
func TestRetriesAndDeadLetters(t *testing.T) {
	ctx := context.Background()
	f := setup(t, testConfig())
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "x", Shards: 1, LowStock: 5}, 10)
	flaky := newReceiver(t, func(n int32) bool { return n <= 2 })
	broken := newReceiver(t, func(int32) bool { return true })
	sFlaky, _ := f.store.Subscribe(ctx, "v1", flaky.srv.URL, []string{LowStock})
	sBroken, _ := f.store.Subscribe(ctx, "v1", broken.srv.URL, []string{LowStock})
	f.detect(t)
	f.reserve(t, "x", 6, "a")
	if got := f.detect(t); len(got) != 1 {
		t.Fatalf("alerts %v", got)
	}
	testwait.Until(t, 5*time.Second, "no delivery is pending", func() bool {
		f.del.RunOnce(ctx)
		ds, _ := f.store.Deliveries(ctx, "v1", "pending", 10)
		return len(ds) == 0
	})
	all, _ := f.store.Deliveries(ctx, "v1", "", 10)
	status := map[string]Delivery{}
	for _, d := range all {
		status[d.SubscriptionID] = d
	}
	if d := status[sFlaky.ID]; d.Status != "delivered" || d.Attempts != 3 || flaky.calls.Load() != 3 {
		t.Fatalf("flaky receiver: %+v after %d calls", d, flaky.calls.Load())
	}
	if d := status[sBroken.ID]; d.Status != "dead" || d.Attempts != 3 || d.LastError == "" {
		t.Fatalf("broken receiver: %+v", d)
	}
	dead, _ := f.store.Deliveries(ctx, "v1", "dead", 10)
	if len(dead) != 1 || dead[0].Payload.Type != LowStock {
		t.Fatalf("dead letters %+v", dead)
	}
}

// TestCallbackPolicy: only http(s), and no loopback, private or link-local address unless
// the allow-list names it.
func TestCallbackPolicy(t *testing.T) {
	ctx := context.Background()
	strict, _ := NewURLPolicy(nil)
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/", "http://192.168.0.1/",
		"http://169.254.169.254/latest", "http://[::1]/", "http://0.0.0.0/", "ftp://example.com/", "/relative", "http://user:pw@example.com/"} {
		var ve *engine.ValidationError
		if err := strict.Check(ctx, u); !errors.As(err, &ve) || ve.Field != "callback_url" {
			t.Errorf("%s: %v", u, err)
		}
	}
	// Special-purpose ranges, and IPv6 addresses that carry a refused IPv4 address inside.
	for _, u := range []string{
		"http://0.1.2.3/", "http://100.64.0.1/", "http://192.0.0.8/", "http://192.0.2.10/", "http://198.51.100.7/",
		"http://203.0.113.9/", "http://198.18.0.1/", "http://192.88.99.1/", "http://240.0.0.1/", "http://255.255.255.255/",
		"http://[64:ff9b::7f00:1]/",                      // NAT64 of 127.0.0.1
		"http://[64:ff9b::a9fe:a9fe]/latest",             // NAT64 of 169.254.169.254
		"http://[64:ff9b:1::7f00:1]/",                    // local-use NAT64
		"http://[::127.0.0.1]/",                          // IPv4-compatible
		"http://[::127.0.0.1%25eth0]/",                   // the same with a zone
		"http://[::ffff:10.0.0.1]/",                      // IPv4-mapped
		"http://[::ffff:0:7f00:1]/",                      // IPv4-translated
		"http://[2002:7f00:1::1]/",                       // 6to4 of 127.0.0.1
		"http://[2002:a9fe:a9fe::]/",                     // 6to4 of 169.254.169.254
		"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", // Teredo, client 127.0.0.1
		"http://[2001:0:7f00:1:8000:63bf:a247:28f1]/",    // Teredo, server 127.0.0.1
		"http://[fec0::1]/", "http://[fd00::1]/", "http://[fe80::1%25eth0]/", "http://[ff02::1]/", "http://[::]/",
		"http://[2001:db8::1]/", "http://[3fff::1]/", "http://[2001:2::1]/", "http://[100::1]/", "http://[2001:10::1]/",
		"http://[5f00::1]/",
	} {
		var ve *engine.ValidationError
		if err := strict.Check(ctx, u); !errors.As(err, &ve) || ve.Field != "callback_url" {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{
		"https://93.184.215.14/hook",
		"https://[2606:4700:4700::1111]/hook",
		"https://[64:ff9b::5db8:d70e]/hook",                   // NAT64 of the public address above
		"https://[2002:5db8:d70e::1]/hook",                    // its 6to4 address
		"https://[2001:0:4136:e378:8000:63bf:a247:28f1]/hook", // Teredo, client 93.184.215.14
	} {
		if err := strict.Check(ctx, u); err != nil {
			t.Errorf("a public address %s: %v", u, err)
		}
	}
	allowed, _ := NewURLPolicy([]string{"127.0.0.0/8", "hooks.internal"})
	for _, u := range []string{"http://127.0.0.1:9/x", "https://hooks.internal/x"} {
		if err := allowed.Check(ctx, u); err != nil {
			t.Errorf("%s with an allow-list: %v", u, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9", "[64:ff9b::7f00:1]:9", "[::127.0.0.1]:9"} {
		if _, err := strict.DialContext(ctx, "tcp", addr); err == nil || !strings.Contains(err.Error(), "refused: no allowed address") {
			t.Errorf("the delivery dialer to %s: %v", addr, err)
		}
	}
}

// TestCooldown: a pool flapping out of and back into stock within the cooldown raises one
// alert; the state it settles in is reported once the cooldown has passed.
func TestCooldown(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Cooldown = 10 * time.Second
	f := setup(t, cfg)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "hot", Shards: 1}, 1)
	f.detect(t)
	h := f.reserve(t, "hot", 1, "a")
	if got := f.detect(t); strings.Join(got, ",") != "OUT_OF_STOCK" {
		t.Fatalf("first: %v", got)
	}
	for i := range 5 { // flapping 0 <-> 1
		f.e.Release(ctx, h, "shop")
		h = f.reserve(t, "hot", 1, "f"+string(rune('0'+i)))
		f.e.Release(ctx, h, "shop")
		if got := f.detect(t); len(got) != 0 {
			t.Fatalf("flap %d raised %v", i, got)
		}
		h = f.reserve(t, "hot", 1, "g"+string(rune('0'+i)))
	}
	f.e.Release(ctx, h, "shop") // settles at 1
	f.detect(t)
	f.clk.Advance(10 * time.Second)
	if got := f.detect(t); strings.Join(got, ",") != "BACK_IN_STOCK" {
		t.Fatalf("after the cooldown: %v", got)
	}
}

// TestVoidedPairsRaiseNothing: a reservation that took a pool's last units and gave them
// back without ever answering with them (a refused cart: RESERVED, then VOIDED) raises no
// alert; a pool that really sells out does, once the change has settled.
func TestVoidedPairsRaiseNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Settle = 2 * time.Second
	f := setup(t, cfg)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "last", Shards: 1}, 2)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "none", Shards: 1}, 0)
	f.detect(t)
	f.clk.Advance(time.Minute)
	f.detect(t)
	for i := range 3 { // each cart takes both units of "last", then is refused on "none"
		_, err := f.e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "last", Qty: 2},
			{Location: "s1", SKU: "none", Qty: 1}}, IdempotencyKey: fmt.Sprint("cart-", i), Actor: "shop"})
		if !errors.Is(err, engine.ErrInsufficient) {
			t.Fatalf("cart %d: %v", i, err)
		}
		if got := f.detect(t); len(got) != 0 {
			t.Fatalf("a refused cart raised %v", got)
		}
	}
	f.clk.Advance(time.Minute)
	if got := f.detect(t); len(got) != 0 {
		t.Fatalf("after the settle time, the refused carts raised %v", got)
	}
	f.reserve(t, "last", 2, "real")
	if got := f.detect(t); len(got) != 0 {
		t.Fatalf("a sell-out raised %v before it settled", got)
	}
	f.clk.Advance(3 * time.Second)
	if got := f.detect(t); strings.Join(got, ",") != "OUT_OF_STOCK" {
		t.Fatalf("a settled sell-out raised %v", got)
	}
}

// TestAnomaly: a pool that loses more than the share of its stock to spoilage and downward
// adjustments within the window raises one ANOMALY, saying how much; sales, however fast, do
// not; losses spread over more than the window do not; the pool's stock-level alerts go on
// as before (an ANOMALY is not a level).
func TestAnomaly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig()
	cfg.AnomalyWindow, cfg.AnomalyShare, cfg.AnomalyMinUnits = time.Minute, 0.2, 5
	f := setup(t, cfg)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "milk", Shards: 2, LowStock: 10}, 100)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "sold", Shards: 1, LowStock: 10}, 100)
	f.detect(t)
	change := func(sku, kind string, qty int64, tx string) {
		t.Helper()
		if _, err := f.e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: sku, Kind: kind, Qty: qty, TransactionID: tx,
			Actor: "vendor", Reason: "count"}); err != nil {
			t.Fatal(err)
		}
	}
	// 60 of 100 sold in a minute: sales explain it.
	for i := range 6 {
		h := f.reserve(t, "sold", 10, fmt.Sprint("s", i))
		if err := f.e.Commit(ctx, h, "shop"); err != nil {
			t.Fatal(err)
		}
	}
	// 12 spoiled, then 10 adjusted away: 22 of 100 within the minute.
	change("milk", engine.Spoilage, 12, "t1")
	if got := f.detect(t); len(got) != 0 {
		t.Fatalf("12 of 100 lost: %v", got)
	}
	change("milk", engine.Adjustment, -10, "t2")
	raised, err := f.det.RunOnce(ctx)
	if err != nil || len(raised) != 1 || raised[0].Type != Anomaly || raised[0].SKU != "milk" ||
		!strings.Contains(raised[0].Detail, "22 units") || !strings.Contains(raised[0].Detail, "of the 100") {
		t.Fatalf("22 of 100 lost within the window: %+v, %v", raised, err)
	}
	// More losses in the same window raise nothing more; after the window, a slow trickle
	// (one window's worth below the share) raises nothing.
	change("milk", engine.Spoilage, 10, "t3")
	if got := f.detect(t); len(got) != 0 {
		t.Fatalf("again within the window: %v", got)
	}
	f.clk.Advance(2 * time.Minute)
	change("milk", engine.Spoilage, 5, "t4")
	if got := f.detect(t); len(got) != 0 {
		t.Fatalf("5 of 68 after the window: %v", got)
	}
	// A SET from 63 down to 3 is a loss too (a new window: one more ANOMALY), and the level
	// alerts still follow the counts: 3 is LOW_STOCK.
	change("milk", engine.Set, 3, "t5")
	if got := f.detect(t); strings.Join(got, ",") != "ANOMALY,LOW_STOCK" {
		t.Fatalf("set to 3: %v", got)
	}
	list, err := f.store.Alerts(ctx, "", 0, 100)
	if err != nil || len(list) < 2 || list[0].Type != Anomaly || list[0].Detail == "" {
		t.Fatalf("stored alerts %+v, %v", list, err)
	}
}

// TestAnomalySelloutAndCorrections: a pool that sells out at many times its usual rate raises
// an ANOMALY (a first sell-down, with no usual rate yet, does not); so do repeated oversized
// corrections within the window (fewer, or smaller ones, do not); both are delivered, signed,
// to a subscriber who asked for ANOMALY only.
func TestAnomalySelloutAndCorrections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig()
	cfg.AnomalyWindow, cfg.AnomalyShare, cfg.AnomalyMinUnits = 30*time.Minute, 0.5, 5
	cfg.AnomalySellout, cfg.AnomalyCorrections = 10, 3
	cfg.Allow = []string{"127.0.0.1"}
	f := setup(t, cfg)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "tea", Shards: 1, LowStock: 2}, 20)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "rice", Shards: 1, LowStock: 2}, 100)
	rcv := newReceiver(t, nil)
	sub, err := f.store.Subscribe(ctx, "v1", rcv.srv.URL+"/hook", []string{Anomaly})
	if err != nil {
		t.Fatal(err)
	}
	f.detect(t)
	anomalies := func() []string {
		t.Helper()
		raised, err := f.det.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range raised {
			if a.Type == Anomaly {
				out = append(out, a.SKU+": "+a.Detail)
			}
		}
		return out
	}
	adjust := func(sku, kind string, qty int64, tx string) {
		t.Helper()
		if _, err := f.e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: sku, Kind: kind, Qty: qty, TransactionID: tx, Actor: "vendor"}); err != nil {
			t.Fatal(err)
		}
	}
	// Tea sells 1 unit every 5 minutes for an hour, then is restocked: that is its usual rate.
	n := 0
	for range 12 {
		f.clk.Advance(5 * time.Minute)
		f.reserve(t, "tea", 1, fmt.Sprint("slow", n))
		n++
	}
	if got := anomalies(); len(got) != 0 {
		t.Fatalf("a slow sell-down: %v", got)
	}
	adjust("tea", engine.Restock, 92, "delivery") // 8 -> 100
	// Then 100 units go in two minutes: sold out at about 250 times the usual rate.
	for i := range 10 {
		f.clk.Advance(12 * time.Second)
		f.reserve(t, "tea", 10, fmt.Sprint("rush", i))
	}
	got := anomalies()
	if len(got) != 1 || !strings.Contains(got[0], "sold out: 100 units") {
		t.Fatalf("a rush sell-out: %v", got)
	}
	// Rice: two oversized corrections raise nothing; a small one neither; the third does.
	adjust("rice", engine.Adjustment, 60, "c1")  // 100 -> 160, 60%
	adjust("rice", engine.Adjustment, 5, "c2")   // 160 -> 165, 3%: not oversized
	adjust("rice", engine.Adjustment, 100, "c3") // 165 -> 265, 61%
	if got := anomalies(); len(got) != 0 {
		t.Fatalf("two oversized corrections: %v", got)
	}
	f.clk.Advance(time.Minute)
	adjust("rice", engine.Adjustment, 200, "c4") // 265 -> 465, 75%
	if got := anomalies(); len(got) != 1 || !strings.Contains(got[0], "rice: 3 corrections") {
		t.Fatalf("three oversized corrections: %v", got)
	}
	for range 20 {
		if n, err := f.del.RunOnce(ctx); err != nil || n == 0 {
			break
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.got) != 2 {
		t.Fatalf("%d deliveries, want the 2 anomalies", len(rcv.got))
	}
	for i, req := range rcv.got {
		var body Alert
		json.Unmarshal(rcv.body[i], &body)
		if !Verify(sub.Secret, req.Header.Get(HeaderTimestamp), rcv.body[i], req.Header.Get(HeaderSignature)) || body.Type != Anomaly || body.Detail == "" {
			t.Fatalf("delivery %d: %s", i, rcv.body[i])
		}
	}
}

// TestSafetyStockAlerts: alerts count what shoppers can hold. A pool whose units above its
// safety stock are all held is out of stock; lowering the safety stock brings it back in
// stock with the pool's next event.
func TestSafetyStockAlerts(t *testing.T) {
	ctx := context.Background()
	f := setup(t, testConfig())
	cfg := engine.PoolConfig{Location: "s1", SKU: "buf", Vendor: "v1", Shards: 1, SafetyStock: 3}
	testengine.Pool(t, f.e, cfg, 10)
	f.detect(t) // joins the streams
	if got := strings.Join(func() []string { f.reserve(t, "buf", 7, "a"); return f.detect(t) }(), ","); got != "OUT_OF_STOCK" {
		t.Fatalf("7 of 10 units held with a safety stock of 3: alerts %q, want OUT_OF_STOCK", got)
	}
	cfg.SafetyStock = 0
	if err := f.e.CreatePool(ctx, cfg, "test"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(func() []string { f.reserve(t, "buf", 1, "b"); return f.detect(t) }(), ","); got != "BACK_IN_STOCK" {
		t.Fatalf("safety stock lowered to 0, then a hold of 1 of the 3 units: alerts %q, want BACK_IN_STOCK", got)
	}
}

// TestBackorderAlerts: units that come to a pool whose backorders wait are theirs, not
// shoppers': no BACK_IN_STOCK while they only partly fill the queue, and BACK_IN_STOCK once
// the queue is filled and units are left over.
func TestBackorderAlerts(t *testing.T) {
	ctx := context.Background()
	f := setup(t, testConfig())
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "bo", Vendor: "v1", Shards: 1, Policy: engine.PolicyBackorder,
		BackorderLimit: 10}, 1)
	f.detect(t) // joins the streams
	if got := strings.Join(func() []string { f.reserve(t, "bo", 1, "a"); return f.detect(t) }(), ","); got != "OUT_OF_STOCK" {
		t.Fatalf("the one unit held: alerts %q, want OUT_OF_STOCK", got)
	}
	f.reserve(t, "bo", 3, "b") // backordered: 3 owed
	restock := func(qty int64, tx string) []string {
		if _, err := f.e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "bo", Kind: engine.Restock, Qty: qty, TransactionID: tx,
			Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		return f.detect(t)
	}
	if got := strings.Join(restock(2, "r1"), ","); got != "" {
		t.Fatalf("2 units come for a backorder of 3: alerts %q, want none", got)
	}
	if got := strings.Join(restock(2, "r2"), ","); got != "BACK_IN_STOCK" {
		t.Fatalf("2 more: the backorder filled, 1 unit left: alerts %q, want BACK_IN_STOCK", got)
	}
}

// TestBackorderAlertsFirstSight: a detector that first sees a pool through a batch of several
// backorders counts each once: when they are filled and units are left over, the pool is back
// in stock.
func TestBackorderAlertsFirstSight(t *testing.T) {
	ctx := context.Background()
	f := setup(t, testConfig())
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "fs", Vendor: "v1", Shards: 1, Policy: engine.PolicyBackorder,
		BackorderLimit: 10}, 0)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s1", SKU: "other", Vendor: "v1", Shards: 1}, 5)
	f.detect(t) // joins the streams
	f.reserve(t, "other", 1, "o")
	f.detect(t)
	f.reserve(t, "fs", 2, "a") // backordered
	f.reserve(t, "fs", 3, "b") // backordered
	if got := strings.Join(f.detect(t), ","); got != "" {
		t.Fatalf("two backorders on a pool with none: alerts %q", got)
	}
	if _, err := f.e.Adjust(ctx, engine.AdjustRequest{Location: "s1", SKU: "fs", Kind: engine.Restock, Qty: 8, TransactionID: "in",
		Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.detect(t), ","); got != "BACK_IN_STOCK" {
		t.Fatalf("8 units for backorders of 5: alerts %q, want BACK_IN_STOCK", got)
	}
}
