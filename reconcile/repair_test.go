package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testengine"
	"github.com/flashhold/flashhold/internal/testwait"
)

// repairThenClean runs with --repair, expects exactly one finding of kind, repaired, and then
// a clean second run.
func (f *fixture) repairThenClean(t *testing.T, kind string) Finding {
	t.Helper()
	rep, err := f.r.Run(context.Background(), Options{TransferGrace: f.grace, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	got := only(t, rep, kind)
	if !got.Repaired {
		t.Fatalf("not repaired: %+v", got)
	}
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after repair: %+v", again.Findings)
	}
	var repaired bool
	f.store.Pool().QueryRow(context.Background(), `SELECT repaired FROM reconcile_findings WHERE run_id = $1`, rep.RunID).Scan(&repaired)
	if !repaired {
		t.Fatal("the repair is not recorded")
	}
	return got
}

// repairThenCleanAll runs with --repair, expects a finding of kind among others, all
// repaired, and then a clean second run.
func (f *fixture) repairThenCleanAll(t *testing.T, kind string) {
	t.Helper()
	rep, err := f.r.Run(context.Background(), Options{TransferGrace: f.grace, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, fd := range rep.Findings {
		seen = seen || fd.Kind == kind
		if !fd.Repaired {
			t.Fatalf("not repaired: %+v", fd)
		}
	}
	if !seen {
		t.Fatalf("no %s finding in %+v", kind, rep.Findings)
	}
	f.persistedClean(t, "after repair")
}

// persistedClean persists what the streams hold and expects a clean run.
func (f *fixture) persistedClean(t *testing.T, when string) {
	t.Helper()
	f.workload(t, "persist", 0)
	if again := f.run(t); !again.Clean() {
		t.Fatalf("%s: %+v", when, again.Findings)
	}
}

func TestRepairDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "a", 3)
	f.rdb.HIncrBy(ctx, f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|a|3", -6)
	f.repairThenClean(t, KindDrift)
	// The correction is itself an event, naming the run, and the engine's own checks agree.
	v, err := f.e.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := v.Events[p][len(v.Events[p])-1]
	if last.Type != "ADJUSTED" || last.Delta != 0 || last.Qty != 6 || last.Actor != "reconcile" {
		t.Fatalf("repair event %+v", last)
	}
	f.workload(t, "after", 5) // the persister takes the repair event like any other
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after more traffic: %+v", again.Findings)
	}
	// Held and committed counts are repaired the same way.
	for _, c := range []struct {
		suffix, counter string
		by              int64
	}{{"|h", engine.CounterHeld, 2}, {"|c", engine.CounterCommitted, -1}} {
		f.rdb.HIncrBy(ctx, f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|a|3"+c.suffix, c.by)
		if got := f.repairThenClean(t, KindDrift); got.Amount != c.by || !strings.Contains(got.Detail, c.counter) {
			t.Fatalf("finding %+v", got)
		}
		v, err := f.e.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := v.Events[p][len(v.Events[p])-1]
		if last.Type != "ADJUSTED" || last.Delta != 0 || last.HeldDelta != 0 || !strings.Contains(last.Reason, c.counter) {
			t.Fatalf("repair event %+v", last)
		}
	}
}

func TestRepairLedgerRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	f.store.Pool().Exec(ctx, `DELETE FROM inventory_events WHERE partition = $1 AND seq BETWEEN 4 AND 6`, p)
	if got := f.repairThenClean(t, KindGap); got.SeqFrom != 4 || got.SeqTo != 6 {
		t.Fatalf("gap %+v", got)
	}
	f.store.Pool().Exec(ctx, `UPDATE inventory_events SET qty = qty + 1 WHERE partition = $1 AND seq = 10`, p)
	f.repairThenClean(t, KindChainBreak)
}

func TestRepairHalfTransfer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	if err := f.e.BeginTransfer(ctx, "s1", "a", 0, 2, 5, "stuck-1", "test"); err != nil {
		t.Fatal(err)
	}
	f.grace = 20 * time.Millisecond
	testwait.Until(t, 5*time.Second, "the transfer is older than the grace", func() bool {
		ts, err := f.e.PendingTransfers(ctx, f.e.PartitionOf("s1", "a", 0))
		return err == nil && len(ts) == 1 && time.Since(time.UnixMilli(ts[0].TakenAt)) > f.grace
	})
	f.workload(t, "x", 1) // persist the TRANSFER_OUT
	got := f.repairThenClean(t, KindHalfTransfer)
	if got.Amount != 5 || got.Shard != 0 {
		t.Fatalf("finding %+v", got)
	}
	if _, err := f.e.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRepairRollback: Redis loses its last writes on a partition (restored from an earlier
// dump) and then takes new ones before the persister notices: a fork. --repair rebuilds the
// partition from the ledger and carries the forked events over; a second run is clean, every
// sale a customer was told of is counted once, every hold a customer was given is open, and
// no count went negative.
func TestRepairRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	start, _ := f.e.Snapshot(ctx, p)
	stock := func(s *engine.Snapshot) engine.ShardCount { return s.Shards[engine.ShardKey{Location: "s1", SKU: "b"}] }
	total := stock(start).Available + stock(start).Held + stock(start).Committed
	restore := f.dumpPartition(t, p)

	reserve := func(key string, qty int64) *engine.Hold {
		h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "b", Qty: qty}},
			IdempotencyKey: key, Actor: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// Acknowledged and persisted, then lost by Redis: two sales, a release, two open holds.
	for _, k := range []string{"lost-sold-1", "lost-sold-2"} {
		if err := f.e.Commit(ctx, reserve(k, 2).ID, "shop"); err != nil {
			t.Fatal(err)
		}
	}
	f.e.Release(ctx, reserve("lost-released", 3).ID, "shop")
	lostOpen := []*engine.Hold{reserve("lost-open-1", 1), reserve("lost-open-2", 4)}
	f.workload(t, "lost", 0) // persist
	lost, _ := f.e.Snapshot(ctx, p)
	restore()

	// The fork: Redis, back at the dump, takes new writes.
	if err := f.e.Commit(ctx, reserve("fork-sold", 5).ID, "shop"); err != nil {
		t.Fatal(err)
	}
	forkOpen := reserve("fork-open", 2)
	// The same request retried on the fork: the same hold, placed again.
	if err := f.e.Commit(ctx, reserve("lost-sold-1", 2).ID, "shop"); err != nil {
		t.Fatal(err)
	}
	f.e.Release(ctx, reserve("fork-released", 1).ID, "shop")
	if _, err := f.p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.p.Forks()) == 0 {
		t.Fatal("the persister did not notice the fork")
	}

	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, fd := range rep.Findings {
		kinds[fd.Kind] = true
		if !fd.Repaired || fd.Partition != p {
			t.Fatalf("finding not repaired: %+v", fd)
		}
	}
	if !kinds[KindLedgerAhead] && !kinds[KindFork] || kinds[KindForkConflict] {
		t.Fatalf("findings %+v", rep.Findings)
	}
	for _, fd := range rep.Findings {
		t.Logf("%s %d..%d %+d: %s", fd.Kind, fd.SeqFrom, fd.SeqTo, fd.Amount, fd.Detail)
	}
	var carried, skipped int
	f.store.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE outcome = 'carried'), count(*) FILTER (WHERE outcome LIKE 'skipped%')
		FROM forked_events WHERE partition = $1`, p).Scan(&carried, &skipped)
	// fork-sold (reserve, commit), fork-open, fork-released (reserve, release) are carried;
	// lost-sold-1's second placing and sale are the ledger's already.
	if carried != 5 || skipped != 2 {
		t.Fatalf("forked events: %d carried, %d skipped", carried, skipped)
	}
	f.workload(t, "after", 0) // the persister takes the carried events: no fork any more
	if len(f.p.Forks()) != 0 {
		t.Fatalf("forks after repair: %+v", f.p.Forks())
	}
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after repair: %+v", again.Findings)
	}

	now, _ := f.e.Snapshot(ctx, p)
	sc := stock(now)
	if sc.Available < 0 || sc.Held < 0 || sc.Available+sc.Held+sc.Committed != total {
		t.Fatalf("counters %+v do not add up to %d", sc, total)
	}
	// Sales: those before the loss, the two lost ones, the fork's one.
	if want := stock(lost).Committed + 5; sc.Committed != want {
		t.Fatalf("committed %d, want %d", sc.Committed, want)
	}
	// Holds given to customers are open: the two Redis lost and the fork's.
	for _, h := range append(lostOpen, forkOpen) {
		if err := f.e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatalf("commit %s: %v", h.ID, err)
		}
	}
	f.workload(t, "later", 5)
	if again := f.run(t); !again.Clean() {
		t.Fatalf("after more traffic: %+v", again.Findings)
	}

	// A rebuild cut off before it carried the saved events over leaves the partition fenced;
	// the next --repair finishes it and applies nothing twice.
	f.store.Pool().Exec(ctx, `UPDATE forked_events SET outcome = '', carried_seq = NULL WHERE partition = $1`, p)
	if err := f.e.Fence(ctx, p, "reconcile run 0"+rebuildFenceSuffix); err != nil {
		t.Fatal(err)
	}
	before, _ := f.e.Snapshot(ctx, p)
	rep, err = f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := only(t, rep, KindFenced); !got.Repaired {
		t.Fatalf("finding %+v", got)
	}
	after, _ := f.e.Snapshot(ctx, p)
	if after.Fence != "" || stock(after) != stock(before) || after.Seq != before.Seq {
		t.Fatalf("second rebuild changed the partition: %+v -> %+v (fence %q)", stock(before), stock(after), after.Fence)
	}
	var pending int
	f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM forked_events WHERE partition = $1 AND outcome = ''`, p).Scan(&pending)
	if pending != 0 {
		t.Fatalf("%d forked events left pending", pending)
	}
}

