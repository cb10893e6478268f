package bench

import (
	"runtime"
	"testing"
	"time"
)

// TestCost costs windows of a made-up trace: inside one step, across steps, beyond its ends,
// and with Redis or /proc/stat missing from a reading.
func TestCost(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(ms int, busy, total, self, redis, trips, calls, reserves float64) reading {
		r := reading{at: at(ms)}
		r.v[cBusy], r.v[cTotal], r.v[cSelf], r.v[cRedis] = busy, total, self, redis
		r.v[cRoundTrips], r.v[cCalls], r.v[cReserves] = trips, calls, reserves
		return r
	}
	tr := &trace{readings: []reading{
		mk(0, 10, 20, 1, 5, 0, 0, 0),
		mk(1000, 11.8, 22, 2, 5.5, 100, 400, 2000),
		mk(2000, 13, 24, 2.5, 6, 100, 400, 2000),
	}}
	cases := []struct {
		name     string
		from, to time.Time
		n        int64
		want     CPU
		group    *Coalescing
	}{
		// 1.8 s busy of 2 s, 1 s this process, 0.5 s Redis over 1,000 requests; 2,000 reserves
		// in 400 calls in 100 pipelines.
		{"one step", at(0), at(1000), 1000, CPU{Busy: 0.9, MachineUs: 1800, ProcessUs: 1000, RedisUs: 500, OtherUs: 300},
			&Coalescing{ReservesPerRoundTrip: 20, ReservesPerCall: 5}},
		// Half of each step: 0.9 + 0.6 busy of 2, 0.5 + 0.25 self, 0.25 + 0.25 Redis.
		{"across steps", at(500), at(1500), 500, CPU{Busy: 0.75, MachineUs: 3000, ProcessUs: 1500, RedisUs: 1000, OtherUs: 500},
			&Coalescing{ReservesPerRoundTrip: 20, ReservesPerCall: 5}},
		// Clamped to the readings: the whole trace.
		{"beyond the ends", at(-5000), at(9000), 3000, CPU{Busy: 0.75, MachineUs: 1000, ProcessUs: 500, RedisUs: 333.3, OtherUs: 166.7},
			&Coalescing{ReservesPerRoundTrip: 20, ReservesPerCall: 5}},
		// The coalescer sent nothing in the second step.
		{"idle coalescer", at(1000), at(2000), 100, CPU{Busy: 0.6, MachineUs: 12000, ProcessUs: 5000, RedisUs: 5000, OtherUs: 2000}, nil},
	}
	for _, c := range cases {
		got := tr.cost(c.from, c.to, c.n)
		if got == nil || *got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
		g := tr.coalescing(c.from, c.to)
		if (g == nil) != (c.group == nil) || (g != nil && *g != *c.group) {
			t.Errorf("%s: coalescing %+v, want %+v", c.name, g, c.group)
		}
	}
	for _, none := range []*CPU{tr.cost(at(0), at(1000), 0), tr.cost(at(1000), at(1000), 10), (*trace)(nil).cost(at(0), at(1), 1)} {
		if none != nil {
			t.Errorf("no requests, no time or no trace: got %+v", none)
		}
	}

	tr.readings[2].v[cRedis] = 1 // Redis restarted during the second step: no Redis figure
	if got := tr.cost(at(0), at(2000), 1000); got == nil || got.RedisUs != 0 || got.OtherUs != 1500 {
		t.Errorf("Redis restarted: got %+v", got)
	}
	tr.readings[1].missing = 1 << cRedis // INFO failed once: no Redis figure across that reading
	tr.readings[2].missing = 1 << cTotal // /proc/stat unreadable at the end
	got := tr.cost(at(0), at(2000), 1000)
	if want := (CPU{ProcessUs: 1500}); got == nil || *got != want {
		t.Errorf("missing readings: got %+v, want %+v", got, want)
	}
}

