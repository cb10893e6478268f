package clientcheck

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testpg"
)

// sample is the service's footprint at one moment of a soak.
type sample struct {
	At     time.Duration // since the traffic started
	Ops    int           // operations the clients had sent by then
	Values [len(soakSeries)]float64
}

// soakSeries are what a soak samples. Flat ones must not grow once warmed up: the service
// keeps no more state for an hour of traffic than for ten minutes of it. The ledger grows by
// design (it is the record of every event); its bytes per event must stay the same.
var soakSeries = [...]struct {
	Name, Unit string
	Flat       bool
	Slack      float64 // absolute growth forgiven (small values are noisy)
}{
	{"redis used memory", "MiB", true, 4},
	{"redis keys", "keys", true, 500},
	{"stream entries", "entries", true, 2000},
	{"serve resident memory", "MiB", true, 8},
	{"serve heap in use", "MiB", true, 4},
	{"serve goroutines", "goroutines", true, 20},
	{"ledger size", "MiB", false, 0},
	{"ledger events", "events", false, 0},
}

const (
	soakFlatTolerance   = 1.25 // last third's mean at most 25% over the first third's (plus slack)
	soakLedgerTolerance = 1.5  // ledger bytes per event in the last third at most 1.5x the first
)

// TestSoak runs mixed traffic against serve with every background service on (sweeper,
// persister, alerts, GC) for FLASHHOLD_SOAK (e.g. 10m; unset: skipped; `make soak` runs
// it), samples the service's footprint every FLASHHOLD_SOAK_EVERY (10s), and fails when
// what must stay flat grows after the warm-up (FLASHHOLD_SOAK_WARM; a quarter of the run, at
// least two minutes) or when any client was told something the service does not stand by (Check). With
// FLASHHOLD_SOAK_OUT set it writes results.md and soak.svg there.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("FLASHHOLD_SOAK"))
	if err != nil {
		t.Skip("FLASHHOLD_SOAK is not a duration (make soak runs this test)")
	}
	every := 10 * time.Second
	if e, err := time.ParseDuration(os.Getenv("FLASHHOLD_SOAK_EVERY")); err == nil {
		every = e
	}
	const clients = 16
	s := Start(t, false,
		// Idempotency records are kept for a minute instead of an hour, so that the run
		// reaches its steady state within its warm-up (no hold may outlive its record).
		"FLASHHOLD_IDEMPOTENCY_TTL=60s", "FLASHHOLD_HOLD_TTL_MAX=60s",
		"FLASHHOLD_STREAM_KEEP=2000")
	s.Remember = 60 * time.Second
	pools := setUp(t, s)
	w := NewWorkload(s.URL, pools)
	// The same mix all run: a steady pace, and a vendor who refills a pool running low.
	w.Refill, w.Pace = 200, 5*time.Millisecond
	pg := testpg.Pool(t, testpg.URL(), s.schema)
	ctx := context.Background()

	var samples []sample
	take := func(at time.Duration) {
		var v [len(soakSeries)]float64
		mem, _ := s.rdb.Info(ctx, "memory").Result()
		v[0] = infoField(mem, "used_memory") / (1 << 20)
		keys, _ := s.rdb.DBSize(ctx).Result()
		v[1] = float64(keys)
		for p := 0; p < 16; p++ {
			n, _ := s.rdb.XLen(ctx, fmt.Sprintf("%s:{p%d}:log", s.prefix, p)).Result()
			v[2] += float64(n)
		}
		v[3] = s.Metric("process_resident_memory_bytes") / (1 << 20)
		v[4] = s.Metric("go_memstats_heap_inuse_bytes") / (1 << 20)
		v[5] = s.Metric("go_goroutines")
		var size, rows int64
		pg.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, s.schema).Scan(&size)
		pg.QueryRow(ctx, `SELECT count(*) FROM inventory_events`).Scan(&rows)
		v[6], v[7] = float64(size)/(1<<20), float64(rows)
		samples = append(samples, sample{At: at, Ops: len(w.Ops()), Values: v})
	}

	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx, clients, d) })
	take(0)
	tick := time.NewTicker(every)
	for time.Since(start) < d {
		<-tick.C
		take(time.Since(start).Round(time.Second))
		last := samples[len(samples)-1]
		s.Logf("%v: %d operations, redis %.1f MiB, %.0f keys, %.0f stream entries, serve %.1f MiB, %.0f goroutines, ledger %.0f events",
			last.At, last.Ops, last.Values[0], last.Values[1], last.Values[2], last.Values[3], last.Values[5], last.Values[7])
	}
	tick.Stop()
	wg.Wait()

	warm := max(d/4, 2*time.Minute)
	if w, err := time.ParseDuration(os.Getenv("FLASHHOLD_SOAK_WARM")); err == nil {
		warm = w
	}
	verdicts := judge(samples, warm, d)
	for _, v := range verdicts {
		if !v.ok {
			t.Errorf("%s grew: %s", v.name, v.detail)
		}
	}

	rep := settleAndCheck(t, s, pools, w)
	if out := os.Getenv("FLASHHOLD_SOAK_OUT"); out != "" {
		if err := writeSoak(out, samples, verdicts, rep, d, warm, every, clients); err != nil {
			t.Error(err)
		}
	}
}

func infoField(info, name string) float64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return math.NaN()
}

type verdict struct {
	name, detail string
	first, last  float64
	ok           bool
}

