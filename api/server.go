// Package api serves flashhold over HTTP (fasthttp): checkout endpoints for clients,
// inventory endpoints for vendors, health, readiness, metrics and the OpenAPI document.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/imports"
)

// Config is the HTTP server's configuration (package config reads it from the environment).
type Config struct {
	Addr           string
	KeysFile       string
	Keys           string
	RateLimit      int
	RateBurst      int
	MaxBody        int
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	RequestTimeout time.Duration
	BulkMaxRows    int
	BulkWorkers    int
	// MaxConns caps the connections open at once (0: DefaultMaxConns, from the open-files
	// limit); one more is answered 503 and closed.
	MaxConns  int
	Admission AdmissionConfig
}

// DefaultConfig is the HTTP server's configuration when the environment sets nothing.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:8080",
		RateLimit:      1000,
		RateBurst:      2000,
		MaxBody:        4 << 20,
		ReadTimeout:    10 * time.Second,
		WriteTimeout:   10 * time.Second,
		IdleTimeout:    60 * time.Second,
		RequestTimeout: 5 * time.Second,
		BulkMaxRows:    10000,
		BulkWorkers:    8,
		Admission:      DefaultAdmissionConfig(),
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.RequestTimeout <= 0:
		return fmt.Errorf("FLASHHOLD_REQUEST_TIMEOUT must be positive, got %s", c.RequestTimeout)
	case c.BulkMaxRows < 1 || c.BulkWorkers < 1:
		return fmt.Errorf("FLASHHOLD_BULK_MAX_ROWS and FLASHHOLD_BULK_WORKERS must be at least 1, got %d and %d", c.BulkMaxRows, c.BulkWorkers)
	}
	return c.Admission.Validate()
}

// Checker reports whether a dependency is reachable (for /readyz).
type Checker func(ctx context.Context) error

// Server is the HTTP API.
type Server struct {
	cfg      Config
	eng      *engine.Engine
	keys     *keyring
	log      zerolog.Logger
	router   router
	srv      *fasthttp.Server
	base     context.Context
	cancel   context.CancelFunc
	metrics  *metrics
	ready    map[string]Checker
	events   EventSource
	webhooks Webhooks
	// schedules: the vendors' stock schedules (nil: off, without Postgres)
	schedules Schedules
	// guard: the vendors' limits on stock changes and their quarantine (nil: off)
	guard       Guardrails
	guardLimits *limitsCache
	// imports: the vendors' asynchronous imports (nil: off, without Postgres)
	imports   Imports
	importCfg imports.Config
	// feeds: the vendors' feeds (nil: off, without Postgres), their URLs checked by feedGuard
	feeds     Feeds
	feedGuard feeds.URLGuard
	// history: a pool's latest changes, for its status (nil: not shown)
	history PoolHistory
	// activity: a vendor's events by the minute, for its summary (nil: not shown)
	activity VendorActivity
	// poolStore, when set, records pools durably (see WithPoolStore).
	poolStore PoolStore
	now       func() time.Time
	admission *admission
	conns     *guardedListener // set by Serve
	connsMu   sync.Mutex
	tracer    trace.Tracer // nil: tracing off (see trace.go)
}

// Option changes how New builds a Server.
type Option func(*Server)

// WithReadiness adds a dependency that /readyz checks.
func WithReadiness(name string, c Checker) Option { return func(s *Server) { s.ready[name] = c } }

// WithEventSource makes the events endpoint read from src instead of the Redis streams.
func WithEventSource(src EventSource) Option { return func(s *Server) { s.events = src } }

// WithLogger sets the server's logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Server) { s.log = l } }

