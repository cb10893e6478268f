package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Markdown renders the report as tables a person reads.
func (r *Report) Markdown() string {
	var b strings.Builder
	r.mdTargets(&b)
	names := r.mdBaselines(&b)
	r.mdScenarios(&b)
	r.mdSpike(&b)
	r.mdImport(&b)
	r.cpuTable(&b, names)
	r.mdInvariants(&b)
	r.mdRatios(&b)
	r.mdMemoryAndPlots(&b)
	return b.String()
}

// mdTargets writes the title, the run's machine and options, and the targets.
func (r *Report) mdTargets(b *strings.Builder) {
	m := r.Machine
	fmt.Fprintf(b, "# flashhold bench report\n\n")
	fmt.Fprintf(b, "Run %s on %d CPUs, %.1f GiB, %s; %s, Redis %s, PostgreSQL %s. Load generator, API, engine, sweeper and persister in one process; Redis and PostgreSQL on the same machine.\n\n",
		r.Started.UTC().Format(time.RFC3339), m.CPUs, m.MemoryGiB, m.OS, m.Go, m.Redis, m.Postgres)
	o := r.Options
	fmt.Fprintf(b, "Options: %d clients, %s per scenario, %s per baseline, flash-sale stock %d on %d shards, catalog %d SKUs × %d, cart %d SKUs, expiry storm %d holds.\n\n",
		o.Clients, o.Duration, o.BaselineDuration, o.Stock, o.Shards, o.SKUs, o.SKUStock, o.CartSKUs, o.StormHolds)
	b.WriteString("## Targets\n\nThe ceiling is the most this run's own figures allow on this machine: for a flash-sale phase, at the CPU cost per request it was measured at; for http_vs_postgres, for any HTTP handler at all. Below the table, what sets each.\n\n| target | goal | measured | met | ceiling here |\n|---|---|---:|---|---:|\n")
	var why []string
	for _, t := range r.Targets() {
		met := "yes"
		if !t.Met {
			met = "**no**"
		}
		ceil := "–"
		if t.Ceiling != nil {
			ceil = fmt.Sprintf("%.2f", *t.Ceiling)
			why = append(why, fmt.Sprintf("- %s: %s", t.Name, t.CeilingBy))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", t.Name, t.Goal, trimFloat(t.Measured), met, ceil)
	}
	if len(why) > 0 {
		b.WriteString("\n" + strings.Join(why, "\n") + "\n")
	}
}

// mdBaselines writes the baselines and returns their names.
func (r *Report) mdBaselines(b *strings.Builder) []string {
	o := r.Options
	b.WriteString("\n## Baselines (closed loop, same clients)\n\n| baseline | req/s | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|\n")
	var names []string
	for n := range r.Baselines {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := r.Baselines[n]
		fmt.Fprintf(b, "| %s | %.0f | %.2f | %.2f | %.2f | %d |\n", n, s.ThroughputRPS, s.P50Ms, s.P99Ms, s.P999Ms, s.Errors)
	}
	fmt.Fprintf(b, "\n%s and %s took turns: %d rounds of %s each, %s first, each round in the reverse order of the one before; each figure sums its rounds.\n",
		RedisScript, EngineInProcess, Rounds, o.BaselineDuration/Rounds, RedisScript)
	if c := r.RowLockPool; c != nil {
		b.WriteString("\n" + c.describe() + "\n")
	}
	return names
}

// mdScenarios writes each scenario's phases.
func (r *Report) mdScenarios(b *strings.Builder) {
	b.WriteString("\n## Scenarios\n\n| scenario | phase | requests | ok | refused | errors | req/s | p50 ms | p99 ms | p99.9 ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range r.scenarioNames() {
		s := r.Scenarios[n]
		for _, p := range s.Phases {
			fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %d | %.0f | %.2f | %.2f | %.2f |\n", n, p.Name, p.Requests, p.OK, p.Refused, p.Errors, p.ThroughputRPS, p.P50Ms, p.P99Ms, p.P999Ms)
		}
		if ol := s.OpenLoop; ol != nil {
			fmt.Fprintf(b, "| %s | open loop at %.0f/s | %d | %d | %d | %d | %.0f | %.2f | %.2f | %.2f |\n", n, ol.RateRPS, ol.Requests, ol.OK, ol.Refused, ol.Errors+ol.Missed, ol.ThroughputRPS, ol.P50Ms, ol.P99Ms, ol.P999Ms)
			for _, x := range []struct {
				name string
				st   *Stats
			}{{"the same open loop against http_hello", ol.Hello}, {"the same open loop in process (engine, no HTTP)", ol.InProcess}} {
				if h := x.st; h != nil {
					fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %d | %.0f | %.2f | %.2f | %.2f |\n", n, x.name, h.Requests, h.OK, h.Refused, h.Errors, h.ThroughputRPS, h.P50Ms, h.P99Ms, h.P999Ms)
				}
			}
		}
	}
}

// mdSpike writes the spike scenario's phases and recovery.
func (r *Report) mdSpike(b *strings.Builder) {
	if s := r.Scenarios[Spike]; s != nil && s.Spike != nil {
		sp := s.Spike
		fmt.Fprintf(b, "\n## Spike\n\nCapacity (closed loop, %d clients): %.0f requests/s. Open loops from %d senders, %s each; latency of the requests served (not shed), from when each was due and from when it was sent, and how late the generator sent (p99 of all requests).\n\n",
			r.Options.Clients, sp.CapacityRPS, sp.Workers, r.Options.Duration)
		b.WriteString("| phase | offered/s | sent/s | unsent | goodput/s | goodput / capacity | shed/s | errors | p50 ms | p99 ms | p99 from sent ms | send lag p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range sp.Phases {
			fmt.Fprintf(b, "| %s | %.0f | %.0f | %d | %.0f | %.2f | %.0f | %d | %.2f | %.2f | %.2f | %.2f |\n", p.Name, p.OfferedRPS, p.SentRPS, p.Unsent, p.GoodputRPS,
				p.GoodputRPS/sp.CapacityRPS, p.ShedRPS, p.Errors, p.P50Ms, p.P99Ms, p.SentP99Ms, p.LagP99Ms)
		}
		recovered := "never, within the phase"
		if sp.RecoveryS >= 0 {
			recovered = fmt.Sprintf("%.2f s", sp.RecoveryS)
		}
		fmt.Fprintf(b, "\nAfter the spike, p99 back within max(2 × %.2f ms, %.2f ms + 5 ms) for good: %s. Server up afterwards: %v.\n",
			sp.NormalP99Ms, sp.NormalP99Ms, recovered, sp.ServerUp)
	}
}

// mdImport writes the import scenario's figures and the checkout beside it.
func (r *Report) mdImport(b *strings.Builder) {
	s := r.Scenarios[Import]
	if s == nil || s.Import == nil {
		return
	}
	im := s.Import
	yield := "yielding to checkout (FLASHHOLD_IMPORT_YIELD=true)"
	if r.Options.ImportNoYield {
		yield = "at full speed (FLASHHOLD_IMPORT_YIELD=false)"
	}
	fmt.Fprintf(b, "\n## Import\n\nOne asynchronous import, %s, of %d rows over %d pools (CSV streamed to the API): upload %.2f s, applied %.2f s after the 202, %.2f s in all, **%.0f rows/s**; %d rows applied, %d rejected, %d pools not as the file says.\n\n",
		yield, im.Rows, im.Pools, im.UploadS, im.ApplyS, im.TotalS, im.RowsPerS, im.Applied, im.Rejected, im.Wrong)
	fmt.Fprintf(b, "Checkout on another pool, open loop at %.0f holds/s:\n\n| run | requests | ok | errors | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|---:|---:|\n", im.CheckoutRPS)
	for _, p := range []struct {
		name string
		st   Stats
	}{{"alone", im.Baseline}, {"during the import", im.During}} {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %.2f | %.2f | %.2f |\n", p.name, p.st.Requests, p.st.OK, p.st.Errors, p.st.P50Ms, p.st.P99Ms, p.st.P999Ms)
	}
	fmt.Fprintf(b, "\np99 during the import / alone: %.2f.\n", im.P99Ratio)
}

// mdInvariants writes what Redis held after every scenario.
func (r *Report) mdInvariants(b *strings.Builder) {
	b.WriteString("\n## Invariants (read from Redis after every hold ended)\n\n| scenario | pools | stock | available | held | committed | client committed | oversold | undersold |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range r.scenarioNames() {
		iv := r.Scenarios[n].Invariants
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d |\n", n, iv.Pools, iv.Stock, iv.Available, iv.Held, iv.Committed, iv.ClientCommitted, iv.Oversold, iv.Undersold)
	}
}

// mdRatios writes each scenario's ratios, lags and notes.
func (r *Report) mdRatios(b *strings.Builder) {
	b.WriteString("\n## Ratios and lags\n\n")
	for _, n := range r.scenarioNames() {
		s := r.Scenarios[n]
		var keys []string
		for k := range s.Ratios {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, s.Ratios[k]))
		}
		fmt.Fprintf(b, "- **%s**: %s", n, strings.Join(parts, ", "))
		if s.PersisterLag != nil {
			fmt.Fprintf(b, "; persister lag at most %d events / %.2f s", s.PersisterLag.MaxEntries, s.PersisterLag.MaxSeconds)
		}
		if s.SweeperLagMaxS != nil {
			fmt.Fprintf(b, "; sweeper lag at most %.2f s", *s.SweeperLagMaxS)
		}
		b.WriteString("\n")
		for _, note := range s.Notes {
			fmt.Fprintf(b, "  - %s\n", note)
		}
		for _, v := range s.Invariants.Violations {
			fmt.Fprintf(b, "  - VIOLATION: %s\n", v)
		}
	}
}

// mdMemoryAndPlots writes the memory figures and links the plots.
func (r *Report) mdMemoryAndPlots(b *strings.Builder) {
	fmt.Fprintf(b, "\n## Memory\n\n- peak RSS of the bench process (engine, API, sweeper, persister and load generator): %.1f MiB\n", r.Memory.PeakRSSMiB)
	if r.Memory.OpenHolds > 0 {
		fmt.Fprintf(b, "- Redis used_memory per open hold: %.0f bytes (over %d open holds)\n", r.Memory.RedisBytesPerHold, r.Memory.OpenHolds)
	}
	b.WriteString("\n## Plots\n\n")
	for _, n := range r.scenarioNames() {
		fmt.Fprintf(b, "![%s throughput](%s)\n", n, throughputPlot(n))
	}
	b.WriteString("![latency percentiles](latency.svg)\n![throughput against baselines](baselines.svg)\n")
}
