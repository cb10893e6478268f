package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Stats summarises the requests of one phase.
type Stats struct {
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Refused  int64 `json:"refused"`
	Errors   int64 `json:"errors"`
	Shed     int64 `json:"shed,omitempty"` // answered 503 with Retry-After (not errors)
	// Seconds is the length of the phase; ThroughputRPS counts answered requests (OK and
	// refused) per second of it.
	Seconds       float64 `json:"seconds"`
	ThroughputRPS float64 `json:"throughput_rps"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	// CPU is what the phase cost in CPU time per request, and Coalescing how the engine
	// grouped its requests (both absent where a phase shares its time with others, as the
	// reserves and the commits of one mixed run do).
	CPU        *CPU        `json:"cpu,omitempty"`
	Coalescing *Coalescing `json:"coalescing,omitempty"`
}

// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits.
const (
	histMinUs = 1
	histMaxUs = 60_000_000
	histSig   = 3
)

// summarize computes Stats over the samples keep accepts, for a phase of the given length.
func summarize(samples []sample, length time.Duration, keep func(sample) bool) Stats {
	h := hdrhistogram.New(histMinUs, histMaxUs, histSig)
	var st Stats
	for _, s := range samples {
		if keep != nil && !keep(s) {
			continue
		}
		st.Requests++
		switch s.out {
		case OK:
			st.OK++
		case Refused:
			st.Refused++
		case Shed:
			st.Shed++
			continue // latencies are those of the requests served
		default:
			st.Errors++
		}
		us := min(max(s.lat/1000, histMinUs), histMaxUs)
		_ = h.RecordValue(us)
	}
	st.Seconds = length.Seconds()
	if st.Seconds > 0 {
		st.ThroughputRPS = round(float64(st.OK+st.Refused)/st.Seconds, 1)
	}
	if st.Requests > 0 {
		ms := func(q float64) float64 { return round(float64(h.ValueAtQuantile(q))/1000, 3) }
		st.P50Ms, st.P90Ms, st.P99Ms, st.P999Ms = ms(50), ms(90), ms(99), ms(99.9)
		st.MaxMs = round(float64(h.Max())/1000, 3)
	}
	st.Seconds = round(st.Seconds, 3)
	return st
}

// Point is one step of a time series: answered requests per second, by outcome.
type Point struct {
	T       float64 `json:"t"`
	OK      float64 `json:"ok_rps"`
	Refused float64 `json:"refused_rps"`
	Errors  float64 `json:"errors_rps"`
	Shed    float64 `json:"shed_rps,omitempty"`
}

// series buckets requests by when they finished, step at a time.
func series(samples []sample, length, step time.Duration) []Point {
	n := int(length/step) + 1
	pts := make([]Point, n)
	per := 1 / step.Seconds()
	for i := range pts {
		pts[i].T = round(float64(i)*step.Seconds(), 3)
	}
	for _, s := range samples {
		i := int(time.Duration(s.start+s.lat) / step)
		if i < 0 || i >= n {
			continue
		}
		switch s.out {
		case OK:
			pts[i].OK += per
		case Refused:
			pts[i].Refused += per
		case Shed:
			pts[i].Shed += per
		default:
			pts[i].Errors += per
		}
	}
	return pts
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}
