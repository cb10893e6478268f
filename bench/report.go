package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is one bench run: what ran where, the baselines, and every scenario.
type Report struct {
	Started   time.Time        `json:"started"`
	Machine   Machine          `json:"machine"`
	Options   Options          `json:"options"`
	Baselines map[string]Stats `json:"baselines"`
	// RowLockPool is the pool the postgres_row_lock baseline ran through, and how it was chosen.
	RowLockPool *PoolChoice          `json:"row_lock_pool,omitempty"`
	Scenarios   map[string]*Scenario `json:"scenarios"`
	Memory      Memory               `json:"memory"`
}

// PoolChoice is the postgres_row_lock baseline's pool: its size and, when sizes were probed
// (--pg-conns 0), the closed-loop req/s of each, measured for ProbeSeconds.
type PoolChoice struct {
	Conns        int     `json:"conns"`
	ProbeSeconds float64 `json:"probe_seconds,omitempty"`
	Probed       []Probe `json:"probed,omitempty"`
}

// Probe is one pool size tried and the req/s it reached.
type Probe struct {
	Conns         int     `json:"conns"`
	ThroughputRPS float64 `json:"throughput_rps"`
}

// best is the req/s of the chosen size in the probe.
func (c *PoolChoice) best() float64 {
	for _, p := range c.Probed {
		if p.Conns == c.Conns {
			return p.ThroughputRPS
		}
	}
	return 0
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memory_gib"`
	OS        string  `json:"os"`
	Go        string  `json:"go"`
	Redis     string  `json:"redis"`
	Postgres  string  `json:"postgres"`
}

// Memory is what the run cost in memory.
type Memory struct {
	// PeakRSSMiB is this process's peak resident set: engine, API, sweeper, persister and the
	// load generator together.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// RedisBytesPerHold is the growth of Redis used_memory over the flash-sale run divided
	// by the holds open at its end (hold record, expiry entry, idempotency answer, and
	// stream entries not yet trimmed).
	RedisBytesPerHold float64 `json:"redis_bytes_per_open_hold"`
	OpenHolds         int64   `json:"open_holds_measured"`
}

// Scenario is one scenario's result. The top-level figures are the ones the targets are
// judged on: for flash-sale the selling phase, for the others the whole run; latencies are
// those of reserve requests.
type Scenario struct {
	Name          string             `json:"name"`
	ThroughputRPS float64            `json:"throughput_rps"`
	P50Ms         float64            `json:"p50_ms"`
	P99Ms         float64            `json:"p99_ms"`
	P999Ms        float64            `json:"p999_ms"`
	Errors        int64              `json:"errors"`
	Oversold      int64              `json:"oversold"`
	Undersold     int64              `json:"undersold"`
	Phases        []Phase            `json:"phases"`
	Baselines     map[string]Rate    `json:"baselines"`
	Ratios        map[string]float64 `json:"ratios"`
	Invariants    Invariants         `json:"invariants"`
	// OpenLoop is the flash-sale latency run at a fixed arrival rate.
	OpenLoop *OpenLoop `json:"open_loop,omitempty"`
	// PersisterLag is the ledger persister's largest lag seen during the run.
	PersisterLag *Lag `json:"persister_lag,omitempty"`
	// SweeperLagMaxS is the oldest overdue hold the sweeper had left, at worst (expiry-storm).
	SweeperLagMaxS *float64 `json:"sweeper_lag_max_s,omitempty"`
	// Spike is the spike scenario's account.
	Spike *SpikeResult `json:"spike,omitempty"`
	// Import is the import scenario's account.
	Import *ImportResult `json:"import,omitempty"`
	Notes  []string      `json:"notes,omitempty"`
	Series []Point       `json:"series"`
}

// Phase is a named part of a scenario's run.
type Phase struct {
	Name string `json:"name"`
	Stats
}

// Rate is a baseline's throughput as carried into each scenario.
type Rate struct {
	ThroughputRPS float64 `json:"throughput_rps"`
}

// OpenLoop is a run at a fixed arrival rate; latency counts from when each request was due.
type OpenLoop struct {
	RateRPS float64 `json:"rate_rps"`
	Missed  int64   `json:"missed"`
	Stats
	// Hello is the same open loop against http_hello: the latency the load generator and the
	// machine add at this rate.
	Hello *Stats `json:"hello,omitempty"`
	// InProcess is the same open loop through the engine itself: the latency without HTTP.
	InProcess *Stats `json:"in_process,omitempty"`
}

// Lag is the persister's largest backlog and the age of its oldest event.
type Lag struct {
	MaxEntries int64   `json:"max_entries"`
	MaxSeconds float64 `json:"max_seconds"`
}