// judge compares the first and the last third of the run after the warm-up.
func judge(samples []sample, warm, d time.Duration) []verdict {
	third := (d - warm) / 3
	window := func(from, to time.Duration) []sample {
		var out []sample
		for _, s := range samples {
			if s.At >= from && s.At <= to {
				out = append(out, s)
			}
		}
		return out
	}
	a, b := window(warm, warm+third), window(d-third, d)
	if len(a) == 0 || len(b) == 0 {
		return []verdict{{name: "the run", detail: "too short for a first and a last third after the warm-up"}}
	}
	mean := func(ss []sample, i int) float64 {
		sum := 0.0
		for _, s := range ss {
			sum += s.Values[i]
		}
		return sum / float64(len(ss))
	}
	var out []verdict
	for i, se := range soakSeries {
		if !se.Flat {
			continue
		}
		first, last := mean(a, i), mean(b, i)
		limit := first*soakFlatTolerance + se.Slack
		out = append(out, verdict{name: se.Name, first: first, last: last, ok: last <= limit,
			detail: fmt.Sprintf("mean %.1f %s in the first third after warm-up, %.1f in the last (limit %.1f)", first, se.Unit, last, limit)})
	}
	// The ledger's bytes per event, over each third.
	perEvent := func(ss []sample) float64 {
		s0, s1 := ss[0], ss[len(ss)-1]
		if s1.Values[7] == s0.Values[7] {
			return 0
		}
		return (s1.Values[6] - s0.Values[6]) * (1 << 20) / (s1.Values[7] - s0.Values[7])
	}
	first, last := perEvent(a), perEvent(b)
	out = append(out, verdict{name: "ledger bytes per event", first: first, last: last,
		ok: last <= max(first, 1)*soakLedgerTolerance,
		detail: fmt.Sprintf("%.0f bytes per event in the first third after warm-up, %.0f in the last (limit %.0f)",
			first, last, max(first, 1)*soakLedgerTolerance)})
	return out
}

// writeSoak writes the run's summary (results.md) and its plot (soak.svg) into dir.
func writeSoak(dir string, samples []sample, verdicts []verdict, rep *Report, d, warm, every time.Duration, clients int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	last := samples[len(samples)-1]
	fmt.Fprintf(&b, "# Soak: latest run\n\n")
	fmt.Fprintf(&b, "`make soak` (SOAK=%v): %d clients of mixed traffic against `flashhold serve` with every background service on, its Redis on an append-only file (fsync always), sampled every %v; warm-up %v. Run %s on %s.\n\n",
		d, clients, every, warm, time.Now().UTC().Format("2006-01-02 15:04 MST"), hostCores())
	fmt.Fprintf(&b, "%d operations (%.0f per second). Client view: %s.\n\n", last.Ops, float64(last.Ops)/d.Seconds(), rep.Summary())
	fmt.Fprintf(&b, "| what | first third after warm-up | last third | verdict |\n|---|---|---|---|\n")
	for _, v := range verdicts {
		verdictWord := "flat"
		if !v.ok {
			verdictWord = "**GREW**"
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %s |\n", v.name, v.first, v.last, verdictWord)
	}
	fmt.Fprintf(&b, "\nA series passes when its mean over the last third of the run after the warm-up is at most %.0f%% above its mean over the first third, plus a small absolute slack (%s). The ledger grows with every event by design; its bytes per event may not rise by more than %.0f%%.\n\n",
		(soakFlatTolerance-1)*100, slackText(), (soakLedgerTolerance-1)*100)
	fmt.Fprintf(&b, "![footprint over the run](soak.svg)\n\n## Samples\n\n| t | ops |")
	for _, se := range soakSeries {
		fmt.Fprintf(&b, " %s (%s) |", se.Name, se.Unit)
	}
	fmt.Fprintf(&b, "\n|---|---|%s\n", strings.Repeat("---|", len(soakSeries)))
	for _, s := range samples {
		fmt.Fprintf(&b, "| %v | %d |", s.At, s.Ops)
		for _, v := range s.Values {
			fmt.Fprintf(&b, " %.1f |", v)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "soak.svg"), []byte(plot(samples, warm, d)), 0o644)
}

func slackText() string {
	var parts []string
	for _, se := range soakSeries {
		if se.Flat {
			parts = append(parts, fmt.Sprintf("%s %g %s", se.Name, se.Slack, se.Unit))
		}
	}
	return strings.Join(parts, ", ")
}

func hostCores() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	return fmt.Sprintf("%d cores", strings.Count(string(raw), "processor\t:"))
}

// plot draws every series in a panel of its own, the warm-up's end dashed.
func plot(samples []sample, warm, d time.Duration) string {
	const pw, ph, cols, pad = 300, 140, 4, 30
	rows := (len(soakSeries) + cols - 1) / cols
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n",
		cols*(pw+pad)+pad, rows*(ph+2*pad)+pad)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	for i, se := range soakSeries {
		x0, y0 := pad+(i%cols)*(pw+pad), 2*pad+(i/cols)*(ph+2*pad)
		top := 0.0
		for _, s := range samples {
			top = max(top, s.Values[i])
		}
		if top == 0 {
			top = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (%s), max %.1f</text>`+"\n", x0, y0-8, se.Name, se.Unit, top)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, y0, pw, ph)
		wx := x0 + int(float64(pw)*warm.Seconds()/d.Seconds())
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#c33" stroke-dasharray="4 3"/>`+"\n", wx, y0, wx, y0+ph)
		var pts []string
		for _, s := range samples {
			x := float64(x0) + float64(pw)*min(s.At.Seconds()/d.Seconds(), 1)
			y := float64(y0+ph) - float64(ph)*s.Values[i]/top
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#26c" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#666">0</text><text x="%d" y="%d" fill="#666" text-anchor="end">%v</text>`+"\n",
			x0, y0+ph+13, x0+pw, y0+ph+13, d)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