// New builds the server. keys are the API keys it accepts.
func New(cfg Config, eng *engine.Engine, keys []KeySpec, opts ...Option) (*Server, error) {
	if eng == nil {
		return nil, errors.New("api: no engine")
	}
	kr, err := newKeyring(keys, cfg.RateLimit, cfg.RateBurst)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: eng, keys: kr, log: zerolog.Nop(), ready: map[string]Checker{}, now: time.Now,
		admission: newAdmission(cfg.Admission)}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.ready["redis"] = func(ctx context.Context) error { return eng.Ping(ctx) }
	s.events = &streamEvents{eng: eng}
	for _, o := range opts {
		o(s)
	}
	s.metrics = newMetrics(eng)
	s.metrics.reg.MustRegister(s.loadMetrics()...)
	s.routes()
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.transportError,
		Name:                         "flashhold",
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxRequestBodySize:           cfg.MaxBody,
		StreamRequestBody:            true, // imports; other routes read at most MaxBody (readBody)
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{&s.log},
	}
	return s, nil
}

// Routes lists every route the server registers (method and pattern).
func (s *Server) Routes() [][2]string {
	out := make([][2]string, len(s.router.routes))
	for i, r := range s.router.routes {
		out[i] = [2]string{r.Method, r.Pattern}
	}
	return out
}

// Serve accepts connections on ln until Shutdown. It keeps serving through accept errors and
// caps the connections open at once (see guardedListener).
func (s *Server) Serve(ln net.Listener) error {
	max := s.cfg.MaxConns
	if max <= 0 {
		max = DefaultMaxConns()
	}
	g := newGuardedListener(ln, max, &s.log)
	s.connsMu.Lock()
	s.conns = g
	s.connsMu.Unlock()
	return s.srv.Serve(g)
}

// listener is the listener Serve wraps (nil before Serve).
func (s *Server) listener() *guardedListener {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return s.conns
}

// Shutdown stops accepting connections and waits for requests in flight to finish (or ctx
// to end), then cancels what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	s.cancel()
	return err
}

// fasthttpLogger sends fasthttp's own messages (connection errors) to the debug log.
type fasthttpLogger struct{ log *zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) { l.log.Debug().Msgf(format, args...) }

// call is one request being served.
type call struct {
	s      *Server
	rc     *fasthttp.RequestCtx
	ctx    context.Context
	key    *apiKey
	params []string
}

func (c *call) param(name string) string {
	for i := 0; i+1 < len(c.params); i += 2 {
		if c.params[i] == name {
			return c.params[i+1]
		}
	}
	return ""
}

func (c *call) actor() string {
	if c.key == nil {
		return ""
	}
	return c.key.ID
}

// holdCtx is the context of an operation on a hold: an admin key acts on any key's holds;
// any other key only on its own.
func (c *call) holdCtx() context.Context {
	if c.key != nil && c.key.Role == RoleAdmin {
		return engine.AnyOwner(c.ctx)
	}
	return c.ctx
}

func (c *call) query(name string) string { return string(c.rc.QueryArgs().Peek(name)) }

func (c *call) json(status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.rc.SetStatusCode(status)
	c.rc.SetContentType("application/json")
	c.rc.SetBody(body)
	return nil
}

// decode reads a JSON body strictly: unknown fields and trailing data are refused.
func decodeJSON(body []byte, v any) error {
	if len(body) == 0 {
		return errorf(http.StatusBadRequest, "bad_request", "request body is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "malformed JSON body: %s", jsonErr(err))
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad_request", "malformed JSON body: data after the object")
	}
	return nil
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + te.Field + " must be " + te.Type.String()
	}
	return err.Error()
}

func (s *Server) writeError(rc *fasthttp.RequestCtx, err error) {
	ae := toError(err)
	s.metrics.errors.WithLabelValues(ae.Code).Inc()
	switch {
	case ae.Status >= 500 && ae.Code == "internal":
		s.log.Error().Err(err).Str("path", string(rc.Path())).Msg("request failed")
	case ae.Status == http.StatusServiceUnavailable || ae.Code == "request_in_progress":
		// Nothing is wrong with the request: it may be sent again, with the same key.
		rc.Response.Header.Set("Retry-After", "1")
		if ae.Status == http.StatusServiceUnavailable && ae.Code != "overloaded" { // sheds are counted, not logged
			s.log.Warn().Err(err).Str("path", string(rc.Path())).Msg("dependency unavailable")
		}
	}
	var body errorBody
	body.Error.Code, body.Error.Message, body.Error.Alternatives = ae.Code, ae.Message, ae.Alternatives
	raw, _ := json.Marshal(body)
	rc.SetStatusCode(ae.Status)
	rc.SetContentType("application/json")
	rc.SetBody(raw)
}

