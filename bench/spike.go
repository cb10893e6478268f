package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/flashhold/flashhold/engine"
)

// SpikeResult is the spike scenario's account: the capacity measured first, each open-loop
// phase, how long latency took to come back after the spike, and whether the server stayed up.
type SpikeResult struct {
	CapacityRPS float64      `json:"capacity_rps"`
	Phases      []SpikePhase `json:"phases"`
	// NormalP99Ms is the p99 of admitted requests at half capacity before the spike;
	// RecoveryS how long after the spike the p99 (per 250 ms) stayed within twice that (at
	// least that plus 5 ms) for good: -1 when it never did.
	NormalP99Ms float64 `json:"normal_p99_ms"`
	RecoveryS   float64 `json:"recovery_s"`
	ServerUp    bool    `json:"server_up"`
	Workers     int     `json:"workers"`
}

// SpikePhase is one open-loop phase of the spike.
type SpikePhase struct {
	Name string `json:"name"`
	// OfferedRPS is the rate asked of the load generator, SentRPS what it sent (over the
	// phase and the drain after it); Unsent the requests that fell so far behind that the
	// generator dropped them (its own limit, not the server's).
	OfferedRPS float64 `json:"offered_rps"`
	SentRPS    float64 `json:"sent_rps"`
	Unsent     int64   `json:"unsent"`
	// GoodputRPS counts holds granted and correct refusals a second; ShedRPS the requests
	// answered 503 with Retry-After (shed by admission or by the connection cap).
	GoodputRPS float64 `json:"goodput_rps"`
	ShedRPS    float64 `json:"shed_rps"`
	// Errors: anything else (no answer, 5xx other than a shed, an unexpected status).
	Errors int64 `json:"errors"`
	// Latency of admitted (not shed) requests, from when each was due.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// SentP99Ms is the same p99 from when each was sent: what the server took. LagP99Ms is
	// the p99 of how late the generator sent requests (all of them): when it is large, the
	// generator, not the server, could not keep the offered rate, and P99Ms measures it.
	SentP99Ms float64 `json:"sent_p99_ms"`
	LagP99Ms  float64 `json:"lag_p99_ms"`
}

// spikeOp places one-unit holds over HTTP; a 503 without Retry-After counts as a failure.
type spikeOp struct{ *reserveOp }

func (s spikeOp) op(ctx context.Context, w int) (Outcome, Kind) {
	out, kind := s.reserveOp.op(ctx, w)
	if out == Shed && len(s.cl.conns[w].resp.Header.Peek("Retry-After")) == 0 {
		return Failed, kind // a 503 must say when to come back
	}
	return out, kind
}

// spike measures capacity with a closed loop, then offers open loops at half of it, twice
// it, the most the load generator can send (asked for eight times it, from many senders;
// what it sent is reported), and half of it again, each for the scenario's duration; every hold granted is committed at the end
// and the pool checked.
func (b *bench) spike(ctx context.Context) (*Scenario, error) {
	o := b.opts
	pool := engine.PoolConfig{Location: "bench", SKU: "spike", Vendor: "bench", Shards: o.Shards}
	const stock = 1_000_000_000
	if err := b.makePools(ctx, []engine.PoolConfig{pool}, stock); err != nil {
		return nil, err
	}
	b.settle(ctx, 30*time.Second)
	workers := max(o.Clients, 1024)
	r := b.newSpikeOp(workers)
	defer r.cl.close()
	sc := &Scenario{Name: Spike}
	res := &SpikeResult{Workers: workers}

	capRun := b.drive(ctx, Load{Workers: o.Clients, Duration: o.Duration / 2, Progress: b.progress("spike capacity")}, r.op)
	capStats := capRun.summary()
	res.CapacityRPS = capStats.ThroughputRPS
	sc.Phases = append(sc.Phases, Phase{Name: "capacity (closed loop)", Stats: capStats})
	if res.CapacityRPS < 2 {
		return nil, fmt.Errorf("spike: capacity measured at %.1f requests/s", res.CapacityRPS)
	}
	var all []sample // every phase's requests, on one time line
	var offset time.Duration
	var after *Recording
	for _, ph := range []struct {
		name string
		x    float64
	}{{"half capacity", 0.5}, {"twice capacity", 2}, {"most the generator sends", 8}, {"half capacity after", 0.5}} {
		rate := math.Round(res.CapacityRPS * ph.x)
		run := b.drive(ctx, Load{Workers: workers, Rate: rate, Duration: o.Duration,
			Progress: b.progress(fmt.Sprintf("spike %s %.0f/s", ph.name, rate))}, r.op)
		p := spikePhase(ph.name, rate, run)
		res.Phases = append(res.Phases, p)
		st := run.summary()
		sc.Phases = append(sc.Phases, Phase{Name: fmt.Sprintf("%s: %.0f/s offered", ph.name, rate), Stats: st})
		sc.Errors += p.Errors
		if ph.name == "half capacity" {
			res.NormalP99Ms = p.P99Ms
		}
		after = run
		for _, s := range run.Samples {
			s.start += int64(offset)
			all = append(all, s)
		}
		offset += run.Elapsed
	}
	res.RecoveryS = recovery(after, res.NormalP99Ms)
	res.ServerUp = b.serverUp(ctx)
	if !res.ServerUp {
		sc.Notes = append(sc.Notes, "the server did not answer /healthz after the spike")
	}
	sc.Spike = res
	sc.ThroughputRPS = res.Phases[1].GoodputRPS
	sc.P50Ms, sc.P99Ms = res.Phases[1].P50Ms, res.Phases[1].P99Ms
	sc.Series = series(all, offset, 250*time.Millisecond)

	ids := r.granted()
	failed := b.endHolds(ctx, ids, true)
	iv, err := b.check(ctx, []expectation{{pool: pool, stock: stock, committed: int64(len(ids)) - failed}}, false)
	if err != nil {
		return nil, err
	}
	sc.Invariants = iv
	sc.Oversold, sc.Undersold = iv.Oversold, iv.Undersold
	return sc, nil
}

