package bench

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Run brings flashhold up in this process over env, measures the baselines, runs every
// scenario in opts and returns the report. The caller owns env's key prefix and schema.
func Run(ctx context.Context, env Env, opts Options) (*Report, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b, err := start(ctx, env, opts)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	r := &Report{Started: time.Now().UTC(), Options: opts, Scenarios: map[string]*Scenario{}}
	r.Machine = b.machine(ctx)
	b.say("baselines: %s each, %d clients", opts.BaselineDuration, opts.Clients)
	if r.Baselines, r.RowLockPool, err = b.baselines(ctx); err != nil {
		return nil, err
	}
	for _, name := range opts.Scenarios {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.settle(ctx, 60*time.Second)
		b.say("scenario %s: %s, %d clients", name, opts.Duration, opts.Clients)
		var sc *Scenario
		switch name {
		case FlashSale:
			sc, err = b.flashSale(ctx, &r.Memory)
		case Catalog:
			sc, err = b.catalog(ctx)
		case Cart:
			sc, err = b.cart(ctx)
		case Regional:
			sc, err = b.regional(ctx)
		case ExpiryStorm:
			sc, err = b.expiryStorm(ctx)
		case Spike:
			sc, err = b.spike(ctx)
		case Import:
			sc, err = b.imports(ctx)
		}
		if err != nil {
			return nil, err
		}
		r.attach(sc)
		r.Scenarios[name] = sc
		b.say("scenario %s: %.0f req/s, p99 %.2f ms, oversold %d, undersold %d, errors %d", name, sc.ThroughputRPS, sc.P99Ms, sc.Oversold, sc.Undersold, sc.Errors)
	}
	r.Memory.PeakRSSMiB = peakRSSMiB()
	return r, nil
}

// attach copies the baselines into a scenario and computes its ratios.
func (r *Report) attach(sc *Scenario) {
	sc.Baselines = map[string]Rate{}
	for name, st := range r.Baselines {
		sc.Baselines[name] = Rate{ThroughputRPS: st.ThroughputRPS}
	}
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return round(a/b, 3)
	}
	hello, pg := r.Baselines[HTTPHello].ThroughputRPS, r.Baselines[PostgresRowLock].ThroughputRPS
	sc.Ratios = map[string]float64{
		"http_vs_hello":          ratio(sc.ThroughputRPS, hello),
		"http_vs_postgres":       ratio(sc.ThroughputRPS, pg),
		"engine_vs_redis_script": ratio(r.Baselines[EngineInProcess].ThroughputRPS, r.Baselines[RedisScript].ThroughputRPS),
	}
	for _, p := range sc.Phases {
		if p.Name == "sold out" {
			sc.Ratios["sold_out_vs_hello"] = ratio(p.ThroughputRPS, hello)
		}
	}
}

func (b *bench) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if kb := procValue("/proc/meminfo", "MemTotal:"); kb > 0 {
		m.MemoryGiB = round(float64(kb)/(1<<20), 1)
	}
	if info, err := b.env.Redis.Info(ctx, "server").Result(); err == nil {
		if v := infoValues(info, "redis_version"); len(v) > 0 {
			m.Redis = v[0]
		}
	}
	_ = b.env.Postgres.QueryRow(ctx, "SHOW server_version").Scan(&m.Postgres)
	return m
}

// peakRSSMiB is this process's peak resident set size (VmHWM).
func peakRSSMiB() float64 {
	return round(float64(procValue("/proc/self/status", "VmHWM:"))/1024, 1)
}

// procValue reads the number (in kB) after name in a /proc file; 0 when absent.
func procValue(path, name string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