// Invariants is the stock check read from the system after a scenario, once every hold
// has ended.
type Invariants struct {
	Pools     int   `json:"pools"`
	Stock     int64 `json:"stock"`
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
	Committed int64 `json:"committed"`
	// ClientCommitted is what the load generator was told it bought.
	ClientCommitted int64 `json:"client_committed"`
	// Oversold: units sold or held beyond the stock, negative counters, or units a client was
	// told it bought that the system does not count.
	Oversold int64 `json:"oversold"`
	// Undersold: units that vanished (neither available nor held nor sold), units sold that
	// no client was told of, and units left available although buyers were refused.
	Undersold  int64    `json:"undersold"`
	Violations []string `json:"violations,omitempty"`
}

// Target is a goal with the figure measured against it.
type Target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
	// Ceiling, when set, is the most this run's own figures allow the target's measure to
	// reach on this machine, and CeilingBy says what sets it (see phaseCeiling and
	// postgresCeiling).
	Ceiling   *float64 `json:"ceiling,omitempty"`
	CeilingBy string   `json:"ceiling_by,omitempty"`
}

// Targets checks the measured figures against the targets the suite is judged on.
func (r *Report) Targets() []Target {
	var out []Target
	add := func(name, goal string, v float64, met bool) {
		out = append(out, Target{Name: name, Goal: goal, Measured: v, Met: met})
	}
	bound := func(c ceiling, ok bool) {
		if ok {
			out[len(out)-1].Ceiling, out[len(out)-1].CeilingBy = &c.most, c.by
		}
	}
	if fs := r.Scenarios[FlashSale]; fs != nil {
		add("flash-sale http_vs_hello (selling)", ">= 0.6", fs.Ratios["http_vs_hello"], fs.Ratios["http_vs_hello"] >= 0.6)
		bound(r.phaseCeiling(fs, "selling"))
		if v, ok := fs.Ratios["sold_out_vs_hello"]; ok {
			add("flash-sale sold_out_vs_hello", ">= 0.9", v, v >= 0.9)
			bound(r.phaseCeiling(fs, "sold out"))
		}
		add("flash-sale http_vs_postgres", ">= 25", fs.Ratios["http_vs_postgres"], fs.Ratios["http_vs_postgres"] >= 25)
		bound(r.postgresCeiling())
		add("engine_vs_redis_script", ">= 2.0", fs.Ratios["engine_vs_redis_script"], fs.Ratios["engine_vs_redis_script"] >= 2)
		if fs.OpenLoop != nil {
			add("reserve p99 at half the max rate (ms)", "<= 5", fs.OpenLoop.P99Ms, fs.OpenLoop.P99Ms <= 5 && fs.OpenLoop.Errors == 0)
		}
		if fs.PersisterLag != nil {
			add("persister lag through flash-sale (s)", "< 2", fs.PersisterLag.MaxSeconds, fs.PersisterLag.MaxSeconds < 2)
		}
	}
	for _, name := range r.scenarioNames() {
		s := r.Scenarios[name]
		add(name+" oversold+undersold", "= 0", float64(s.Oversold+s.Undersold), s.Oversold == 0 && s.Undersold == 0 && len(s.Invariants.Violations) == 0)
	}
	return out
}

func (r *Report) scenarioNames() []string {
	var names []string
	for _, n := range Scenarios {
		if r.Scenarios[n] != nil {
			names = append(names, n)
		}
	}
	return names
}

// Clean reports whether every scenario ended with nothing oversold, undersold or in error.
func (r *Report) Clean() bool {
	for _, s := range r.Scenarios {
		if s.Oversold != 0 || s.Undersold != 0 || len(s.Invariants.Violations) > 0 {
			return false
		}
	}
	return true
}