// TestMerged costs two runs taken in turns with others as one: what ran between them (here a
// busy gap in the readings) is left out.
func TestMerged(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(ms int, busy, total, self, redis, trips, reserves float64) reading {
		r := reading{at: at(ms)}
		r.v[cBusy], r.v[cTotal], r.v[cSelf], r.v[cRedis] = busy, total, self, redis
		r.v[cRoundTrips], r.v[cCalls], r.v[cReserves] = trips, trips, reserves
		return r
	}
	samples := func(n int) []sample {
		out := make([]sample, n)
		for i := range out {
			out[i] = sample{start: int64(i), lat: int64(1+i) * int64(time.Millisecond), out: OK, kind: Reserve}
		}
		return out
	}
	// Run one: 1 s, 1.6 s busy of 2, 0.5 s self, 0.4 s Redis, 300 reserves in 30 trips. Run
	// two, two seconds later: 1 s, 1.2 s busy of 2, 0.3 s self, 0.2 s Redis, 100 in 20.
	one := &Recording{Start: at(0), Elapsed: time.Second, Samples: samples(300),
		counters: &trace{readings: []reading{mk(0, 0, 0, 0, 0, 0, 0), mk(1000, 1.6, 2, 0.5, 0.4, 30, 300)}}}
	two := &Recording{Start: at(3000), Elapsed: time.Second, Samples: samples(100), Missed: 2,
		counters: &trace{readings: []reading{mk(3000, 50, 60, 9, 9, 90, 900), mk(4000, 51.2, 62, 9.3, 9.2, 110, 1000)}}}
	m := merged([]*Recording{one, two})
	st := m.summary()
	if st.Requests != 400 || st.Seconds != 2 || st.ThroughputRPS != 200 || m.Missed != 2 {
		t.Errorf("merged: %d requests over %.1f s (%.1f/s), %d missed", st.Requests, st.Seconds, st.ThroughputRPS, m.Missed)
	}
	// 2.8 s busy of 4, 0.8 s self, 0.6 s Redis over 400 requests; 400 reserves in 50 trips.
	want := CPU{Busy: 0.7, MachineUs: 7000, ProcessUs: 2000, RedisUs: 1500, OtherUs: 3500}
	if st.CPU == nil || *st.CPU != want {
		t.Errorf("merged CPU %+v, want %+v", st.CPU, want)
	}
	if g := st.Coalescing; g == nil || g.ReservesPerRoundTrip != 8 || g.ReservesPerCall != 8 {
		t.Errorf("merged coalescing %+v", g)
	}
	// A run without counters leaves the merge uncosted rather than costed in part.
	if st := merged([]*Recording{one, {Start: at(5000), Elapsed: time.Second, Samples: samples(10)}}).summary(); st.CPU != nil || st.Requests != 310 {
		t.Errorf("merged with an uncounted run: %+v", st)
	}
}

func TestRedisCPU(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\nused_cpu_sys_main_thread:1.4\r\n" +
		"# CPU\r\nused_cpu_sys:0.25\r\nused_cpu_user:0.0\r\n"
	if got := redisCPU(info); got != 4 {
		t.Errorf("got %v, want 4 (both nodes, main process only)", got)
	}
	// A field is matched whole: used_cpu_sys_children and used_cpu_sys_main_thread are not
	// used_cpu_sys.
	if got := infoValues(info, "used_cpu_sys"); len(got) != 2 || got[0] != "1.500000" || got[1] != "0.25" {
		t.Errorf("infoValues: got %q", got)
	}
}

func TestMachineCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	busy, total := machineCPU()
	if busy <= 0 || total < busy {
		t.Fatalf("busy %v of %v seconds", busy, total)
	}
	// The counters only grow, and 200 ms of wall time adds about CPUs × 0.2 s in all.
	time.Sleep(200 * time.Millisecond)
	b2, t2 := machineCPU()
	if b2 < busy || t2 <= total || t2-total > float64(runtime.NumCPU())*0.4 {
		t.Errorf("after 200 ms: busy %v -> %v, total %v -> %v", busy, b2, total, t2)
	}
}
