package api

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// class is how a request is admitted.
type class int

const (
	// unmetered: health, readiness, metrics, the contract — always served.
	unmetered class = iota
	// finishing: commits, releases, extends and vendor changes. They end checkouts and give
	// stock back (or bring it), so they go first.
	finishing
	// starting: new holds and reads.
	starting
)

var classNames = [...]string{unmetered: "unmetered", finishing: "finishing", starting: "starting"}

// AdmissionConfig bounds the work in flight (package config reads it from the environment).
type AdmissionConfig struct {
	On bool
	// Target is the mean time an admitted request may take; above it the limit shrinks.
	Target time.Duration
	// Wait is the longest a request waits for a place before it is shed.
	Wait     time.Duration
	MinLimit int
	MaxLimit int
}

// DefaultAdmissionConfig is admission control as flashhold runs it when the environment sets
// nothing.
func DefaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{On: true, Target: 20 * time.Millisecond, Wait: 10 * time.Millisecond, MinLimit: 4, MaxLimit: 1024}
}

// Validate reports the first setting that cannot work.
func (c AdmissionConfig) Validate() error {
	switch {
	case !c.On:
		return nil
	case c.Target <= 0 || c.Wait < 0:
		return fmt.Errorf("FLASHHOLD_ADMIT_TARGET must be positive and FLASHHOLD_ADMIT_WAIT not negative, got %s and %s", c.Target, c.Wait)
	}
	return nil
}

// admission is an adaptive limit on requests in flight. Each window (100 ms) it compares
// the mean time admitted requests took with the target: above it, the limit shrinks by a
// tenth; at or below it, and with requests having waited for a place, it grows by a tenth
// (at least one). A request that finds no place waits, finishing ones served first, for at
// most Wait (and never past its own deadline), and is shed if none frees up by then, or at
// once when twice as many as the limit wait already: 503 with Retry-After, before any work.
type admission struct {
	cfg AdmissionConfig

	mu       sync.Mutex
	limit    float64
	inflight int
	queues   [3]list.List // of *admitWaiter, by class
	waiting  int
	window   struct {
		start  time.Time
		sum    time.Duration
		n      int
		queued bool
	}

	onShed func(class) // counts a shed request (metrics)
	// pressed is when requests last waited for a place, or a window's mean time passed half
	// the target: background work (imports) yields while it is recent.
	pressed time.Time
}

type admitWaiter struct {
	ready    chan struct{}
	admitted bool // under mu
}

func newAdmission(cfg AdmissionConfig) *admission {
	cfg.MinLimit = max(cfg.MinLimit, 1)
	cfg.MaxLimit = max(cfg.MaxLimit, cfg.MinLimit)
	a := &admission{cfg: cfg, limit: float64(min(max(256, cfg.MinLimit), cfg.MaxLimit))}
	a.window.start = time.Now()
	return a
}

// admit waits for a place for a request of class c. It returns the function to call when
// the request is done, or false when the request is shed.
func (a *admission) admit(ctx context.Context, c class) (func(), bool) {
	if !a.cfg.On || c == unmetered {
		return func() {}, true
	}
	a.mu.Lock()
	if a.inflight < int(a.limit) && a.aheadOf(c) == 0 {
		a.inflight++
		a.mu.Unlock()
		return a.doneFunc(), true
	}
	a.window.queued = true
	a.pressed = time.Now()
	if a.waiting >= 2*int(a.limit) || ctx.Err() != nil {
		a.mu.Unlock()
		a.shedOne(c)
		return nil, false
	}
	w := &admitWaiter{ready: make(chan struct{})}
	el := a.queues[c].PushBack(w)
	a.waiting++
	a.mu.Unlock()

	wait := a.cfg.Wait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return a.doneFunc(), true
	case <-t.C:
	case <-ctx.Done():
	}
	a.mu.Lock()
	if w.admitted { // a place came just as the wait ended
		a.mu.Unlock()
		return a.doneFunc(), true
	}
	a.queues[c].Remove(el)
	a.waiting--
	a.mu.Unlock()
	a.shedOne(c)
	return nil, false
}

