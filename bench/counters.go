package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is the CPU time spent per request during a phase, in microseconds of one core, and how
// busy the machine was. A closed loop that keeps every core busy cannot answer faster than
// cores / MachineUs, so two runs' MachineUs bound the ratio of their throughputs.
type CPU struct {
	// Busy is the share of the machine's CPUs that were busy (0..1), from /proc/stat.
	Busy float64 `json:"busy"`
	// MachineUs is everything the machine ran (/proc/stat); ProcessUs this process (load
	// generator, API, engine, sweeper, persister: getrusage); RedisUs Redis (INFO cpu, every
	// node); OtherUs the machine less both: Postgres, the kernel's own threads and whatever
	// else runs (Redis too when RedisUs could not be read). MachineUs and OtherUs are 0 where
	// /proc/stat cannot be read.
	MachineUs float64 `json:"machine_us_per_req"`
	ProcessUs float64 `json:"process_us_per_req"`
	RedisUs   float64 `json:"redis_us_per_req"`
	OtherUs   float64 `json:"other_us_per_req"`
}

// Coalescing is how the engine's coalescer grouped the requests of a phase (absent for runs
// that did not go through it, such as redis_script).
type Coalescing struct {
	// ReservesPerRoundTrip and ReservesPerCall: reserves carried by each pipeline the
	// coalescer sent and by each reserve script call in them (one per partition).
	ReservesPerRoundTrip float64 `json:"reserves_per_round_trip,omitempty"`
	ReservesPerCall      float64 `json:"reserves_per_call,omitempty"`
	// ReadsPerPipeline: the sold-out path's idempotency reads carried by each pipeline.
	ReadsPerPipeline float64 `json:"reads_per_pipeline,omitempty"`
}

// The counters read while a run goes on.
const (
	cBusy       = iota // the machine's busy CPU seconds (/proc/stat, every CPU)
	cTotal             // the machine's CPU seconds, busy or not
	cSelf              // this process's CPU seconds
	cRedis             // Redis's CPU seconds, every node
	cRoundTrips        // the engine's coalesced pipelines
	cCalls             // reserve script calls in them
	cReserves          // reserves in those calls
	cPipelines         // pipelines of sold-out idempotency reads
	cReads             // reads in them
	nCounters
)

// reading is the counters at one moment. missing marks those that could not be read (bit
// 1<<counter); cTotal stands for the machine's two.
type reading struct {
	at      time.Time
	v       [nCounters]float64
	missing uint
}

func (r reading) has(c int) bool { return r.missing&(1<<c) == 0 }

// trace is a run's readings, oldest first.
type trace struct {
	readings []reading
}

// readEvery is how often a run's counters are read.
const readEvery = 250 * time.Millisecond

// drive runs op under l as Drive does and reads the counters throughout, so that phases of
// the run can be costed (Recording.costWindow).
func (b *bench) drive(ctx context.Context, l Load, op Op) *Recording {
	tr := &trace{}
	read := func() { tr.readings = append(tr.readings, b.read(ctx)) }
	read()
	stop := every(readEvery, read)
	run := Drive(ctx, l, op)
	stop() // returns after the last read: tr is this goroutine's again
	read()
	run.counters = tr
	return run
}

// closedLoop drives op as a closed loop of the run's clients for d, with progress lines
// labelled label.
func (b *bench) closedLoop(ctx context.Context, label string, d time.Duration, op Op) *Recording {
	return b.drive(ctx, Load{Workers: b.opts.Clients, Duration: d, Progress: b.progress(label)}, op)
}

// openLoop drives op as an open loop at rate requests a second for the run's open-loop
// duration, from the run's clients, with progress lines labelled label and the rate.
func (b *bench) openLoop(ctx context.Context, label string, rate float64, op Op) *Recording {
	return b.drive(ctx, Load{Workers: b.opts.Clients, Rate: rate, Duration: b.opts.OpenDuration,
		Progress: b.progress(label + " open loop " + strconv.Itoa(int(rate)) + "/s")}, op)
}

func (b *bench) read(ctx context.Context) reading {
	r := reading{at: time.Now()}
	if busy, total := machineCPU(); total > 0 {
		r.v[cBusy], r.v[cTotal] = busy, total
	} else {
		r.missing |= 1 << cTotal
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.v[cSelf] = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	} else {
		r.missing |= 1 << cSelf
	}
	if info, err := b.env.Redis.Info(ctx, "cpu").Result(); err == nil {
		r.v[cRedis] = redisCPU(info)
	} else {
		r.missing |= 1 << cRedis
	}
	st := b.eng.Stats()
	r.v[cRoundTrips], r.v[cCalls], r.v[cReserves] = float64(st.RoundTrips.Load()), float64(st.Batches.Load()), float64(st.BatchedRequests.Load())
	r.v[cPipelines], r.v[cReads] = float64(st.LookupBatches.Load()), float64(st.Lookups.Load())
	return r
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// clockTicks is the unit of /proc/stat (USER_HZ), 100 on every Linux platform Go supports.
const clockTicks = 100

// machineCPU reads the first line of /proc/stat: busy and total CPU seconds over every CPU
// (idle and iowait count as not busy; guest time is already inside user and nice).
func machineCPU() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]float64 // user nice system idle iowait irq softirq steal
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return 0, 0
		}
		v[i] = float64(n) / clockTicks
	}
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, busy + v[3] + v[4]
}

