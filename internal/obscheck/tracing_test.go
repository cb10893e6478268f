package obscheck

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashhold/flashhold/app"
	"github.com/flashhold/flashhold/internal/testwait"
)

// The trace a caller started, sent in traceparent: the request's spans must continue it.
const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParent = "00f067aa0ba902b7"
)

// TestTracing: with an OTLP endpoint set, a reserve over HTTP gives a server span (route,
// method, status) continuing the caller's trace, with the engine's reserve span under it
// naming the operation and partition; the commit likewise; the persister's ledger
// transaction gets a span of its own.
func TestTracing(t *testing.T) {
	// Set, so tracing is on; never dialled: the spans go to the in-memory exporter.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SERVICE_NAME", "flashhold-obscheck")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	exp := tracetest.NewInMemoryExporter()
	base := startServe(t, app.WithSpanExporter(exp))
	sell(t, base, http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}})

	var spans tracetest.SpanStubs
	testwait.Until(t, 20*time.Second, "a ledger.append span", func() bool {
		spans = exp.GetSpans()
		return find(spans, "ledger.append", nil) != nil
	})

	reserve := find(spans, "POST /v1/holds", func(s tracetest.SpanStub) bool { return intAttr(s, "http.response.status_code") == 201 })
	if reserve == nil {
		t.Fatalf("no span of the reserve among %s", names(spans))
	}
	if reserve.SpanKind != trace.SpanKindServer || strAttr(*reserve, "http.route") != "/v1/holds" || strAttr(*reserve, "http.request.method") != "POST" {
		t.Errorf("reserve span: kind %s, attributes %v", reserve.SpanKind, reserve.Attributes)
	}
	if got := reserve.SpanContext.TraceID().String(); got != callerTrace {
		t.Errorf("reserve span in trace %s, want the caller's %s", got, callerTrace)
	}
	if got := reserve.Parent.SpanID().String(); got != callerParent {
		t.Errorf("reserve span's parent %s, want the caller's span %s", got, callerParent)
	}
	if got := resourceAttr(*reserve, "service.name"); got != "flashhold-obscheck" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's", got)
	}
	engineReserve := find(spans, "engine.reserve", childOf(*reserve))
	if engineReserve == nil {
		t.Fatalf("no engine.reserve span under the reserve's among %s", names(spans))
	}
	if strAttr(*engineReserve, "flashhold.operation") != "reserve" || !hasAttr(*engineReserve, "flashhold.partition") ||
		strAttr(*engineReserve, "flashhold.sku") != "obs-sku" {
		t.Errorf("engine.reserve attributes %v", engineReserve.Attributes)
	}

	commit := find(spans, "POST /v1/holds/{id}/commit", nil)
	if commit == nil || intAttr(*commit, "http.response.status_code") != 200 {
		t.Fatalf("no commit span answered 200 among %s", names(spans))
	}
	if c := find(spans, "engine.commit", childOf(*commit)); c == nil || !hasAttr(*c, "flashhold.partition") {
		t.Errorf("no engine.commit span with a partition under the commit's")
	}

	// The refusal is an answer, not a failure.
	refused := find(spans, "POST /v1/holds", func(s tracetest.SpanStub) bool { return intAttr(s, "http.response.status_code") == 409 })
	if refused == nil {
		t.Fatal("no span of the refused reserve")
	}
	if r := find(spans, "engine.reserve", childOf(*refused)); r == nil || r.Status.Code.String() == "Error" || !hasAttr(*r, "flashhold.refusal") {
		t.Errorf("the refused engine.reserve should carry flashhold.refusal and no error status")
	}

	appendSpan := find(spans, "ledger.append", func(s tracetest.SpanStub) bool { return intAttr(s, "flashhold.events") > 0 })
	if appendSpan == nil || appendSpan.SpanKind != trace.SpanKindClient {
		t.Errorf("no ledger.append span with events among %s", names(spans))
	}
}

// TestTracingOff: without an OTLP endpoint nothing is traced, even with an exporter at hand.
func TestTracingOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	exp := tracetest.NewInMemoryExporter()
	base := startServe(t, app.WithSpanExporter(exp))
	sell(t, base, http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}})
	// Wait until the persister has written the sale, so its pass had a chance to trace.
	testwait.Until(t, 20*time.Second, "the events persisted", func() bool {
		return metricValue(t, base, "flashhold_ledger_events_persisted_total") > 0
	})
	if spans := exp.GetSpans(); len(spans) > 0 {
		t.Errorf("tracing off exported %d spans: %s", len(spans), names(spans))
	}
}

func find(spans tracetest.SpanStubs, name string, match func(tracetest.SpanStub) bool) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name && (match == nil || match(spans[i])) {
			return &spans[i]
		}
	}
	return nil
}

func childOf(parent tracetest.SpanStub) func(tracetest.SpanStub) bool {
	return func(s tracetest.SpanStub) bool { return s.Parent.SpanID() == parent.SpanContext.SpanID() }
}

func names(spans tracetest.SpanStubs) string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return strings.Join(out, ", ")
}

func attr(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func hasAttr(s tracetest.SpanStub, key string) bool { _, ok := attr(s.Attributes, key); return ok }
func strAttr(s tracetest.SpanStub, key string) string {
	v, _ := attr(s.Attributes, key)
	return v.AsString()
}
func intAttr(s tracetest.SpanStub, key string) int64 {
	v, _ := attr(s.Attributes, key)
	return v.AsInt64()
}
func resourceAttr(s tracetest.SpanStub, key string) string {
	if s.Resource == nil {
		return ""
	}
	v, _ := attr(s.Resource.Attributes(), key)
	return v.AsString()
}
