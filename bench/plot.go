package bench

import (
	"fmt"
	"html"
	"maps"
	"math"
	"slices"
	"strings"
)

// The plots are plain SVG written here, so a report needs nothing but a browser to read.

const (
	plotW, plotH             = 760, 320
	padL, padR, padT, padB   = 70, 20, 40, 50
	colorOK, colorRefused    = "#2b7bb9", "#e08a1e"
	colorErr, colorGrid      = "#c0392b", "#dddddd"
	colorP50, colorP99, colP = "#7fb3d5", "#2874a6", "#1b2631"
)

func throughputPlot(scenario string) string { return "throughput-" + scenario + ".svg" }

// plots returns every plot by file name.
func (r *Report) plots() map[string]string {
	out := map[string]string{}
	for _, n := range r.scenarioNames() {
		out[throughputPlot(n)] = lineChart(n+": answered requests per second", r.Scenarios[n].Series)
	}
	var groups []barGroup
	for _, n := range r.scenarioNames() {
		s := r.Scenarios[n]
		for _, p := range s.Phases {
			groups = append(groups, barGroup{label: n + " " + p.Name, values: []float64{p.P50Ms, p.P99Ms, p.P999Ms}})
		}
		if s.OpenLoop != nil {
			groups = append(groups, barGroup{label: n + " open loop", values: []float64{s.OpenLoop.P50Ms, s.OpenLoop.P99Ms, s.OpenLoop.P999Ms}})
		}
	}
	out["latency.svg"] = barChart("Latency percentiles (ms): p50, p99, p99.9", groups, []string{"p50", "p99", "p99.9"}, []string{colorP50, colorP99, colP})
	var rates []barGroup
	for _, n := range slices.Sorted(maps.Keys(r.Baselines)) {
		rates = append(rates, barGroup{label: n, values: []float64{r.Baselines[n].ThroughputRPS}})
	}
	for _, n := range r.scenarioNames() {
		rates = append(rates, barGroup{label: "flashhold " + n, values: []float64{r.Scenarios[n].ThroughputRPS}})
	}
	out["baselines.svg"] = barChart("Throughput (requests/s), baselines and scenarios", rates, []string{"req/s"}, []string{colorOK})
	return out
}

func svgOpen(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func yAxis(b *strings.Builder, top float64) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := float64(plotH-padB) - float64(plotH-padT-padB)*float64(i)/4
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			padL, y, plotW-padR, y, colorGrid, padL-6, y+4, short(v))
	}
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

// lineChart draws OK, refused and error rates over time.
func lineChart(title string, pts []Point) string {
	var b strings.Builder
	svgOpen(&b, title)
	top, tmax := 0.0, 0.0
	for _, p := range pts {
		top = max(top, p.OK, p.Refused, p.Errors)
		tmax = max(tmax, p.T)
	}
	top, tmax = niceMax(top), max(tmax, 1)
	yAxis(&b, top)
	x := func(t float64) float64 { return padL + (plotW-padL-padR)*t/tmax }
	y := func(v float64) float64 { return float64(plotH-padB) - float64(plotH-padT-padB)*v/top }
	for i := 0; i <= 5; i++ {
		t := tmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ss</text>`+"\n", x(t), plotH-padB+16, trimFloat(math.Round(t*10)/10))
	}
	lines := []struct {
		name  string
		color string
		get   func(Point) float64
	}{{"ok", colorOK, func(p Point) float64 { return p.OK }}, {"refused (sold out)", colorRefused, func(p Point) float64 { return p.Refused }},
		{"errors", colorErr, func(p Point) float64 { return p.Errors }}}
	for i, l := range lines {
		var path strings.Builder
		for j, p := range pts {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, x(p.T), y(l.get(p)))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.6"/>`+"\n", path.String(), l.color)
		lx := padL + 10 + i*170
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, plotH-22, l.color, lx+16, plotH-12, l.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

type barGroup struct {
	label  string
	values []float64
}

// barChart draws horizontal groups of bars, one bar per series.
func barChart(title string, groups []barGroup, series, colors []string) string {
	var b strings.Builder
	rowH := 10 * len(series)
	height := padT + 30 + len(groups)*(rowH+10)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, height, plotW, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	top := 0.0
	for _, g := range groups {
		for _, v := range g.values {
			top = max(top, v)
		}
	}
	top = niceMax(top)
	left, right := 230.0, float64(plotW-80)
	for i, g := range groups {
		y0 := float64(padT + 10 + i*(rowH+10))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y0+float64(rowH)/2+4, html.EscapeString(g.label))
		for j, v := range g.values {
			w := (right - left) * v / top
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="9" fill="%s"/><text x="%.1f" y="%.1f" font-size="10">%s</text>`+"\n",
				left, y0+float64(j*10), w, colors[j%len(colors)], left+w+4, y0+float64(j*10)+8, short(v))
		}
	}
	for j, s := range series {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", 240+j*90, height-20, colors[j%len(colors)], 256+j*90, height-10, s)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