// TestRepairLostWrites: Redis lost its last writes and took none since (no fork): --repair
// rebuilds the partition from the ledger; the lost sale is counted and the lost hold is open,
// with the expiry its last extension gave it (the events carry it).
func TestRepairLostWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	p := f.e.PartitionOf("s1", "b", 0)
	key := engine.ShardKey{Location: "s1", SKU: "b"}
	restore := f.dumpPartition(t, p)
	h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "b", Qty: 3}}, IdempotencyKey: "lost", Actor: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	extended, err := f.e.Extend(ctx, h.ID, 17*time.Minute, "shop")
	if err != nil {
		t.Fatal(err)
	}
	f.workload(t, "lost", 4)
	want, _ := f.e.Snapshot(ctx, p)
	restore()
	f.repairThenCleanAll(t, KindLedgerAhead)
	got, _ := f.e.Snapshot(ctx, p)
	if got.Shards[key] != want.Shards[key] || got.Seq != want.Seq {
		t.Fatalf("rebuilt %+v at seq %d, want %+v at %d", got.Shards[key], got.Seq, want.Shards[key], want.Seq)
	}
	parts, err := f.e.HoldParts(h.ID)
	if err != nil || len(parts) != 1 {
		t.Fatalf("hold parts %v, %v", parts, err)
	}
	var restored bool
	for _, sh := range got.Holds {
		if sh.Part == parts[0].Part {
			restored = true
			if sh.ExpiresAt != extended || sh.Qty != 3 {
				t.Fatalf("restored part %+v, want expiry %d", sh, extended)
			}
		}
	}
	if !restored {
		t.Fatalf("the lost hold's part %s is not open after the rebuild", parts[0].Part)
	}
	// A retry of the lost reservation gets the same hold back (its record was restored without
	// the request's fingerprint, which the ledger does not keep), then commits it.
	again, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s1", SKU: "b", Qty: 3}}, IdempotencyKey: "lost", Actor: "shop"})
	if err != nil || again.ID != h.ID {
		t.Fatalf("retry: %v, %+v", err, again)
	}
	if err := f.e.Commit(ctx, h.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.e.Snapshot(ctx, p); got.Shards[key].Held != want.Shards[key].Held-3 {
		t.Fatalf("held after commit %+v", got.Shards[key])
	}
}

