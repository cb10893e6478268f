package engine

import (
	"errors"
	"fmt"
)

// Errors returned by the engine. Callers test them with errors.Is; the API maps each
// to one HTTP status.
var (
	// ErrInvalid: the request is malformed or a value is out of range. Nothing changed.
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownPool: no pool exists for the location and SKU.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrInsufficient: the pool has fewer units available than asked for.
	ErrInsufficient = errors.New("insufficient stock")
	// ErrCustomerLimit: the reservation would pass the pool's per-customer limit.
	ErrCustomerLimit = errors.New("per-customer limit reached")
	// ErrIdempotencyMismatch: the idempotency key was used before for a different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrInProgress: a request with the same idempotency key is being served right now.
	ErrInProgress = errors.New("a request with this idempotency key is in progress; retry shortly")
	// ErrHoldNotFound: no such hold (never existed, or ended too long ago to remember).
	ErrHoldNotFound = errors.New("hold not found")
	// ErrHoldGone: the hold expired or was released; its units are back in stock.
	ErrHoldGone = errors.New("hold has ended")
	// ErrHoldCommitted: the hold was committed, so it can no longer be released or extended.
	ErrHoldCommitted = errors.New("hold already committed")
	// ErrPartialCommit: some parts of a multi-part hold were committed and others had ended.
	ErrPartialCommit = errors.New("hold partly committed")
	// ErrFenced: the partition refuses writes until reconciliation repairs it.
	ErrFenced = errors.New("partition fenced")
	// ErrUnavailable: Redis could not be reached or did not answer in time.
	ErrUnavailable = errors.New("redis unavailable")
)

// ValidationError names the field that made a request invalid.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// InsufficientError carries how many units the pool had when a reservation failed.
type InsufficientError struct {
	Location, SKU string
	// Region, instead of Location: no location of the region (or, split, not all of them
	// together) had the units.
	Region    string `json:",omitempty"`
	Requested int64
	Available int64
}

func (e *InsufficientError) Error() string {
	at := e.Location
	if e.Region != "" {
		at = "region " + e.Region
	}
	return fmt.Sprintf("insufficient stock: %d requested, %d available for %s at %s",
		e.Requested, e.Available, e.SKU, at)
}

// Is makes errors.Is(err, ErrInsufficient) true.
func (e *InsufficientError) Is(target error) bool { return target == ErrInsufficient }

// LimitError carries a customer's use of a pool with a per-customer limit.
type LimitError struct {
	Customer         string
	Used, Limit, Qty int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("per-customer limit reached: customer %s has %d of %d units, asked for %d more",
		e.Customer, e.Used, e.Limit, e.Qty)
}

// Is makes errors.Is(err, ErrCustomerLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrCustomerLimit }
