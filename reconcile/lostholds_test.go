package reconcile

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
)

// TestRepairTellsOfLostHolds: Redis lost a sale, and the fork then gave a client a hold on the
// same units. The repair cannot restore that hold (it would oversell): the storefront that was
// given it is told, through its notice webhook, once, with what it held.
func TestRepairTellsOfLostHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	policy, err := alerts.NewURLPolicy([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	notices := alerts.NewStore(f.store.Pool(), policy)
	if _, err := notices.SetNoticeWebhook(ctx, "shop", "http://127.0.0.1:9/notices"); err != nil {
		t.Fatal(err)
	}
	f.r = New(f.e, f.store, WithNotices(notices))
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s2", SKU: "c", Shards: 1}, 5)
	p := f.e.PartitionOf("s2", "c", 0)
	f.workload(t, "persist", 0)
	restore := f.dumpPartition(t, p)
	hold := func(key string, qty int64) *engine.Hold {
		h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s2", SKU: "c", Qty: qty}}, IdempotencyKey: key,
			Actor: "shop", Customer: "c-9"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if err := f.e.Commit(ctx, hold("first", 5).ID, "shop"); err != nil {
		t.Fatal(err)
	}
	f.workload(t, "persist", 0)
	restore()
	lost := hold("second", 3) // Redis, back before the sale, gives the same units again
	f.workload(t, "persist", 0)

	for range 2 { // a second run finds nothing more to tell
		if _, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := f.store.Pool().Query(ctx, `SELECT event_id, payload::text FROM webhook_deliveries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []alerts.HoldLostNotice
	for rows.Next() {
		var id, payload string
		if err := rows.Scan(&id, &payload); err != nil {
			t.Fatal(err)
		}
		var n alerts.HoldLostNotice
		json.Unmarshal([]byte(payload), &n)
		got = append(got, n)
	}
	parts, _ := f.e.HoldParts(lost.ID)
	if len(got) != 1 || got[0].Type != alerts.HoldLost || got[0].Part != parts[0].Part || got[0].Qty != 3 || got[0].SKU != "c" ||
		got[0].Customer != "c-9" || len(lost.ID) < len(got[0].HoldKey) || lost.ID[:len(got[0].HoldKey)] != got[0].HoldKey {
		t.Fatalf("notices %+v, want one HOLD_LOST of %s (3 units)", got, lost.ID)
	}
	if h, err := f.e.GetHold(ctx, lost.ID, "shop"); err == nil && h.Status == engine.StatusActive {
		t.Fatalf("the lost hold still reads active: %+v", h)
	}
}
