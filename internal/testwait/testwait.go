// Package testwait waits in tests for a condition rather than for a guessed time.
package testwait

import (
	"testing"
	"time"
)

// Until polls cond (every millisecond at first, backing off to 50 ms) until it holds, and
// fails t when it still does not after timeout. what says what is awaited.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !For(timeout, cond) {
		t.Fatalf("timed out after %s waiting until %s", timeout, what)
	}
}

// For polls cond as Until does and reports whether it held before timeout.
func For(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return true
}