// transportError answers requests that fasthttp could not read (too large, malformed, slow).
func (s *Server) transportError(rc *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.writeError(rc, errorf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than %d bytes", s.cfg.MaxBody))
	case isTimeout(err):
		s.writeError(rc, errorf(http.StatusRequestTimeout, "request_timeout", "request was not read in time"))
	default:
		s.writeError(rc, errorf(http.StatusBadRequest, "bad_request", "malformed HTTP request"))
	}
	s.metrics.observe("unreadable", "", rc.Response.StatusCode(), 0)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) handle(rc *fasthttp.RequestCtx) {
	start := time.Now()
	method := string(rc.Method())
	label := "unmatched"
	var span trace.Span
	// A body is on the connection until something reads it whole (fasthttp reads ahead at most
	// 8 KiB): readBody for every route but the streaming ones. A request answered without its
	// body read (no route, no key, shed, a streaming upload cut short) closes the connection,
	// so what is left of the body is never taken for the next request.
	bodyRead := rc.Request.Header.ContentLength() == 0
	defer func() {
		if !bodyRead {
			if st := rc.RequestBodyStream(); st != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(st, drainMax)) // let the client finish writing and read the answer
			}
			rc.SetConnectionClose()
		}
		if p := recover(); p != nil {
			s.log.Error().Interface("panic", p).Str("path", string(rc.Path())).Msg("handler panicked")
			rc.Response.Reset()
			s.writeError(rc, errors.New("panic"))
		}
		s.metrics.observe(label, method, rc.Response.StatusCode(), time.Since(start))
		if span != nil {
			endSpan(span, rc.Response.StatusCode())
		}
	}()
	rt, params, allowed := s.router.match(method, string(rc.Path()))
	if rt == nil {
		if len(allowed) > 0 {
			rc.Response.Header.Set("Allow", strings.Join(allowed, ", "))
			s.writeError(rc, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed here; use %s", method, strings.Join(allowed, ", ")))
			return
		}
		s.writeError(rc, errorf(http.StatusNotFound, "route_not_found", "no route for %s %s", method, rc.Path()))
		return
	}
	label = rt.Pattern
	base := s.base
	if s.tracer != nil {
		base, span = s.startSpan(base, rc, method, rt.Pattern)
	}
	c := &call{s: s, rc: rc, params: params}
	if rt.roles != nil {
		if err := s.authorize(c, rt.roles); err != nil {
			s.writeError(rc, err)
			return
		}
	}
	if !rt.streamsBody {
		if err := s.readBody(rc); err != nil {
			s.writeError(rc, err)
			return
		}
		bodyRead = true
	}
	ctx, cancel := context.WithTimeout(base, s.cfg.RequestTimeout)
	defer cancel()
	done, ok := s.admission.admit(ctx, rt.class)
	if !ok {
		s.writeError(rc, errorf(http.StatusServiceUnavailable, "overloaded", "the server is at capacity; retry soon"))
		return
	}
	defer done()
	c.ctx = ctx
	if err := rt.h(c); err != nil {
		s.writeError(rc, err)
	}
}

// fullBody reads a streamed request body and reports one that ends before its Content-Length
// as cut short (fasthttp's request stream ends such a body with a plain EOF, and a shorter
// body could read as a complete, shorter request).
type fullBody struct {
	r         io.Reader
	want, got int64 // want -1: chunked (a chunked body cut short is an error already)
}