// Write puts report.json, report.md and the plots into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// report.json carries the targets too, with what was measured against them.
	js, err := json.MarshalIndent(struct {
		*Report
		Targets []Target `json:"targets"`
	}{r, r.Targets()}, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{"report.json": append(js, '\n'), "report.md": []byte(r.Markdown())}
	for name, svg := range r.plots() {
		files[name] = []byte(svg)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// cpuTable writes what every run cost in CPU per request.
func (r *Report) cpuTable(b *strings.Builder, baselines []string) {
	b.WriteString("\n## CPU per request\n\nMicroseconds of one core per request, spent by the whole machine (/proc/stat), by the bench process (load generator, API, engine, sweeper and persister), by Redis (INFO cpu) and by the rest (Postgres, the kernel's threads, anything else). A closed loop that keeps the machine busy answers at most CPUs × 10⁶ / machine µs requests a second. The last column is how the engine's coalescer grouped the run: reserves per round trip and per script call, or sold-out idempotency reads per pipeline.\n\n")
	b.WriteString("| run | req/s | machine busy | machine µs | bench process µs | Redis µs | rest µs | coalesced |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	row := func(name string, st *Stats) {
		if st == nil || st.CPU == nil {
			return
		}
		c := st.CPU
		fmt.Fprintf(b, "| %s | %.0f | %.0f%% | %.1f | %.1f | %.1f | %.1f | %s |\n", name, st.ThroughputRPS, c.Busy*100, c.MachineUs, c.ProcessUs, c.RedisUs, c.OtherUs, grouping(st.Coalescing))
	}
	for _, n := range baselines {
		st := r.Baselines[n]
		row("baseline "+n, &st)
	}
	for _, n := range r.scenarioNames() {
		s := r.Scenarios[n]
		for i := range s.Phases {
			row(n+" "+s.Phases[i].Name, &s.Phases[i].Stats)
		}
		if ol := s.OpenLoop; ol != nil {
			row(fmt.Sprintf("%s open loop at %.0f/s", n, ol.RateRPS), &ol.Stats)
			row(n+" open loop against http_hello", ol.Hello)
			row(n+" open loop in process", ol.InProcess)
		}
	}
}

// ceiling is the most a target's measure can reach on this machine, by this run's figures.
type ceiling struct {
	most float64
	by   string
}

// phaseCeiling bounds a phase's ratio to http_hello by its CPU cost: with every core busy at
// that cost, the phase answers at most CPUs × 10⁶ / machine µs requests a second. Only a
// phase that kept the machine nearly busy is bounded so, since coalescing makes a request
// cheaper under more load.
func (r *Report) phaseCeiling(s *Scenario, phase string) (ceiling, bool) {
	hello := r.Baselines[HTTPHello].ThroughputRPS
	if hello <= 0 || r.Machine.CPUs <= 0 {
		return ceiling{}, false
	}
	for _, p := range s.Phases {
		c := p.CPU
		if p.Name != phase || c == nil || c.MachineUs <= 0 || c.Busy < busyEnough {
			continue
		}
		most := float64(r.Machine.CPUs) * 1e6 / c.MachineUs
		return ceiling{most / hello, fmt.Sprintf("%.1f µs of CPU per request with the machine %.0f%% busy; at that cost %d CPUs answer at most %.0f requests/s, %.2f of http_hello",
			c.MachineUs, c.Busy*100, r.Machine.CPUs, most, most/hello)}, true
	}
	return ceiling{}, false
}

// postgresCeiling bounds http_vs_postgres: no request served over HTTP by this load generator
// and machine comes faster than http_hello's, whose handler does nothing, so flashhold over
// HTTP can be at most http_hello / postgres_row_lock times the row lock.
func (r *Report) postgresCeiling() (ceiling, bool) {
	hello, row := r.Baselines[HTTPHello].ThroughputRPS, r.Baselines[PostgresRowLock].ThroughputRPS
	if hello <= 0 || row <= 0 {
		return ceiling{}, false
	}
	return ceiling{hello / row, fmt.Sprintf("http_hello, whose handler does nothing, answered %.0f requests/s and %s %.0f; over HTTP nothing beats http_hello, so the ratio is at most %.2f here",
		hello, PostgresRowLock, row, hello/row)}, true
}

// busyEnough is how busy a phase must keep the machine for its CPU cost to bound it.
const busyEnough = 0.85

// grouping renders how the coalescer grouped a run's requests.
func grouping(c *Coalescing) string {
	if c == nil {
		return "–"
	}
	var parts []string
	if c.ReservesPerRoundTrip > 0 {
		parts = append(parts, fmt.Sprintf("%.1f reserves / round trip, %.1f / call", c.ReservesPerRoundTrip, c.ReservesPerCall))
	}
	if c.ReadsPerPipeline > 0 {
		parts = append(parts, fmt.Sprintf("%.1f reads / pipeline", c.ReadsPerPipeline))
	}
	return strings.Join(parts, "; ")
}

// describe says in a sentence which pool the row-lock baseline used and why.
func (c *PoolChoice) describe() string {
	pool := fmt.Sprintf("a pool of %d connection", c.Conns)
	if c.Conns != 1 {
		pool += "s"
	}
	if len(c.Probed) == 0 {
		return "postgres_row_lock ran through " + pool + " (--pg-conns)."
	}
	tried := make([]string, len(c.Probed))
	for i, p := range c.Probed {
		tried[i] = fmt.Sprintf("%d: %.0f/s", p.Conns, p.ThroughputRPS)
	}
	return fmt.Sprintf("postgres_row_lock ran through %s, the fastest of the pools probed for %.1f s each (connections: req/s %s).",
		pool, c.ProbeSeconds, strings.Join(tried, ", "))
}
