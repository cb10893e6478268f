package api

import (
	"context"
	_ "embed"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/flashhold/flashhold/engine"
)

//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI() []byte { return openapiDoc }

func (s *Server) openapi(c *call) error {
	c.rc.SetStatusCode(http.StatusOK)
	c.rc.SetContentType("application/json")
	c.rc.SetBody(openapiDoc)
	return nil
}

func (s *Server) healthz(c *call) error {
	return c.json(http.StatusOK, map[string]string{"status": "ok"})
}

// readyRetryAfter is the Retry-After of a not-ready answer, in seconds: long enough for a
// restarted dependency, short against a load balancer's probe interval.
const readyRetryAfter = "5"

// readyz reports each dependency as ok or unavailable; only an admin key sees why, since
// the errors carry addresses and other internals.
func (s *Server) readyz(c *call) error {
	detail := s.presentsAdmin(c)
	names := make([]string, 0, len(s.ready))
	for n := range s.ready {
		names = append(names, n)
	}
	sort.Strings(names)
	checks := map[string]string{}
	status := http.StatusOK
	for _, n := range names {
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		err := s.ready[n](ctx)
		cancel()
		switch {
		case err == nil:
			checks[n] = "ok"
			continue
		case detail:
			checks[n] = "error: " + err.Error()
		default:
			checks[n] = "unavailable"
		}
		status = http.StatusServiceUnavailable
	}
	state := "ready"
	if status != http.StatusOK {
		state = "not ready"
		c.rc.Response.Header.Set("Retry-After", readyRetryAfter)
	}
	return c.json(status, map[string]any{"status": state, "checks": checks})
}

// presentsAdmin reports whether the request carries an admin API key (X-API-Key, or
// Authorization: Bearer), for endpoints that are open to all but tell admins more. A missing
// or unknown key is not an error here.
func (s *Server) presentsAdmin(c *call) bool {
	presented := string(c.rc.Request.Header.Peek("X-API-Key"))
	if presented == "" {
		presented, _ = strings.CutPrefix(string(c.rc.Request.Header.Peek("Authorization")), "Bearer ")
	}
	if presented == "" {
		return false
	}
	k := s.keys.lookup(presented)
	return k != nil && k.Role == RoleAdmin
}

// metrics is the API's Prometheus registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	holds    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	handler  fasthttp.RequestHandler
}

func newMetrics(eng *engine.Engine) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashhold_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flashhold_http_request_duration_seconds",
		Help:    "HTTP request latency by route, method and status.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "status"})
	m.holds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashhold_holds_total", Help: "Holds by outcome (created, committed, released through this API; expired by the sweeper).",
	}, []string{"outcome"})
	for _, o := range []string{"created", "committed", "released"} {
		m.holds.WithLabelValues(o)
	}
	// The code label is the error body's code: a fixed set, all written in this package.
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashhold_http_errors_total", Help: "Error answers by their code (the error body's code: insufficient_stock, partition_fenced, redis_unavailable, overloaded ...).",
	}, []string{"code"})
	// The codes alerts watch exist from the start, so rate() sees their first increase.
	for _, c := range []string{"insufficient_stock", "partition_fenced", "redis_unavailable", "postgres_unavailable", "timeout", "overloaded", "internal"} {
		m.errors.WithLabelValues(c)
	}
	st := eng.Stats()
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "flashhold_engine_batch_size", Help: "Requests per coalesced reserve call.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	st.OnBatch(func(n int) { batch.Observe(float64(n)) })
	m.reg.MustRegister(m.requests, m.latency, m.holds, m.errors, batch,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_engine_round_trips_total", Help: "Redis round trips of the coalescer (each a pipeline of one reserve call per partition and one call per other request).",
		}, func() float64 { return float64(st.RoundTrips.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_engine_coalesced_ops_total", Help: "Commits, releases and extends of one-part holds, and stored answers of carts, those round trips carried (a partition's commits and releases share end_batch calls).",
		}, func() float64 { return float64(st.Ops.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_soldout_rejections_total", Help: "Reservations refused from the in-process sold-out memory, without a Redis script.",
		}, func() float64 { return float64(st.SoldOutFast.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_soldout_lookups_total", Help: "Idempotency reads made before refusing from the sold-out memory (an earlier answer under the same key wins).",
		}, func() float64 { return float64(st.Lookups.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_soldout_lookup_pipelines_total", Help: "Redis round trips that carried those reads (concurrent reads share one pipeline).",
		}, func() float64 { return float64(st.LookupBatches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashhold_holds_expired_total", Help: "Hold parts restored by sweeps run in this process.",
		}, func() float64 { return float64(st.Expired.Load()) }),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

// methodLabel bounds the method label: callers may send any token as a method, and each
// distinct one would otherwise become new series.
func methodLabel(method string) string {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return method
	}
	return "OTHER"
}

// observe counts a request; method "" marks one that could not be read (no latency).
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	code := strconv.Itoa(status)
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, code).Inc()
	if method != "" {
		m.latency.WithLabelValues(route, method, code).Observe(d.Seconds())
	}
}

// Registry returns the registry, so other components of the process can add their metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

func (s *Server) serveMetrics(c *call) error {
	s.metrics.handler(c.rc)
	return nil
}
