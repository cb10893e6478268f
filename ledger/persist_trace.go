package ledger

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashhold/flashhold/engine"
)

// WithPersistTracer makes the persister record a span per ledger transaction. nil: none.
func WithPersistTracer(t trace.Tracer) PersistOption { return func(p *Persister) { p.tracer = t } }

// startAppend starts the span of one ledger transaction of events (nil with tracing off).
func (p *Persister) startAppend(ctx context.Context, events []engine.Event, dead []DeadLetter) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	var parts []int
	for _, ev := range events {
		if !slices.Contains(parts, ev.Partition) {
			parts = append(parts, ev.Partition)
		}
	}
	slices.Sort(parts)
	return p.tracer.Start(ctx, "ledger.append", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "postgresql"), attribute.Int("flashhold.events", len(events)),
			attribute.Int("flashhold.dead_letters", len(dead)), attribute.IntSlice("flashhold.partitions", parts)))
}

// endAppend records what the transaction did.
func endAppend(span trace.Span, res AppendResult, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int64("flashhold.inserted", res.Inserted), attribute.Int64("flashhold.duplicates", res.Duplicates),
		attribute.Int("flashhold.forks", len(res.Forks)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