// TestRepairForkConflict: the units Redis lost had been sold, and the fork sold them again.
// The rebuild cannot carry the second sale over without overselling: it reports it (kind,
// seq, units) and applies nothing that would make a count negative. The storefront that was
// given the second hold is told, once, through its notice webhook, signed, that it is gone,
// also when the repair stops right after it sent the notice and is run again.
func TestRepairForkConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	hooks, received := noticeReceiver(t, f, "shop")
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s2", SKU: "c", Shards: 1}, 5)
	p := f.e.PartitionOf("s2", "c", 0)
	f.workload(t, "persist", 0)
	restore := f.dumpPartition(t, p)
	buy := func(key string, qty int64) *engine.Hold {
		h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s2", SKU: "c", Qty: qty}}, IdempotencyKey: key,
			Customer: "cu-" + key, Actor: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.e.Commit(ctx, h.ID, "shop"); err != nil {
			t.Fatal(err)
		}
		return h
	}
	buy("first", 5)
	f.workload(t, "persist", 0)
	restore()
	second := buy("second", 3) // Redis, back before the first sale, sells the same units again
	f.workload(t, "persist", 0)

	// A repair that stops right after it sent its notice, then the repair run again.
	stopped, err := New(f.e, f.store).WithNotices(failingNotices{hooks}).Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	for _, fd := range stopped.Findings {
		failed = failed || !fd.Repaired && strings.HasSuffix(fd.Detail, "repair failed: stopped")
	}
	if !failed {
		t.Fatalf("a repair whose notice failed: %+v, want it unrepaired", stopped.Findings)
	}
	f.r.WithNotices(hooks)
	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	var conflicts []Finding
	for _, fd := range rep.Findings {
		if fd.Kind == KindForkConflict {
			conflicts = append(conflicts, fd)
		} else if !fd.Repaired {
			t.Fatalf("not repaired: %+v", fd)
		}
	}
	// The second placing cannot be carried over (no units), and neither can its sale: the
	// stopped run settled the placing, this one the sale.
	var placed int
	if err := f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM forked_events WHERE partition = $1 AND outcome LIKE 'conflict%'`,
		p).Scan(&placed); err != nil || placed != 2 {
		t.Fatalf("%d forked events settled as conflicts (%v), want the placing and the sale", placed, err)
	}
	if len(conflicts) != 1 || conflicts[0].Amount != 3 || conflicts[0].SKU != "c" || conflicts[0].Partition != p ||
		!strings.HasPrefix(conflicts[0].Detail, "forked COMMITTED") {
		t.Fatalf("conflicts %+v", conflicts)
	}
	snap, _ := f.e.Snapshot(ctx, p)
	if sc := snap.Shards[engine.ShardKey{Location: "s2", SKU: "c"}]; sc.Available != 0 || sc.Held != 0 || sc.Committed != 5 || snap.Fence != "" {
		t.Fatalf("counters %+v, fence %q", sc, snap.Fence)
	}
	f.persistedClean(t, "after repair")
	got := received()
	if len(got) != 1 || got[0].Type != alerts.HoldLostNotice || got[0].HoldID != second.ID || got[0].Qty != 3 ||
		got[0].Customer != "cu-second" || got[0].SKU != "c" || got[0].Reason == "" || !got[0].Sold || got[0].PlacedAt == 0 {
		t.Fatalf("notices %+v, want one that hold %s (3 units) is gone", got, second.ID)
	}
	// Another repair run tells nothing more.
	if _, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true}); err != nil {
		t.Fatal(err)
	}
	if got := received(); len(got) != 0 {
		t.Fatalf("a second run sent %+v", got)
	}
}

// noticeReceiver sets a notice webhook for storefront client, served on loopback, and returns
// the notices store and a function that delivers what is queued and returns the notices
// received since its last call (each checked for its signature).
func noticeReceiver(t *testing.T, f *fixture, client string) (*alerts.Store, func() []alerts.LostHoldPayload) {
	t.Helper()
	cfg := alerts.Config{Allow: []string{"127.0.0.1"}, Timeout: 2 * time.Second, MaxAttempts: 3, BackoffBase: 5 * time.Millisecond,
		BackoffMax: 20 * time.Millisecond}
	policy, err := alerts.NewURLPolicy(cfg.Allow)
	if err != nil {
		t.Fatal(err)
	}
	hooks := alerts.NewStore(f.store.Pool(), policy)
	var mu sync.Mutex
	var got []alerts.LostHoldPayload
	var secret string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alerts.Verify(secret, r.Header.Get(alerts.HeaderTimestamp), body, r.Header.Get(alerts.HeaderSignature)) {
			t.Errorf("notice with a bad signature: %s", body)
		}
		var n alerts.LostHoldPayload
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("notice %s: %v", body, err)
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	sub, err := hooks.SetNoticeWebhook(context.Background(), client, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	secret = sub.Secret
	del := alerts.NewDeliverer(hooks, cfg, zerolog.Nop())
	return hooks, func() []alerts.LostHoldPayload {
		t.Helper()
		if _, err := del.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

// TestRepairUnderTraffic: shoppers keep buying from a pool while Redis loses its last
// (persisted) writes on the pool's partition, the persister (running alongside) fences the
// fork, and --repair rebuilds it while the shoppers keep trying. Every sale a shopper was told
// of is counted once, and the counters add up.
func TestRepairUnderTraffic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	const stock = 5000
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s3", SKU: "d", Shards: 1}, stock)
	p := f.e.PartitionOf("s3", "d", 0)
	tr := f.traffic(t, "s3", "d", 4, 1<<30) // until stopped
	tr.sells(t, 20, "before the dump")
	restore := f.dumpPartition(t, p)
	tr.sells(t, 20, "after the dump")
	// Redis loses what it took since the dump, once the ledger holds it: writes Redis loses
	// before they are persisted are lost to both, and no repair can bring them back.
	tr.gate.Lock()
	testwait.Until(t, 5*time.Second, "the persister catches up", func() bool {
		snap, _ := f.e.Snapshot(ctx, p)
		w, _ := f.store.Watermark(ctx, p)
		return w == snap.Seq
	})
	restore()
	tr.gate.Unlock()
	testwait.Until(t, 5*time.Second, "the persister fences the fork", func() bool {
		snap, _ := f.e.Snapshot(ctx, p)
		return snap.Fence != ""
	})
	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	tr.sells(t, 20, "on the rebuilt partition")
	sold := tr.stop()
	rebuilt := false
	for _, fd := range rep.Findings {
		if fd.Kind == KindForkConflict || !fd.Repaired {
			t.Fatalf("finding %+v", fd)
		}
		rebuilt = rebuilt || fd.rebuild && fd.Partition == p
	}
	if !rebuilt {
		t.Fatalf("partition %d was not rebuilt: %+v", p, rep.Findings)
	}
	f.persistedClean(t, "after repair")
	snap, _ := f.e.Snapshot(ctx, p)
	sc := snap.Shards[engine.ShardKey{Location: "s3", SKU: "d"}]
	// Holds whose commit met the fence stay open until they expire.
	var open int64
	for _, h := range snap.Holds {
		if h.SKU == "d" {
			open += h.Qty
		}
	}
	if sc.Available < 0 || sc.Held != open || sc.Available+sc.Held+sc.Committed != stock || sc.Committed != sold {
		t.Fatalf("counters %+v (%d units in open holds), %d sold", sc, open, sold)
	}
}

// TestRebuildKeepsAppliedTransfers: a transfer's units reached the destination shard (its
// TRANSFER_IN is in the ledger) and the source had not yet settled it when Redis lost the
// destination partition's last writes. --repair rebuilds the destination from the ledger;
// completing the source's pending transfer afterwards must not give the units a second time.
func TestRebuildKeepsAppliedTransfers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	f.grace = time.Minute // the transfer stays pending until the sweeper completes it, below
	from, to := f.e.PartitionOf("s1", "a", 0), f.e.PartitionOf("s1", "a", 1)
	before := f.units(t)
	restoreTo := f.dumpPartition(t, to)
	if err := f.e.BeginTransfer(ctx, "s1", "a", 0, 1, 7, "xf-lost", "test"); err != nil {
		t.Fatal(err)
	}
	restoreFrom := f.dumpPartition(t, from) // the transfer pending on the source
	ts, err := f.e.PendingTransfers(ctx, from)
	if err != nil || len(ts) != 1 {
		t.Fatalf("pending transfers %v, %v", ts, err)
	}
	if err := f.e.FinishTransfer(ctx, ts[0], "test"); err != nil {
		t.Fatal(err)
	}
	f.workload(t, "persist", 0) // the ledger has the TRANSFER_OUT and the TRANSFER_IN
	restoreFrom()               // the source is back at "taken out, not settled" (settling writes no event)
	restoreTo()                 // the destination lost the TRANSFER_IN
	f.repairThenCleanAll(t, KindLedgerAhead)
	if n, err := f.e.CompleteTransfers(ctx, from, "sweeper"); err != nil {
		t.Fatalf("complete transfers: %v (%d)", err, n)
	}
	if after := f.units(t); after != before {
		t.Fatalf("the pool holds %d units after the repair and the sweeper, %d before", after, before)
	}
	f.persistedClean(t, "after the transfer completed")
}

// TestRebuildRestoresPendingTransfer: a transfer was taken out of the source shard (its
// TRANSFER_OUT is in the ledger) and the source partition lost it before it was applied:
// Redis has neither the pending transfer nor its units in flight. --repair rebuilds the source
// with the transfer pending again, so that completing it brings the units to the destination.
func TestRebuildRestoresPendingTransfer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	f.grace = time.Minute // the transfer stays pending until the sweeper completes it, below
	from := f.e.PartitionOf("s1", "a", 0)
	before := f.units(t)
	restoreFrom := f.dumpPartition(t, from)
	if err := f.e.BeginTransfer(ctx, "s1", "a", 0, 1, 7, "xf-gone", "test"); err != nil {
		t.Fatal(err)
	}
	f.workload(t, "persist", 0) // the ledger has the TRANSFER_OUT
	restoreFrom()               // the source lost it, and the pending transfer with it
	f.repairThenCleanAll(t, KindLedgerAhead)
	ts, err := f.e.PendingTransfers(ctx, from)
	if err != nil || len(ts) != 1 || ts[0].ID != "xf-gone" || ts[0].Qty != 7 || ts[0].ToShard != 1 {
		t.Fatalf("pending transfers after the repair: %+v, %v; want xf-gone, 7 units to shard 1", ts, err)
	}
	if n, err := f.e.CompleteTransfers(ctx, from, "sweeper"); err != nil || n != 1 {
		t.Fatalf("complete transfers: %v (%d)", err, n)
	}
	if after := f.units(t); after != before {
		t.Fatalf("the pool holds %d units after the repair and the sweeper, %d before", after, before)
	}
	f.persistedClean(t, "after the transfer completed")
}

// TestRebuildMendsTransfers: a transfer between two partitions completed, and then one of
// them lost its side of it (with other writes the ledger holds, so it is rebuilt), while the
// other kept its side: a Redis Cluster failover that loses one node's last writes. The rebuild
// completes the transfer from the side the ledger holds: the pool's units add up.
func TestRebuildMendsTransfers(t *testing.T) {
	for _, lost := range []string{"destination", "source"} {
		t.Run(lost, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t)
			from, to := f.e.PartitionOf("s1", "a", 0), f.e.PartitionOf("s1", "a", 1)
			transfer := func(qty int64, id string) {
				if _, err := f.e.Transfer(ctx, "s1", "a", 0, 1, qty, id, "test"); err != nil {
					t.Fatal(err)
				}
			}
			before := f.units(t)
			p := to
			if lost == "source" {
				p = from
			}
			restore := f.dumpPartition(t, p)
			transfer(3, "x-persisted")
			f.workload(t, "persist", 0) // both sides of it in the ledger
			transfer(5, "x-lost")       // only in Redis
			restore()                   // p loses both transfers' sides
			f.workload(t, "persist", 0) // the other side of x-lost reaches the ledger
			f.repairThenCleanAll(t, KindLedgerAhead)
			if after := f.units(t); after != before {
				t.Fatalf("the pool holds %d units after the repair, %d before", after, before)
			}
			f.persistedClean(t, "after the repair")
		})
	}
}

// units are the units pool s1/a holds: available, held and sold.
func (f *fixture) units(t *testing.T) int64 {
	t.Helper()
	a, err := f.e.Availability(context.Background(), "s1", "a")
	if err != nil {
		t.Fatal(err)
	}
	return a.Available + a.Held + a.Committed
}

// TestRepairForkBackorderLost: what the fork did with backorders is not carried over (the
// queue's order is the ledger's). Its told parts are reported, and their storefront is told
// once for each hold it no longer has: a backorder placed on the fork, and the sale, on the
// fork, of a backorder the ledger's account has open. A backorder the fork placed and
// released is reported as placed, and tells nothing. The partition reconciles clean afterwards.
func TestRepairForkBackorderLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	hooks, received := noticeReceiver(t, f, "shop")
	f.r.WithNotices(hooks)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s2", SKU: "bo", Shards: 1, Policy: engine.PolicyBackorder, BackorderLimit: 9}, 1)
	p := f.e.PartitionOf("s2", "bo", 0)
	reserve := func(key string) *engine.Hold {
		h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s2", SKU: "bo", Qty: 2}}, IdempotencyKey: key, Actor: "shop"})
		if err != nil || !h.Parts[0].Backordered {
			t.Fatalf("%s: %v %+v, want backordered", key, err, h)
		}
		return h
	}
	early := reserve("early") // in the ledger, and in what Redis goes back to
	f.workload(t, "persist", 0)
	restore := f.dumpPartition(t, p)
	reserve("first")
	f.workload(t, "persist", 0)
	restore()
	second := reserve("second") // the fork, back before the first, backorders again
	third := reserve("third")
	if err := f.e.Release(ctx, third.ID, "shop"); err != nil { // and gives one back
		t.Fatal(err)
	}
	if err := f.e.Commit(ctx, early.ID, "shop"); err != nil { // and sells the early one
		t.Fatal(err)
	}
	f.workload(t, "persist", 0)
	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	conflicts := map[string]bool{}
	for _, fd := range rep.Findings {
		if fd.Kind == KindForkConflict {
			conflicts[fd.Detail[:strings.Index(fd.Detail, " (")]] = true
		} else if !fd.Repaired {
			t.Fatalf("not repaired: %+v", fd)
		}
	}
	if !conflicts["forked BACKORDERED"] || conflicts["forked RELEASED"] || !conflicts["forked COMMITTED"] {
		t.Fatalf("conflicts %v, want the fork's backorders and sale reported (its release of one of them loses nothing)", conflicts)
	}
	f.persistedClean(t, "after repair")
	got := map[string]alerts.LostHoldPayload{}
	for _, n := range received() {
		got[n.HoldID] = n
	}
	if n := got[second.ID]; len(got) != 2 || !n.Backordered || n.Sold || n.Qty != 2 {
		t.Fatalf("notices %+v, want one that backorder %s is gone", got, second.ID)
	}
	if n := got[early.ID]; !n.Backordered || !n.Sold {
		t.Fatalf("notices %+v, want one that the sale of %s is gone", got, early.ID)
	}
	if a, err := f.e.Availability(ctx, "s2", "bo"); err != nil || a.Backordered != 4 {
		t.Fatalf("after the repair: %v %+v, want the ledger's backorders of 2 and 2", err, a)
	}
}

// TestRepairForkSaleAfterFill: the fork gave a hold's unit back, which filled a backorder
// there, and then sold that backorder. The repair carries the give-back over; Redis fills the
// backorder again as it does so, and the repair then carries the sale over too (the client
// was told sold): nothing is reported lost.
func TestRepairForkSaleAfterFill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	hooks, received := noticeReceiver(t, f, "shop")
	f.r.WithNotices(hooks)
	testengine.Pool(t, f.e, engine.PoolConfig{Location: "s2", SKU: "sf", Shards: 1, Policy: engine.PolicyBackorder, BackorderLimit: 5}, 1)
	p := f.e.PartitionOf("s2", "sf", 0)
	reserve := func(key string, backordered bool) *engine.Hold {
		h, err := f.e.Reserve(ctx, engine.ReserveRequest{Items: []engine.Item{{Location: "s2", SKU: "sf", Qty: 1}}, IdempotencyKey: key,
			TTL: time.Minute, Actor: "shop"})
		if err != nil || h.Parts[0].Backordered != backordered {
			t.Fatalf("%s: %v %+v, want backordered %v", key, err, h, backordered)
		}
		return h
	}
	held := reserve("held", false)
	owed := reserve("owed", true)
	f.workload(t, "persist", 0)
	restore := f.dumpPartition(t, p)
	if _, err := f.e.Extend(ctx, held.ID, 2*time.Minute, "shop"); err != nil { // in the ledger, lost by Redis
		t.Fatal(err)
	}
	f.workload(t, "persist", 0)
	restore()
	if err := f.e.Release(ctx, held.ID, "shop"); err != nil { // the fork: the unit fills "owed"
		t.Fatal(err)
	}
	if err := f.e.Commit(ctx, owed.ID, "shop"); err != nil {
		t.Fatal(err)
	}
	f.workload(t, "persist", 0)
	rep, err := f.r.Run(ctx, Options{TransferGrace: time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range rep.Findings {
		if !fd.Repaired {
			t.Fatalf("not repaired: %+v", fd)
		}
	}
	f.persistedClean(t, "after repair")
	if got, err := f.e.GetHold(ctx, owed.ID, "shop"); err != nil || got.Status != engine.StatusCommitted || got.Parts[0].Backordered {
		t.Fatalf("the sale told: %v %+v", err, got)
	}
	if got := received(); len(got) != 0 {
		t.Fatalf("notices %+v, want none", got)
	}
}

// failingNotices queues notices through next and then fails, as a repair that stops right
// after sending one would.
type failingNotices struct{ next LostHoldNotices }

func (n failingNotices) HoldLost(ctx context.Context, h engine.LostHold) error {
	if err := n.next.HoldLost(ctx, h); err != nil {
		return err
	}
	return errors.New("stopped")
}