func (a *admission) shedOne(c class) {
	if a.onShed != nil {
		a.onShed(c)
	}
}

// aheadOf counts the waiters that go before a request of class c.
func (a *admission) aheadOf(c class) int {
	n := 0
	for k := finishing; k <= c; k++ {
		n += a.queues[k].Len()
	}
	return n
}

func (a *admission) doneFunc() func() {
	start := time.Now()
	return func() { a.done(time.Since(start)) }
}

func (a *admission) done(took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight--
	a.window.sum += took
	a.window.n++
	if now := time.Now(); now.Sub(a.window.start) >= 100*time.Millisecond {
		mean := a.window.sum / time.Duration(a.window.n)
		if mean > a.cfg.Target/2 {
			a.pressed = now
		}
		switch {
		case mean > a.cfg.Target:
			a.limit = max(float64(a.cfg.MinLimit), a.limit*0.9)
		case a.window.queued:
			a.limit = min(float64(a.cfg.MaxLimit), a.limit+max(1, a.limit*0.1))
		}
		a.window.start, a.window.sum, a.window.n, a.window.queued = now, 0, 0, false
	}
	for a.inflight < int(a.limit) {
		w := a.next()
		if w == nil {
			break
		}
		w.admitted = true
		a.inflight++
		close(w.ready)
	}
}

// next takes the first waiter, finishing requests first.
func (a *admission) next() *admitWaiter {
	for c := finishing; c <= starting; c++ {
		if el := a.queues[c].Front(); el != nil {
			a.queues[c].Remove(el)
			a.waiting--
			return el.Value.(*admitWaiter)
		}
	}
	return nil
}

// pressedWithin reports whether requests waited for a place, or took more than half the
// target on average, within d.
func (a *admission) pressedWithin(d time.Duration) bool {
	if !a.cfg.On {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Since(a.pressed) < d
}

// UnderPressure reports whether the API's requests have lately waited for a place or been
// slow (admission control): background work that shares Redis with them yields then.
func (s *Server) UnderPressure() bool { return s.admission.pressedWithin(time.Second) }

// state reads the limit, the requests in flight and those waiting.
func (a *admission) state() (limit float64, inflight, waiting int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit, a.inflight, a.waiting
}

// loadMetrics are the gauges and counters of admission and of the connection cap.
func (s *Server) loadMetrics() []prometheus.Collector {
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_http_shed_total",
		Help: "Requests answered 503 overloaded without being served, by class (finishing: commits, releases, extends, vendor changes; starting: new holds and reads)."},
		[]string{"class"})
	out := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashhold_admission_limit", Help: "Requests admitted at once (adaptive)."},
			func() float64 { l, _, _ := s.admission.state(); return l }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashhold_admission_inflight", Help: "Requests admitted and not yet answered."},
			func() float64 { _, n, _ := s.admission.state(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashhold_admission_waiting", Help: "Requests waiting for a place."},
			func() float64 { _, _, n := s.admission.state(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashhold_http_open_connections", Help: "Connections open (counted against FLASHHOLD_HTTP_MAX_CONNS)."},
			func() float64 {
				if l := s.listener(); l != nil {
					return float64(len(l.slots))
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flashhold_http_connections_refused_total", Help: "Connections answered 503 and closed because FLASHHOLD_HTTP_MAX_CONNS were open."},
			func() float64 {
				if l := s.listener(); l != nil {
					return float64(l.refused.Load())
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flashhold_http_accept_errors_total", Help: "Accept errors (e.g. out of file descriptors), each retried."},
			func() float64 {
				if l := s.listener(); l != nil {
					return float64(l.failures.Load())
				}
				return 0
			}),
		shed,
	}
	for c := finishing; c <= starting; c++ {
		shed.WithLabelValues(classNames[c])
	}
	s.admission.onShed = func(c class) { shed.WithLabelValues(classNames[c]).Inc() }
	return out
}
