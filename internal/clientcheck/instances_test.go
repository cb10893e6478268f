package clientcheck

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testwait"
)

// TestInstances runs two serve processes on one Redis and one Postgres schema behind a
// round-robin client, kills one (kill -9) under load, and checks that the survivor takes
// over the leases of the background work it held (sweeper, persister, rebalancer, alerts,
// the scheduled reconciliation) within their lease time, and that every answer still holds:
// each event persisted once, none dropped (Check, with a reconciliation).
func TestInstances(t *testing.T) {
	t.Parallel() // its own servers, prefix and database; the overload tests run alone before it
	heavy(t)
	a := Start(t, false, "FLASHHOLD_RECONCILE_EVERY=2s")
	b := a.Another()
	pools := setUp(t, a)
	w := NewWorkload(a.URL, pools)
	w.Spread = []string{a.URL, b.URL}
	watch := a.WatchLeases(20 * time.Millisecond)
	defer watch.Stop()
	const clients = 12
	during(w, clients, 2*time.Second, 0, nil)
	a.Logf("plain traffic through both: %d operations", len(w.Ops()))

	// Kill the instance that holds the alerts lease (one instance's at a time), so that at
	// least that lease must move; the partitions' leases are shared between the two.
	victim, survivor := a, b
	if owner, _ := a.rdb.Get(t.Context(), a.prefix+":lease:alerts").Result(); strings.Contains(owner, "-"+strconv.Itoa(b.Pid())+"-") {
		victim, survivor = b, a
	}
	pid := victim.Pid()
	var killed time.Time
	during(w, clients, 8*time.Second, 2*time.Second, func() {
		killed = time.Now()
		victim.KillServe()
		victim.Logf("serve %s (pid %d) killed", victim.URL, pid)
	})
	time.Sleep(2 * time.Second) // the longest lease (persister's, 5 s) has lapsed by now
	win := RefusalWindow(w.Ops(), killed)
	a.Logf("after the kill: %s (the client keeps sending every other request to the dead instance, and its retry to the live one)", win)
	a.Logf("answered 503 by the survivor after the kill: %s", ServiceWindow(w.Ops(), killed))

	moves := watch.Moves(pid, killed)
	if len(moves) == 0 {
		t.Errorf("the killed instance held no lease")
	}
	for _, name := range sortedKeys(moves) {
		d := moves[name]
		if d < 0 && name == "reconcile" {
			// Renewed while a run goes on, every third of its 15 s: the killed instance's run
			// holds the next ones off until its last renewal lapses.
			if !testwait.For(20*time.Second, func() bool { d = watch.Moves(pid, killed)[name]; return d >= 0 }) {
				t.Errorf("lease reconcile stayed with the killed instance for 20 s")
				continue
			}
		}
		if d < 0 {
			t.Errorf("lease %s stayed with the killed instance", name)
			continue
		}
		a.Logf("lease %s moved to the survivor %s after the kill", name, d.Round(time.Millisecond))
	}
	if d, ok := moves["reconcile"]; !ok || d >= 0 {
		// The survivor runs the scheduled reconciliation (the machine's load may hold it off a
		// few seconds). Its metric says when a run finished: a run can be shorter than the
		// lease watch's polling.
		var ran time.Duration
		if !testwait.For(20*time.Second, func() bool {
			at := survivor.Metric("flashhold_reconcile_last_run_timestamp_seconds")
			ran = time.Duration((at - float64(killed.UnixNano())/1e9) * float64(time.Second))
			return ran > 0
		}) {
			t.Errorf("the survivor ran no scheduled reconciliation within 20 s of the kill")
		} else {
			a.Logf("the survivor finished a scheduled reconciliation %s after the kill", ran.Round(time.Millisecond))
		}
	}
	w.Spread = nil
	w.URL = survivor.URL
	rep := settleAndCheck(t, survivor, pools, w)
	if rep.Holds == 0 || rep.Commits == 0 {
		t.Errorf("the workload proves little: %s", rep.Summary())
	}
	if t.Failed() {
		t.Logf("survivor's log ends:\n%s", survivor.LogTail())
	}
}

func sortedKeys(m map[string]time.Duration) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
