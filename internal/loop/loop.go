// Package loop is the one shape of flashhold's background work (sweeper, persister, …):
// a random stagger, then a bounded pass every interval, until the context ends.
//
// Every service built on it has the same face: Run(ctx) error, which returns nil when ctx
// ends; RunOnce(ctx), one pass, for tests; Register(prometheus.Registerer) for its metrics.
package loop

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Run waits a random stagger of up to jitter (so instances started together do not tick
// together), then calls once every interval until ctx is cancelled. An error from once is
// handed to onErr and the loop goes on. Run returns nil when ctx ends.
func Run(ctx context.Context, interval, jitter time.Duration, once func(context.Context) error, onErr func(error)) error {
	return every(ctx, false, interval, jitter, once, onErr)
}

// RunAfter is Run with the first call one interval (and the stagger) after the start, for
// work too heavy to repeat whenever a process starts (a scheduled reconciliation).
func RunAfter(ctx context.Context, interval, jitter time.Duration, once func(context.Context) error, onErr func(error)) error {
	return every(ctx, true, interval, jitter, once, onErr)
}

func every(ctx context.Context, waitFirst bool, interval, jitter time.Duration, once func(context.Context) error, onErr func(error)) error {
	if jitter > 0 && !sleep(ctx, rand.N(jitter)) {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if waitFirst {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		waitFirst = true
		if err := once(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}
}

// Paced is for work that sets its own pace: once says how long to wait before it is called
// again (0: at once, while there is work). A call that fails is followed instead by a capped
// exponential backoff, from 100 ms doubling up to backoffMax, reset by the next success;
// onErr gets the error and that wait. Paced returns nil when ctx ends.
func Paced(ctx context.Context, backoffMax time.Duration, once func(context.Context) (time.Duration, error), onErr func(err error, retryIn time.Duration)) error {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		wait, err := once(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			backoff = min(max(2*backoff, 100*time.Millisecond), backoffMax)
			wait = backoff
			if onErr != nil {
				onErr(err, wait)
			}
		default:
			backoff = 0
		}
		if wait > 0 && !sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// sleep waits d; it returns false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// InstanceID names this process among others doing the same background work (in leases and
// consumer groups): host, pid and a random suffix.
func InstanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	crand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Each calls do for every item of list, in order, whatever the others returned, and returns
// how many it dealt with (do's true) and every error, joined.
func Each[T any](list []T, do func(*T) (bool, error)) (int, error) {
	n := 0
	var errs []error
	for i := range list {
		done, err := do(&list[i])
		if done {
			n++
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}