// redisCPU adds up used_cpu_sys and used_cpu_user over INFO's text (one section per node
// when a cluster client answers for several).
func redisCPU(info string) float64 {
	var s float64
	for _, v := range append(infoValues(info, "used_cpu_sys"), infoValues(info, "used_cpu_user")...) {
		n, _ := strconv.ParseFloat(v, 64)
		s += n
	}
	return s
}

// infoValues returns the values of field key in INFO's text, one per node section.
func infoValues(info, key string) []string {
	var out []string
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			out = append(out, v)
		}
	}
	return out
}

// at estimates the counters at t by linear interpolation between the readings around it
// (the first or last reading outside them).
func (tr *trace) at(t time.Time) reading {
	rs := tr.readings
	if !t.After(rs[0].at) {
		return rs[0]
	}
	for i := 1; i < len(rs); i++ {
		a, b := rs[i-1], rs[i]
		if t.After(b.at) {
			continue
		}
		span := b.at.Sub(a.at).Seconds()
		if span <= 0 {
			return b
		}
		k := t.Sub(a.at).Seconds() / span
		out := reading{at: t, missing: a.missing | b.missing}
		for c := range out.v {
			out.v[c] = a.v[c] + (b.v[c]-a.v[c])*k
		}
		return out
	}
	return rs[len(rs)-1]
}

// delta is how much each counter grew from from to to; false when nothing can be said.
func (tr *trace) delta(from, to time.Time) (reading, bool) {
	if tr == nil || len(tr.readings) < 2 || !to.After(from) {
		return reading{}, false
	}
	a, b := tr.at(from), tr.at(to)
	d := reading{at: to, missing: a.missing | b.missing}
	for c := range d.v {
		d.v[c] = b.v[c] - a.v[c]
	}
	return d, true
}

// cost is the CPU spent between from and to, per request of the requests answered in it;
// nil when nothing can be said.
func (tr *trace) cost(from, to time.Time, requests int64) *CPU {
	d, ok := tr.delta(from, to)
	if !ok || requests <= 0 {
		return nil
	}
	per := 1e6 / float64(requests)
	c := &CPU{}
	if d.has(cSelf) {
		c.ProcessUs = round(d.v[cSelf]*per, 1)
	}
	if d.has(cRedis) && d.v[cRedis] >= 0 { // less: Redis restarted, its counters with it
		c.RedisUs = round(d.v[cRedis]*per, 1)
	}
	if d.has(cTotal) && d.v[cTotal] > 0 {
		c.Busy = round(d.v[cBusy]/d.v[cTotal], 3)
		c.MachineUs = round(d.v[cBusy]*per, 1)
		c.OtherUs = round(max(c.MachineUs-c.ProcessUs-c.RedisUs, 0), 1)
	}
	return c
}

// coalescing is how the coalescer grouped what it sent between from and to; nil when it sent
// nothing.
func (tr *trace) coalescing(from, to time.Time) *Coalescing {
	d, ok := tr.delta(from, to)
	if !ok {
		return nil
	}
	per := func(n, of int) float64 {
		if d.v[of] < 1 {
			return 0
		}
		return round(d.v[n]/d.v[of], 2)
	}
	c := &Coalescing{ReservesPerRoundTrip: per(cReserves, cRoundTrips), ReservesPerCall: per(cReserves, cCalls), ReadsPerPipeline: per(cReads, cPipelines)}
	if *c == (Coalescing{}) {
		return nil
	}
	return c
}

// merged joins runs of one op made in turns with other runs: their requests (each keeping its
// start offset in its own run), their lengths added up, and their counters' growth added up,
// so that summary costs the runs together and leaves out what ran between them.
func merged(runs []*Recording) *Recording {
	out := &Recording{Start: runs[0].Start}
	var grew reading
	costed := true
	for _, r := range runs {
		out.Elapsed += r.Elapsed
		out.Samples = append(out.Samples, r.Samples...)
		out.Missed += r.Missed
		d, ok := r.counters.delta(r.Start, r.Start.Add(r.Elapsed))
		if !ok {
			costed = false
			continue
		}
		grew.missing |= d.missing
		for c := range grew.v {
			grew.v[c] += d.v[c]
		}
	}
	if costed {
		grew.at = out.Start.Add(out.Elapsed)
		out.counters = &trace{readings: []reading{{at: out.Start, missing: grew.missing}, grew}}
	}
	return out
}

// summary is the Stats of every request of the run, with what the run cost in CPU and how
// the coalescer grouped it.
func (r *Recording) summary() Stats {
	st := summarize(r.Samples, r.Elapsed, nil)
	r.costWindow(&st, 0, r.Elapsed)
	return st
}

// costWindow sets st's CPU and coalescing from the run's counters between offsets from and to.
func (r *Recording) costWindow(st *Stats, from, to time.Duration) {
	st.CPU = r.counters.cost(r.Start.Add(from), r.Start.Add(to), st.Requests)
	st.Coalescing = r.counters.coalescing(r.Start.Add(from), r.Start.Add(to))
}
