package api

import (
	"context"
	"net/http"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WithTracer makes the server record a span per routed request (route, method, status),
// continuing the trace a caller sends in traceparent. nil: none.
func WithTracer(t trace.Tracer) Option { return func(s *Server) { s.tracer = t } }

// traceContext reads W3C traceparent and tracestate.
var traceContext = propagation.TraceContext{}

// startSpan starts the server span of a request on route, under ctx.
func (s *Server) startSpan(ctx context.Context, rc *fasthttp.RequestCtx, method, route string) (context.Context, trace.Span) {
	ctx = traceContext.Extract(ctx, headerCarrier{&rc.Request.Header})
	return s.tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("http.route", route)))
}

// endSpan records the answer's status; a 5xx marks the span failed (a 4xx is the client's).
func endSpan(span trace.Span, status int) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// headerCarrier lets the propagator read fasthttp's request headers.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}