func (b *bench) newSpikeOp(workers int) spikeOp {
	return spikeOp{&reserveOp{cl: newClient(b.addr, b.apiKey, workers), keys: newKeys("sp", workers),
		body: reserveBody("bench", "spike", holdTTL), ids: make([][]string, workers)}}
}

// spikePhase sums up one open-loop phase.
func spikePhase(name string, rate float64, run *Recording) SpikePhase {
	secs := run.Elapsed.Seconds()
	p := SpikePhase{Name: name, OfferedRPS: rate, Unsent: run.Missed}
	h := hdrhistogram.New(histMinUs, histMaxUs, histSig)
	fromSent := hdrhistogram.New(histMinUs, histMaxUs, histSig)
	lag := hdrhistogram.New(histMinUs, histMaxUs, histSig)
	var sent, good, shed int64
	for _, s := range run.Samples {
		sent++
		_ = lag.RecordValue(min(max(s.lag/1000, histMinUs), histMaxUs))
		switch s.out {
		case OK, Refused:
			good++
		case Shed:
			shed++
			continue
		default:
			p.Errors++
		}
		_ = h.RecordValue(min(max(s.lat/1000, histMinUs), histMaxUs))
		_ = fromSent.RecordValue(min(max((s.lat-s.lag)/1000, histMinUs), histMaxUs))
	}
	if secs > 0 {
		p.SentRPS, p.GoodputRPS, p.ShedRPS = round(float64(sent)/secs, 1), round(float64(good)/secs, 1), round(float64(shed)/secs, 1)
	}
	ms := func(h *hdrhistogram.Histogram, q float64) float64 {
		return round(float64(h.ValueAtQuantile(q))/1000, 3)
	}
	p.P50Ms, p.P99Ms = ms(h, 50), ms(h, 99)
	p.SentP99Ms, p.LagP99Ms = ms(fromSent, 99), ms(lag, 99)
	return p
}

// recovery is how long into run (the phase after the spike) the p99 of admitted requests,
// per 250 ms window by when they were due, came within bound of normal and stayed there;
// -1 when it never did.
func recovery(run *Recording, normalP99 float64) float64 {
	const step = 250 * time.Millisecond
	bound := max(2*normalP99, normalP99+5)
	n := int(run.Elapsed/step) + 1
	windows := make([][]int64, n)
	for _, s := range run.Samples {
		if s.out == Shed {
			continue
		}
		if i := int(time.Duration(s.start) / step); i >= 0 && i < n {
			windows[i] = append(windows[i], s.lat)
		}
	}
	recovered := -1
	for i := n - 1; i >= 0; i-- {
		w := windows[i]
		if len(w) == 0 {
			continue
		}
		slices.Sort(w)
		if p99 := float64(w[len(w)*99/100]) / 1e6; p99 > bound {
			break
		}
		recovered = i
	}
	if recovered < 0 {
		return -1
	}
	return round((time.Duration(recovered) * step).Seconds(), 3)
}

// serverUp asks the API's /healthz once.
func (b *bench) serverUp(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
