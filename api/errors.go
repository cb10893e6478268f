package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/feeds"
	"github.com/flashhold/flashhold/guardrails"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/schedules"
	"github.com/flashhold/flashhold/stockfile"
)

// Error is an API error: an HTTP status, a stable code and a message for people.
type Error struct {
	Status  int
	Code    string
	Message string
	// Alternatives, of a refusal for stock: substitutes that can be had (see engine.Alternatives).
	Alternatives []engine.Alternative
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// toError maps any error to the one status and code the API answers with; every engine error
// has exactly one mapping, here.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var fe *stockfile.Error
	if errors.As(err, &fe) {
		return &Error{Status: fe.Status, Code: fe.Code, Message: fe.Message}
	}
	var ve *engine.ValidationError
	if errors.As(err, &ve) {
		if ve.Field == "hold_id" {
			return &Error{Status: http.StatusBadRequest, Code: "malformed_hold_id", Message: ve.Error()}
		}
		return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid", Message: ve.Error()}
	}
	table := []struct {
		target error
		status int
		code   string
	}{
		{engine.ErrInvalid, http.StatusUnprocessableEntity, "invalid"},
		{engine.ErrUnknownPool, http.StatusNotFound, "unknown_pool"},
		{engine.ErrUnknownRegion, http.StatusNotFound, "unknown_region"},
		{engine.ErrHoldNotFound, http.StatusNotFound, "hold_not_found"},
		{alerts.ErrNotFound, http.StatusNotFound, "subscription_not_found"},
		{alerts.ErrNoWebhook, http.StatusConflict, "no_webhook"},
		{alerts.ErrTooManySubscriptions, http.StatusConflict, "too_many_subscriptions"},
		{schedules.ErrNotFound, http.StatusNotFound, "schedule_not_found"},
		{guardrails.ErrNotFound, http.StatusNotFound, "quarantine_not_found"},
		{guardrails.ErrDecided, http.StatusConflict, "already_decided"},
		{imports.ErrNotFound, http.StatusNotFound, "import_not_found"},
		{feeds.ErrNotFound, http.StatusNotFound, "feed_not_found"},
		{imports.ErrNotHeld, http.StatusConflict, "not_held"},
		{engine.ErrInsufficient, http.StatusConflict, "insufficient_stock"},
		{engine.ErrCustomerLimit, http.StatusConflict, "customer_limit"},
		{engine.ErrIdempotencyMismatch, http.StatusConflict, "idempotency_mismatch"},
		{engine.ErrInProgress, http.StatusConflict, "request_in_progress"},
		{engine.ErrHoldCommitted, http.StatusConflict, "hold_committed"},
		{engine.ErrSeveralParts, http.StatusConflict, "hold_has_several_parts"},
		{engine.ErrBackorderedPart, http.StatusConflict, "hold_backordered"},
		{engine.ErrPartialCommit, http.StatusConflict, "partial_commit"},
		{engine.ErrHoldGone, http.StatusGone, "hold_gone"},
		{engine.ErrFenced, http.StatusServiceUnavailable, "partition_fenced"},
		{engine.ErrUnavailable, http.StatusServiceUnavailable, "redis_unavailable"},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout"},
	}
	for _, m := range table {
		if errors.Is(err, m.target) {
			msg := err.Error()
			if m.code == "redis_unavailable" || m.code == "timeout" {
				// The cause (addresses, timeouts) goes to the log, not to clients.
				msg = "the inventory store did not answer in time: the request may or may not have taken effect; send it again with the same Idempotency-Key or transaction_id"
			}
			return &Error{Status: m.status, Code: m.code, Message: msg}
		}
	}
	if postgresDown(err) {
		return &Error{Status: http.StatusServiceUnavailable, Code: "postgres_unavailable", Message: "the ledger database did not answer; send the request again"}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

// postgresDown reports an error of a Postgres that could not be reached or did not answer (the
// ledger holds subscriptions, schedules, guardrails): the request may be sent again.
func postgresDown(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || pgconn.Timeout(err) || errors.As(err, &ne) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, puddle.ErrClosedPool)
}

type errorBody struct {
	Error struct {
		Code         string               `json:"code"`
		Message      string               `json:"message"`
		Alternatives []engine.Alternative `json:"alternatives,omitempty"`
	} `json:"error"`
}
