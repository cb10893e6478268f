package api

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestHoldsBelongToTheirKey: a hold exists only for the API key that placed it (and for
// admins); another client key can neither read, extend, commit nor release it, and cannot
// compute hold ids from idempotency keys.
func TestHoldsBelongToTheirKey(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	hold := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 1},
		"Idempotency-Key", "mine-1").want(t, http.StatusCreated, "")
	id := hold.str("hold_id")
	base := "/v1/holds/" + id
	ts.do("GET", base, otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("POST", base+"/extend", otherKey, map[string]any{"ttl_ms": 60000}).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("POST", base+"/commit", otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("POST", base+"/release", otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("GET", base, clientKey, nil).want(t, http.StatusOK, "")
	ts.do("GET", base, adminKey, nil).want(t, http.StatusOK, "")
	ts.do("POST", base+"/commit", clientKey, nil).want(t, http.StatusOK, "")
	// The same key after it ended: still nobody else's.
	ts.do("GET", base, otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("POST", base+"/release", otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")

	// A multi-part hold: the same.
	multi := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "sneaker", "qty": 9},
		"Idempotency-Key", "mine-2").want(t, http.StatusCreated, "")
	mid := multi.str("hold_id")
	ts.do("POST", "/v1/holds/"+mid+"/commit", otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("POST", "/v1/holds/"+mid+"/release", otherKey, nil).want(t, http.StatusNotFound, "hold_not_found")
	ts.do("GET", "/v1/holds/"+mid, clientKey, nil).want(t, http.StatusOK, "")

	// Ids are not a hash anyone can compute from the caller and the key.
	sum := sha1.Sum([]byte("shop\x00mine-1"))
	if strings.HasPrefix(id, hex.EncodeToString(sum[:10])) {
		t.Fatalf("hold id %s is the unkeyed hash of the caller and its key", id)
	}
}

// TestLimitedPoolNeedsCustomer: a pool with a per-customer limit refuses a hold that names no
// customer (the limit could not count it), with nothing changed.
func TestLimitedPoolNeedsCustomer(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	before := ts.seqs()
	for i := range 3 {
		r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "limited", "qty": 2},
			"Idempotency-Key", fmt.Sprint("anon-", i)).want(t, http.StatusUnprocessableEntity, "invalid")
		if !strings.Contains(string(r.raw), "customer_id") {
			t.Fatalf("the refusal does not name customer_id: %s", r.raw)
		}
	}
	cart := map[string]any{"items": []map[string]any{{"location": "berlin", "sku": "cap"}, {"location": "berlin", "sku": "limited"}}}
	ts.do("POST", "/v1/holds", clientKey, cart, "Idempotency-Key", "anon-cart").want(t, http.StatusUnprocessableEntity, "invalid")
	if fmt.Sprint(ts.seqs()) != fmt.Sprint(before) {
		t.Fatal("a refused request changed state")
	}
}

// TestVendorTransactionIDsPerVendor: a transaction id names one change of one vendor: two
// vendors may use the same id (even on pools that share a partition), and a vendor cannot
// reuse one of its ids for another change, on whatever pool.
func TestVendorTransactionIDsPerVendor(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), nil)
	// Two pools of different vendors in one partition.
	acmeSKU, bistroSKU := "", ""
	for i := 0; bistroSKU == ""; i++ {
		a, b := fmt.Sprint("ta", i), fmt.Sprint("tb", i)
		for j := 0; j < 200 && bistroSKU == ""; j++ {
			b = fmt.Sprint("tb", j)
			if ts.eng.PartitionOf("berlin", a, 0) == ts.eng.PartitionOf("lyon", b, 0) {
				acmeSKU, bistroSKU = a, b
			}
		}
	}
	ts.do("PUT", "/v1/pools/berlin/"+acmeSKU, adminKey, map[string]any{"vendor": "acme"}).want(t, http.StatusOK, "")
	ts.do("PUT", "/v1/pools/lyon/"+bistroSKU, adminKey, map[string]any{"vendor": "bistro"}).want(t, http.StatusOK, "")
	restock := func(key, vendor, loc, sku string, qty int) response {
		return ts.do("POST", "/v1/vendors/"+vendor+"/inventory/"+sku+"/update", key,
			map[string]any{"location": loc, "change_type": "RESTOCK", "quantity_change": qty, "transaction_id": "po-1"})
	}
	restock(acmeKey, "acme", "berlin", acmeSKU, 5).want(t, http.StatusOK, "")
	restock(bistroKey, "bistro", "lyon", bistroSKU, 7).want(t, http.StatusOK, "")
	if r := restock(acmeKey, "acme", "berlin", acmeSKU, 5).want(t, http.StatusOK, ""); r.body["replayed"] != true {
		t.Fatalf("acme's retry was not replayed: %s", r.raw)
	}
	restock(acmeKey, "acme", "berlin", "cap", 5).want(t, http.StatusConflict, "idempotency_mismatch")
	for loc, sku := range map[string]string{"berlin": acmeSKU, "lyon": bistroSKU} {
		a := ts.do("GET", "/v1/availability/"+sku+"?location="+loc, clientKey, nil).want(t, http.StatusOK, "")
		if want := map[string]int64{"berlin": 5, "lyon": 7}[loc]; a.num("available") != want {
			t.Fatalf("%s at %s: %d available, want %d", sku, loc, a.num("available"), want)
		}
	}
}
