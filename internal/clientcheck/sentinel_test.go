package clientcheck

import (
	"context"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testwait"
)

// TestSentinelFailover kills the Redis primary (kill -9) under load while serve follows it
// through three Sentinels, and checks what clients were told once a replica is promoted.
// With FLASHHOLD_REDIS_WAIT_REPLICAS=1 every write a client was answered is on a replica
// before the answer, and the promoted replica is the most advanced, so nothing answered is
// lost. Two replicas: with one, the promoted primary would have none left to wait for, and
// every write would be refused until the old primary came back as its replica.
func TestSentinelFailover(t *testing.T) {
	t.Run("wait", func(t *testing.T) { sentinelFailover(t) })
}

func sentinelFailover(t *testing.T) {
	r := StartSentinel(t, 2, "FLASHHOLD_REDIS_WAIT_REPLICAS=1", "FLASHHOLD_REDIS_WAIT_TIMEOUT=200ms")
	pools := setUp(t, r.Service)
	w := NewWorkload(r.URL, pools)
	const clients = 12
	during(w, clients, 2*time.Second, 0, nil)
	r.Logf("plain traffic: %d operations", len(w.Ops()))

	var killed, promoted time.Time
	var newPrimary string
	during(w, clients, 10*time.Second, 2*time.Second, func() {
		killed = time.Now()
		r.Primary.Kill()
		r.Logf("primary %s killed", r.Primary.Addr)
		testwait.Until(t, 15*time.Second, "a Sentinel names a new primary", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			a, err := r.Sentinels.Primary(ctx, 0)
			newPrimary = a
			return err == nil && a != r.Primary.Addr
		})
		promoted = time.Now()
		r.Logf("sentinel names %s the primary, %s after the kill", newPrimary, promoted.Sub(killed).Round(time.Millisecond))
	})
	win := RefusalWindow(w.Ops(), killed)
	r.Logf("after the kill: %s; promotion at +%s", win, promoted.Sub(killed).Round(time.Millisecond))
	if win.Last > 15*time.Second {
		t.Errorf("serve refused for too long after the failover: %s", win)
	}
	rep := settleAndCheck(t, r.Service, pools, w)
	if rep.Holds == 0 || rep.Commits == 0 {
		t.Errorf("the workload proves little: %s", rep.Summary())
	}
	if t.Failed() {
		t.Logf("serve's log ends:\n%s", r.LogTail())
	}
}
