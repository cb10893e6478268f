package clientcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testredis.StopCluster()
	removeBinary()
	os.Exit(code)
}

// setUp creates the workload's pools and stocks them.
func setUp(t *testing.T, s *Service) []Pool {
	t.Helper()
	return stockPools(t, s, []Pool{
		{Location: "cc-berlin", SKU: "hot", Shards: 8, Stock: 2000},
		{Location: "cc-berlin", SKU: "limited", Shards: 4, Limit: 3, Stock: 1000},
		{Location: "cc-lyon", SKU: "single", Shards: 1, Stock: 500},
	})
}

// setUpRegional is setUp with a region of both locations, whose SKU "reg" the workload
// reserves from the region (taken from either location, a line split over both when allowed),
// and a pool that takes backorders.
func setUpRegional(t *testing.T, s *Service) []Pool {
	t.Helper()
	pools := setUp(t, s)
	body, _ := json.Marshal(map[string]any{"strategy": "most_stock", "locations": []map[string]any{
		{"location": "cc-berlin", "priority": 1}, {"location": "cc-lyon", "priority": 2}}})
	op := &Op{Kind: "setup", Key: AdminKey, Body: body}
	NewWorkload(s.URL, nil).do(context.Background(), "PUT", "/v1/regions/cc-north", op)
	if op.Final == nil || op.Final.Status != http.StatusOK {
		t.Fatalf("create region: %+v", op.Sends)
	}
	return append(pools, stockPools(t, s, []Pool{
		{Location: "cc-berlin", SKU: "reg", Region: "cc-north", Shards: 1, Stock: 150},
		{Location: "cc-lyon", SKU: "reg", Region: "cc-north", Shards: 1, Stock: 150},
		{Location: "cc-lyon", SKU: "preorder", Shards: 1, Stock: 10, Backorders: 25},
	})...)
}

// stockPools creates pools and stocks them.
func stockPools(t *testing.T, s *Service, pools []Pool) []Pool {
	t.Helper()
	w := NewWorkload(s.URL, pools)
	for _, p := range pools {
		pool := map[string]any{"vendor": Vendor, "shards": p.Shards, "customer_limit": p.Limit}
		if p.Backorders > 0 {
			pool["inventory_policy"], pool["backorder_limit"] = "backorder", p.Backorders
		}
		body, _ := json.Marshal(pool)
		op := &Op{Kind: "setup", Key: AdminKey, Body: body}
		w.do(context.Background(), "PUT", "/v1/pools/"+p.Location+"/"+p.SKU, op)
		if op.Final == nil || op.Final.Status != http.StatusOK {
			t.Fatalf("create pool %s: %+v", p.SKU, op.Sends)
		}
		body, _ = json.Marshal(map[string]any{"location": p.Location, "change_type": "RESTOCK", "quantity_change": p.Stock,
			"transaction_id": "initial-" + p.Location + "-" + p.SKU})
		op = &Op{Kind: "setup", Key: VendorKey, Body: body}
		w.do(context.Background(), "POST", "/v1/vendors/"+Vendor+"/inventory/"+p.SKU+"/update", op)
		if op.Final == nil || op.Final.Status != http.StatusOK {
			t.Fatalf("stock pool %s: %+v", p.SKU, op.Sends)
		}
	}
	return pools
}

// during runs traffic for d and, after wait, the fault.
// heavySlots bounds the tests that drive a service with a dozen clients through faults to two
// at a time, whatever go test's -parallel: more at once on two cores starves them.
var heavySlots = make(chan struct{}, 2)

// heavy takes one of the slots for the rest of the test.
func heavy(t *testing.T) {
	heavySlots <- struct{}{}
	t.Cleanup(func() { <-heavySlots })
}

func during(w *Workload, clients int, d, wait time.Duration, fault func()) {
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(context.Background(), clients, d) })
	if fault != nil {
		time.Sleep(wait)
		fault()
	}
	wg.Wait()
}

// settleAndCheck waits until no unit is held and the ledger has every event, then checks every
// answer the workload's clients were told; each violation fails t.
func settleAndCheck(t *testing.T, s *Service, pools []Pool, w *Workload) *Report {
	t.Helper()
	// Every hold expires (4 s, or 3 s after an extension), and the sweeper gives it back
	// (backorders hold no unit: some may still be open when the check starts).
	testwait.Until(t, 30*time.Second, "no unit is held", func() bool { return nothingHeld(s) })
	if !s.WaitPersisted(60 * time.Second) {
		t.Fatalf("the ledger did not catch up:\n%s\n%s", s.Streams(t), s.LogTail())
	}
	rep := Check(context.Background(), s, pools, w.Ops())
	t.Log(rep.Summary())
	for _, v := range rep.sorted() {
		t.Error(v)
	}
	return rep
}

