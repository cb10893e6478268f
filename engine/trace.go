package engine

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// WithTracer makes the engine record a span for each call of the request path (reserve,
// commit, release, extend, get, availability), a child of the caller's span. nil: none.
func WithTracer(t trace.Tracer) Option { return func(e *Engine) { e.tracer = t } }

// span is one traced engine call; the zero span (tracing off) does nothing.
type span struct{ s trace.Span }

// startSpan starts the span of operation op; with tracing off it returns ctx as it is.
func (e *Engine) startSpan(ctx context.Context, op string) (context.Context, span) {
	if e.tracer == nil {
		return ctx, span{}
	}
	ctx, s := e.tracer.Start(ctx, "engine."+op, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("flashhold.operation", op)))
	return ctx, span{s}
}

func (s span) recording() bool { return s.s != nil && s.s.IsRecording() }

// pool names the pool a call is about.
func (s span) pool(location, sku string) {
	if s.recording() {
		s.s.SetAttributes(attribute.String("flashhold.location", location), attribute.String("flashhold.sku", sku))
	}
}

// partitions names the keyspace partitions a call touched.
func (s span) partitions(ps []int) {
	if s.recording() && len(ps) > 0 {
		s.s.SetAttributes(attribute.Int("flashhold.partition", ps[0]), attribute.IntSlice("flashhold.partitions", ps))
	}
}

// holdPartitions names the partitions of a hold's parts.
func (e *Engine) holdPartitions(s span, holdID string) {
	if !s.recording() {
		return
	}
	parts, err := e.HoldParts(holdID)
	if err != nil {
		return
	}
	ps := make([]int, len(parts))
	for i, p := range parts {
		ps[i] = p.Partition
	}
	s.partitions(ps)
}

// end ends the span: a refusal (no stock, a hold gone, a bad request ...) is an answer and
// is noted as one; any other error (Redis unavailable, a fenced partition) marks it failed.
func (s span) end(err error) {
	if s.s == nil {
		return
	}
	switch {
	case err == nil:
	case isRefusal(err):
		s.s.SetAttributes(attribute.String("flashhold.refusal", err.Error()))
	default:
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, err.Error())
	}
	s.s.End()
}

func isRefusal(err error) bool {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return true
	}
	for _, r := range []error{ErrInvalid, ErrUnknownPool, ErrHoldNotFound, ErrInsufficient, ErrCustomerLimit,
		ErrIdempotencyMismatch, ErrInProgress, ErrHoldCommitted, ErrHoldGone} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// Reserve places a hold on every item of req, all or nothing. It returns the hold, or an
// error matching ErrInvalid, ErrUnknownPool, ErrInsufficient, ErrCustomerLimit,
// ErrIdempotencyMismatch, ErrInProgress, ErrFenced or ErrUnavailable.
//
// The same request sent again with the same key gets the same answer: the hold (also after
// it ended), or for FLASHHOLD_REFUSAL_TTL the same refusal. Copies sent at the same time
// wait for one another. After ErrUnavailable the caller cannot know whether a hold was
// placed, and should send the request again: it gets the hold if there is one.
func (e *Engine) Reserve(ctx context.Context, req ReserveRequest) (*Hold, error) {
	ctx, s := e.startSpan(ctx, "reserve")
	if len(req.Items) == 1 {
		s.pool(req.Items[0].Location, req.Items[0].SKU)
	}
	h, err := e.reserve(ctx, req)
	if h != nil && s.recording() {
		ps := make([]int, len(h.Parts))
		for i, p := range h.Parts {
			ps[i] = p.Partition
		}
		s.partitions(ps)
	}
	s.end(err)
	return h, err
}

// Commit sells a hold's units. Committing a committed hold again succeeds and changes
// nothing; a hold that expired or was released returns ErrHoldGone.
//
// A hold of several parts is committed whole or not at all, even against a racing release
// or a retry (see hold_end.lua): the commit first keeps every part alive for
// FLASHHOLD_COMMIT_GRACE; if one has ended, it gives the others back and answers ErrHoldGone;
// otherwise the commit is decided, and whoever finds it so (a retry, a release) finishes it.
// Only a commit whose process stops after deciding and is not retried within the grace can
// leave parts to expire: ErrPartialCommit then names exactly what was sold.
func (e *Engine) Commit(ctx context.Context, holdID, actor string) error {
	ctx, s := e.startSpan(ctx, "commit")
	e.holdPartitions(s, holdID)
	err := e.commit(ctx, holdID, actor)
	s.end(err)
	return err
}

// Release gives a hold's units back. Releasing a released hold again succeeds; a committed
// hold returns ErrHoldCommitted and an expired one ErrHoldGone (its units are back already).
// A hold of several parts whose commit was decided is committed, not released.
func (e *Engine) Release(ctx context.Context, holdID, actor string) error {
	ctx, s := e.startSpan(ctx, "release")
	e.holdPartitions(s, holdID)
	err := e.release(ctx, holdID, actor)
	s.end(err)
	return err
}

// Extend moves a hold's expiry to now+ttl (never earlier than it is). It returns the new
// expiry (unix ms).
func (e *Engine) Extend(ctx context.Context, holdID string, ttl time.Duration, actor string) (int64, error) {
	ctx, s := e.startSpan(ctx, "extend")
	e.holdPartitions(s, holdID)
	exp, err := e.extend(ctx, holdID, ttl, actor)
	s.end(err)
	return exp, err
}

// GetHold reads a hold's parts and how each stands.
func (e *Engine) GetHold(ctx context.Context, holdID, actor string) (*Hold, error) {
	ctx, s := e.startSpan(ctx, "get_hold")
	e.holdPartitions(s, holdID)
	h, err := e.getHold(ctx, holdID, actor)
	s.end(err)
	return h, err
}

// Availability reads a pool's available, held and committed units and its stock status.
func (e *Engine) Availability(ctx context.Context, location, sku string) (*Availability, error) {
	ctx, s := e.startSpan(ctx, "availability")
	s.pool(location, sku)
	a, err := e.availability(ctx, location, sku)
	s.end(err)
	return a, err
}
