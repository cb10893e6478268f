// Package tracing turns OpenTelemetry tracing on from the standard OTEL_* variables. It is
// off unless an OTLP endpoint is set; off, it hands out no tracer at all (nil), and the
// API, the engine and the persister then skip every tracing call.
//
// The variables read here: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL. The SDK reads the others itself: OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (the resource), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (sampling), OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _INSECURE, _CERTIFICATE and their _TRACES_
// forms (the exporter), OTEL_BSP_* (batching).
package tracing

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Settings is what the environment says about tracing.
type Settings struct {
	// On: an OTLP endpoint is set, and neither OTEL_SDK_DISABLED=true nor
	// OTEL_TRACES_EXPORTER=none turns tracing off.
	On       bool
	Endpoint string
	Protocol string
}

// FromEnv reads the settings through getenv (os.Getenv).
func FromEnv(getenv func(string) string) Settings {
	s := Settings{
		Endpoint: first(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")),
		Protocol: first(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"),
	}
	disabled := strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")
	exporter := first(getenv("OTEL_TRACES_EXPORTER"), "otlp")
	s.On = s.Endpoint != "" && !disabled && exporter != "none"
	return s
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// Provider is the process's tracer provider; a nil *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// Option changes how Start builds the provider.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	sync     bool
}

// WithExporter sends spans to exp instead of the OTLP endpoint, as they end (tests use the
// SDK's in-memory exporter). Tracing still turns on only when the settings say so.
func WithExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter, o.sync = exp, true }
}

// Start builds the provider the settings ask for: nil (and no error) when tracing is off.
func Start(ctx context.Context, s Settings, opts ...Option) (*Provider, error) {
	if !s.On {
		return nil, nil
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	exp := o.exporter
	if exp == nil {
		if s.Protocol != "http/protobuf" {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: flashhold exports traces over http/protobuf only", s.Protocol)
		}
		var err error
		// The exporter reads the endpoint, headers, timeout and TLS settings from OTEL_*.
		if exp, err = otlptracehttp.New(ctx); err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
	}
	// service.name defaults to flashhold; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", "flashhold")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER (default: parentbased_always_on).
	popt := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if o.sync {
		popt = append(popt, sdktrace.WithSyncer(exp))
	} else {
		popt = append(popt, sdktrace.WithBatcher(exp))
	}
	return &Provider{tp: sdktrace.NewTracerProvider(popt...)}, nil
}

// Tracer returns the tracer of a component (named by its import path), or nil when tracing
// is off.
func (p *Provider) Tracer(name string) trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(name)
}

// Shutdown sends the spans still buffered and stops the provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}
