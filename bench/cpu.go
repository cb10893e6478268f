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
	// else runs. MachineUs and OtherUs are 0 where /proc/stat cannot be read.
	MachineUs float64 `json:"machine_us_per_req"`
	ProcessUs float64 `json:"process_us_per_req"`
	RedisUs   float64 `json:"redis_us_per_req"`
	OtherUs   float64 `json:"other_us_per_req"`
}

// cpuReading is the CPU time spent up to a moment, in seconds of one core.
type cpuReading struct {
	at          time.Time
	busy, total float64 // the machine, every CPU; total 0 when /proc/stat is unreadable
	self        float64 // this process
	redis       float64 // Redis, every node; -1 when INFO failed
}

// cpuTrace is a run's readings, oldest first.
type cpuTrace struct {
	readings []cpuReading
}

// cpuEvery is how often a run's CPU counters are read.
const cpuEvery = 250 * time.Millisecond

// drive runs op under l as Drive does and reads the CPU counters throughout, so that
// phases of the run can be costed (Recording.cpuCost).
func (b *bench) drive(ctx context.Context, l Load, op Op) *Recording {
	tr := &cpuTrace{}
	read := func() { tr.readings = append(tr.readings, b.readCPU(ctx)) }
	read()
	stop := every(cpuEvery, read)
	run := Drive(ctx, l, op)
	stop() // returns after the last read: tr is this goroutine's again
	read()
	run.cpu = tr
	return run
}

func (b *bench) readCPU(ctx context.Context) cpuReading {
	r := cpuReading{at: time.Now(), redis: -1}
	r.busy, r.total = machineCPU()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.self = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	if info, err := b.env.Redis.Info(ctx, "cpu").Result(); err == nil {
		r.redis = redisCPU(info)
	}
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
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			n, _ := strconv.ParseFloat(v, 64)
			s += n
		}
	}
	return s
}

// at estimates the counters at t by linear interpolation between the readings around it
// (the first or last reading outside them).
func (tr *cpuTrace) at(t time.Time) cpuReading {
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
		mix := func(x, y float64) float64 { return x + (y-x)*k }
		out := cpuReading{at: t, busy: mix(a.busy, b.busy), total: mix(a.total, b.total), self: mix(a.self, b.self), redis: -1}
		if a.total == 0 || b.total == 0 {
			out.busy, out.total = 0, 0
		}
		if a.redis >= 0 && b.redis >= 0 {
			out.redis = mix(a.redis, b.redis)
		}
		return out
	}
	return rs[len(rs)-1]
}

// cost is the CPU spent between from and to, per request of the requests answered in it;
// nil when nothing can be said.
func (tr *cpuTrace) cost(from, to time.Time, requests int64) *CPU {
	if tr == nil || len(tr.readings) < 2 || requests <= 0 || !to.After(from) {
		return nil
	}
	a, b := tr.at(from), tr.at(to)
	per := 1e6 / float64(requests)
	c := &CPU{ProcessUs: round((b.self-a.self)*per, 1)}
	if a.redis >= 0 && b.redis >= 0 {
		c.RedisUs = round((b.redis-a.redis)*per, 1)
	}
	if a.total > 0 && b.total > a.total {
		c.Busy = round((b.busy-a.busy)/(b.total-a.total), 3)
		c.MachineUs = round((b.busy-a.busy)*per, 1)
		c.OtherUs = round(max(c.MachineUs-c.ProcessUs-c.RedisUs, 0), 1)
	}
	return c
}

// cpuCost is the CPU the run spent from offset from to offset to (from its start), per
// request of the n answered in between.
func (r *Recording) cpuCost(from, to time.Duration, n int64) *CPU {
	return r.cpu.cost(r.Start.Add(from), r.Start.Add(to), n)
}

// summary is the Stats of every request of the run, with what the run cost in CPU.
func (r *Recording) summary() Stats {
	st := summarize(r.Samples, r.Elapsed, nil)
	st.CPU = r.cpuCost(0, r.Elapsed, st.Requests)
	return st
}