func (b *fullBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.got += int64(n)
	if errors.Is(err, io.EOF) && b.want >= 0 && b.got < b.want {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// bodyStream is the request's body as it streams in, nil when the server did not stream it.
func bodyStream(rc *fasthttp.RequestCtx) io.Reader {
	st := rc.RequestBodyStream()
	if st == nil {
		return nil
	}
	return &fullBody{r: st, want: int64(rc.Request.Header.ContentLength())}
}

// readAhead is what fasthttp reads of a streamed body before the handler: a body this long or
// shorter, with a Content-Length, is whole in its buffer (one cut short fails before that).
const readAhead = 8 << 10

// drainMax bounds what readBody reads past MaxBody of a body it refuses: a client that sends a
// body somewhat too large gets to finish writing it and read the 413 (a connection closed
// while it writes is reset, and the answer lost); a larger one is cut off.
const drainMax = 16 << 20

// readBody reads a request's body whole into memory, at most MaxBody bytes (the server
// streams bodies, for imports; every other route gets its body whole).
func (s *Server) readBody(rc *fasthttp.RequestCtx) error {
	st := bodyStream(rc)
	if st == nil {
		return nil
	}
	tooLarge := func() error {
		_, _ = io.Copy(io.Discard, io.LimitReader(st, drainMax))
		return errorf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than %d bytes", s.cfg.MaxBody)
	}
	n := rc.Request.Header.ContentLength()
	if n > s.cfg.MaxBody {
		return tooLarge()
	}
	if n >= 0 && n <= readAhead {
		rc.PostBody() // read ahead whole before the handler: taken from fasthttp's own buffer, no copy
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(st, int64(s.cfg.MaxBody)+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "the request body could not be read")
	}
	if len(body) > s.cfg.MaxBody {
		return tooLarge()
	}
	rc.Request.SetBody(body)
	return nil
}

func (s *Server) authorize(c *call, roles []string) error {
	presented := string(c.rc.Request.Header.Peek("X-API-Key"))
	if auth := string(c.rc.Request.Header.Peek("Authorization")); presented == "" && auth != "" {
		presented, _ = strings.CutPrefix(auth, "Bearer ")
	}
	if presented == "" {
		return errorf(http.StatusUnauthorized, "missing_api_key", "send an API key in the X-API-Key header or as Authorization: Bearer <key>")
	}
	k := s.keys.lookup(presented)
	if k == nil {
		return errorf(http.StatusUnauthorized, "invalid_api_key", "unknown API key")
	}
	ok := k.Role == RoleAdmin
	for _, r := range roles {
		ok = ok || r == k.Role
	}
	if !ok {
		return errorf(http.StatusForbidden, "forbidden", "API key %s (role %s) may not use this endpoint", k.ID, k.Role)
	}
	if allowed, wait := k.allow(s.now()); !allowed {
		c.rc.Response.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		return errorf(http.StatusTooManyRequests, "rate_limited", "API key %s is over its rate limit; retry in %s", k.ID, wait.Round(time.Millisecond))
	}
	c.key = k
	return nil
}

// ledgerOff is the answer of a feature that needs the Postgres ledger when there is none.
func ledgerOff(feature string) error {
	return errorf(http.StatusServiceUnavailable, feature+"_unavailable", "%s need the Postgres ledger (FLASHHOLD_POSTGRES_URL)", feature)
}

// ledgerVendor checks the caller may act for the path's vendor and that feature, which needs
// the ledger, is on, and returns the vendor.
func (c *call) ledgerVendor(on bool, feature string) (string, error) {
	vendor := c.param("vendor")
	if err := c.vendorScope(vendor); err != nil {
		return "", err
	}
	if !on {
		return "", ledgerOff(feature)
	}
	return vendor, nil
}

// vendorScope checks that the caller may act for vendor.
func (c *call) vendorScope(vendor string) error {
	if c.key.Role == RoleVendor && c.key.Vendor != vendor {
		return errorf(http.StatusForbidden, "forbidden", "API key %s belongs to vendor %s, not %s", c.key.ID, c.key.Vendor, vendor)
	}
	return nil
}
