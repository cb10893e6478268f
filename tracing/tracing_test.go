package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestFromEnv(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		on   bool
	}{
		{"nothing set: off", nil, false},
		{"endpoint: on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint: on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"SDK disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"only a service name", map[string]string{"OTEL_SERVICE_NAME": "shop"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := FromEnv(func(k string) string { return c.env[k] })
			if s.On != c.on {
				t.Errorf("On = %v, want %v (%+v)", s.On, c.on, s)
			}
		})
	}
}

// Off, Start builds nothing: no provider and no tracer, so the components skip tracing
// altogether, and a given exporter receives nothing.
func TestOffIsNothing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, err := Start(context.Background(), Settings{}, WithExporter(exp))
	if err != nil || p != nil {
		t.Fatalf("Start off = %v, %v; want nil, nil", p, err)
	}
	if tr := p.Tracer("x"); tr != nil {
		t.Errorf("Tracer of tracing off = %v, want nil", tr)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestGRPCRefused(t *testing.T) {
	_, err := Start(context.Background(), Settings{On: true, Endpoint: "c:4317", Protocol: "grpc"})
	if err == nil {
		t.Fatal("grpc accepted; only http/protobuf is built in")
	}
}

func TestOnExports(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, err := Start(context.Background(), Settings{On: true, Endpoint: "http://127.0.0.1:1", Protocol: "http/protobuf"}, WithExporter(exp))
	if err != nil || p == nil {
		t.Fatalf("Start on = %v, %v", p, err)
	}
	_, span := p.Tracer("t").Start(context.Background(), "op")
	span.End()
	// The in-memory exporter forgets its spans when shut down: read them first.
	if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Name != "op" {
		t.Errorf("exported %v", spans)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