// nothingHeld says whether the vendor's inventory listing shows no unit held in any pool.
func nothingHeld(s *Service) bool {
	var page struct {
		Items []struct {
			Held int64 `json:"held"`
		} `json:"items"`
	}
	if status, _ := get(context.Background(), s.URL+"/v1/vendors/"+Vendor+"/inventory?limit=1000", VendorKey, &page); status != http.StatusOK {
		return false
	}
	for _, a := range page.Items {
		if a.Held != 0 {
			return false
		}
	}
	return true
}

// TestClientView drives the real server over HTTP through every fault a deployment meets and
// checks what each client was told against what the service says afterwards: the holds,
// their events in the ledger, the pools' counts and a reconciliation. The faults: serve
// killed (kill -9) and restarted; Redis (append-only file, fsync always) killed and
// restarted; Postgres cut for 4 s; Redis restarted empty, then the documented procedure
// (flashhold reconcile --repair). On the test's Redis Cluster: serve killed and Postgres cut.
func TestClientView(t *testing.T) {
	t.Parallel() // its own servers, prefix and database; the overload tests run alone before it
	t.Run("standalone", func(t *testing.T) { t.Parallel(); heavy(t); clientView(t, false) })
	t.Run("cluster", func(t *testing.T) { t.Parallel(); heavy(t); clientView(t, true) })
}

func clientView(t *testing.T, cluster bool) {
	s := Start(t, cluster)
	pools := setUpRegional(t, s)
	w := NewWorkload(s.URL, pools)
	const clients = 12
	step := func(name string) { s.Logf("%s: %d operations so far", name, len(w.Ops())) }

	during(w, clients, 2*time.Second, 0, nil)
	step("plain traffic")

	during(w, clients, 4*time.Second, time.Second, func() {
		s.KillServe()
		time.Sleep(500 * time.Millisecond)
		s.StartServe()
	})
	step("serve killed and restarted")

	during(w, clients, 6*time.Second, time.Second, func() {
		s.PG.Cut()
		time.Sleep(4 * time.Second) // the outage
		s.PG.Restore()
	})
	step("postgres cut for 4 s")

	ctx := context.Background()
	if !cluster {
		during(w, clients, 4*time.Second, time.Second, func() {
			s.Redis.Kill()
			time.Sleep(300 * time.Millisecond)
			s.Redis.Start()
		})
		step("redis killed and restarted")

		// Redis loses everything. Whatever it acknowledged after the ledger's last copy would
		// be lost with it (run Redis with an append-only file, or wait for replicas, to keep
		// that); the traffic stops and the ledger catches up first, so every answer given is
		// kept.
		if !s.WaitPersisted(30 * time.Second) {
			t.Fatalf("the ledger did not catch up:\n%s\n%s", s.Streams(t), s.LogTail())
		}
		s.Redis.Kill()
		s.Redis.Wipe()
		s.Redis.Start()
		if !testwait.For(10*time.Second, func() bool { return !s.Ready() }) {
			t.Fatal("/readyz stayed ready on a Redis that lost its data")
		}
		code, out := s.Flashhold(ctx, "reconcile", "--repair", "--out", "repair-report")
		if code == 2 {
			t.Fatalf("reconcile --repair could not run: %s", lastLines(out, 20))
		}
		var repaired, found int
		if _, err := fmt.Sscanf(out[strings.LastIndex(out, "repaired:"):], "repaired: %d of %d", &repaired, &found); err != nil || repaired != found {
			findings, _ := os.ReadFile(filepath.Join(s.dir, "repair-report", "findings.csv"))
			t.Fatalf("reconcile --repair (exit %d) left findings unrepaired:\n%s\n%s", code, out, findings)
		}
		if !s.WaitReady(10 * time.Second) {
			t.Fatalf("not ready after the repair: %s", s.LogTail())
		}
		step("redis restarted empty and repaired")
		during(w, clients, 2*time.Second, 0, nil)
		step("traffic after the repair")
	}

	rep := settleAndCheck(t, s, pools, w)
	if rep.Holds == 0 || rep.Refusals == 0 || rep.Commits == 0 || rep.Reductions == 0 || rep.PartialCommits == 0 ||
		rep.Backorders == 0 || rep.Fills == 0 {
		t.Errorf("the workload proves little: %s", rep.Summary())
	}
	if t.Failed() {
		t.Logf("serve's log ends:\n%s", s.LogTail())
	}
}
