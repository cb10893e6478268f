// Package loop is the one shape of flashhold's background work (sweeper, persister, …):
// a random stagger, then a bounded pass every interval, until the context ends.
package loop

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Run waits a random stagger of up to jitter (so instances started together do not tick
// together), then calls once every interval until ctx is cancelled. An error from once is
// handed to onErr and the loop goes on. Run returns nil when ctx ends.
func Run(ctx context.Context, interval, jitter time.Duration, once func(context.Context) error, onErr func(error)) error {
	if jitter > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rand.N(jitter)):
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := once(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
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
