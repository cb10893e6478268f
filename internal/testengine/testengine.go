// Package testengine builds engines for the tests of packages above the engine (api, ledger,
// sweeper): a fresh key prefix, 16 partitions, test-sized limits.
package testengine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/internal/testredis"
)

// Config is the engine configuration tests start from, under prefix.
func Config(prefix string) engine.Config {
	return engine.Config{Prefix: prefix, Partitions: 16, RedisTimeout: 5 * time.Second,
		DefaultTTL: time.Minute, MinTTL: time.Second, MaxTTL: 30 * time.Minute, MaxQty: 100, MaxCartLines: 20,
		IdempotencyTTL: time.Hour, IdempotencyLease: 10 * time.Second, RefusalTTL: 30 * time.Second, Coalesce: true, CoalesceMaxBatch: 64,
		CoalesceWorkers: 2, SoldOutMemory: 250 * time.Millisecond, ReclaimInline: 8, CommitGrace: 5 * time.Second,
		PoolCacheTTL: time.Hour}
}

// New builds an engine over a fresh key prefix of rdb (cleaned up when the test ends); mod
// may change the configuration.
func New(t testing.TB, rdb redis.UniversalClient, mod func(*engine.Config), opts ...engine.Option) *engine.Engine {
	t.Helper()
	cfg := Config(testredis.Prefix(t, rdb))
	if mod != nil {
		mod(&cfg)
	}
	e, err := engine.New(context.Background(), rdb, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Pool creates a pool (vendor "v1" unless c names one) and restocks it with stock units.
func Pool(t testing.TB, e *engine.Engine, c engine.PoolConfig, stock int64) {
	t.Helper()
	if c.Vendor == "" {
		c.Vendor = "v1"
	}
	// Setting up is not under test: with FLASHHOLD_REDIS_WAIT_REPLICAS a replica just started,
	// or on a loaded machine, may acknowledge later than the wait, so the pool is made again
	// (both steps are idempotent) until it is.
	var err error
	for try := 0; try < 20; try++ {
		if err = e.CreatePool(context.Background(), c, "test"); err == nil && stock > 0 {
			_, err = e.Adjust(context.Background(), engine.AdjustRequest{Location: c.Location, SKU: c.SKU,
				Kind: engine.Restock, Qty: stock, TransactionID: "stock-" + c.Location + "-" + c.SKU, Actor: "test"})
		}
		if !errors.Is(err, engine.ErrUnavailable) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Clock is a fake clock tests move by hand; it starts at 2026-11-01 12:00 UTC.
type Clock struct{ ms atomic.Int64 }

// NewClock returns a fake clock.
func NewClock() *Clock {
	c := &Clock{}
	c.ms.Store(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

// Now reads the clock.
func (c *Clock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }

// Set moves the clock to ms (unix milliseconds).
func (c *Clock) Set(ms int64) { c.ms.Store(ms) }

// Ms reads the clock in unix milliseconds.
func (c *Clock) Ms() int64 { return c.ms.Load() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// ReserveMany places n single-unit holds on location/sku from 64 concurrent callers (keys
// "<sku><i>"; ttl 0 means the default), reporting any refusal as a test error.
func ReserveMany(t testing.TB, e *engine.Engine, location, sku string, n int, ttl time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := e.Reserve(context.Background(), engine.ReserveRequest{Items: []engine.Item{{Location: location, SKU: sku, Qty: 1}},
					IdempotencyKey: fmt.Sprint(sku, i), TTL: ttl, Actor: "bench"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}
