// Package bench drives flash-sale load at flashhold and at baselines measured in the same
// run, checks that nothing was oversold or undersold, and writes the report (JSON, Markdown,
// SVG plots). `flashhold bench` and `make bench` run it.
package bench

import (
	"context"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is how one request ended.
type Outcome uint8

const (
	// OK: the request did what it asked (a hold granted, a commit done, a row updated).
	OK Outcome = iota
	// Refused: a correct refusal (sold out); it counts as served, not as an error.
	Refused
	// Failed: an error (transport, timeout, an unexpected status).
	Failed
	// Shed: answered 503 with Retry-After: the server turned it away at once, to be sent
	// again later (spike scenario).
	Shed
)

// Kind is what a request asked for.
type Kind uint8

const (
	// Reserve asks for a hold (or, in a baseline, for its equivalent).
	Reserve Kind = iota
	// End commits or releases a hold.
	End
)

// Op sends one request on behalf of worker w and says what it was and how it ended.
type Op func(ctx context.Context, w int) (Outcome, Kind)

// sample is one request: when it was (intended to be) sent and how long it took to answer,
// both in nanoseconds from the start of the run.
type sample struct {
	start int64
	lat   int64
	lag   int64 // open loop: from when the request was due to when it was sent
	out   Outcome
	kind  Kind
}

// Load says how to drive an Op.
type Load struct {
	// Workers is the number of concurrent clients (closed loop) or of senders (open loop).
	Workers int
	// Rate, when positive, makes an open loop: requests are due at fixed intervals and each
	// one's latency is measured from when it was due, so time spent queued is counted.
	Rate float64
	// Duration bounds the run.
	Duration time.Duration
	// Done, when set, ends the run early (checked after every request).
	Done func() bool
	// Progress, when set, is told the requests finished so far, about once a second.
	Progress func(elapsed time.Duration, finished int64)
}

// Recording is the record of one driven load.
type Recording struct {
	Start   time.Time
	Elapsed time.Duration
	// Samples holds every request, in no particular order.
	Samples []sample
	// Missed counts open-loop requests that were due but never sent before the drain limit.
	Missed int64
	// counters holds what bench.drive read while the run went on (nil when it did not).
	counters *trace
}

// drainLimit is how long an open loop keeps sending requests that fell behind after the
// duration ended; what is still queued after it counts as missed.
const drainLimit = 10 * time.Second

// Drive runs op under load l and records every request.
func Drive(ctx context.Context, l Load, op Op) *Recording {
	l.Workers = max(l.Workers, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := &Recording{Start: time.Now()}
	deadline := run.Start.Add(l.Duration)
	var finished atomic.Int64
	var stop atomic.Bool
	var missed atomic.Int64
	record := make([][]sample, l.Workers)
	var wg sync.WaitGroup
	progressDone := make(chan struct{})
	if l.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					l.Progress(time.Since(run.Start), finished.Load())
				case <-progressDone:
					return
				}
			}
		}()
	}
	finish := func(w int, s sample) {
		record[w] = append(record[w], s)
		finished.Add(1)
		if l.Done != nil && l.Done() {
			stop.Store(true)
		}
	}
	if l.Rate <= 0 {
		for w := range l.Workers {
			wg.Go(func() {
				generator()
				for !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
					t0 := time.Now()
					out, kind := op(ctx, w)
					finish(w, sample{start: int64(t0.Sub(run.Start)), lat: int64(time.Since(t0)), out: out, kind: kind})
				}
			})
		}
	} else {
		interval := time.Duration(float64(time.Second) / l.Rate)
		due := make(chan int64, 1<<16)
		for w := range l.Workers {
			wg.Go(func() {
				generator()
				for i := range due {
					at := run.Start.Add(time.Duration(i) * interval)
					if stop.Load() || ctx.Err() != nil || time.Since(deadline) > drainLimit {
						missed.Add(1)
						continue
					}
					sent := time.Now()
					out, kind := op(ctx, w)
					finish(w, sample{start: int64(at.Sub(run.Start)), lat: int64(time.Since(at)), lag: int64(sent.Sub(at)), out: out, kind: kind})
				}
			})
		}
		wg.Go(func() {
			generator()
			defer close(due)
			for i := int64(0); ; i++ {
				at := run.Start.Add(time.Duration(i) * interval)
				if !at.Before(deadline) || stop.Load() || ctx.Err() != nil {
					return
				}
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				due <- i
			}
		})
	}
	wg.Wait()
	close(progressDone)
	run.Elapsed = time.Since(run.Start)
	run.Missed = missed.Load()
	n := 0
	for _, r := range record {
		n += len(r)
	}
	run.Samples = make([]sample, 0, n)
	for _, r := range record {
		run.Samples = append(run.Samples, r...)
	}
	return run
}

// generator labels the calling goroutine as the load generator's, so that a CPU profile of a
// run (bench --cpuprofile) tells its share from the server's: go tool pprof -tagfocus
// side=generator.
func generator() {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "generator")))
}

// every calls f every interval from its own goroutine until the returned stop is called;
// stop returns once f has run for the last time, so what f wrote is then safe to read.
func every(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
