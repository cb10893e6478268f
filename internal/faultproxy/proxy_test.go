package faultproxy_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// client dials Redis through the proxy, with no retries (each fault is seen once).
func client(t *testing.T, p *faultproxy.Proxy) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisFaults: each action does to a command what it promises, seen from the client and
// from Redis itself.
func TestRedisFaults(t *testing.T) {
	t.Parallel()
	direct := testredis.Standalone(t)
	prefix := testredis.Prefix(t, direct)
	addr := strings.TrimPrefix(strings.Split(testredis.URL(), "/")[2], "")
	p, err := faultproxy.StartRESP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := client(t, p)
	ctx := context.Background()
	get := func(k string) string { v, _ := direct.Get(ctx, prefix+":"+k).Result(); return v }

	if err := c.Set(ctx, prefix+":pass", "1", 0).Err(); err != nil || get("pass") != "1" {
		t.Fatalf("plain SET through the proxy: %v", err)
	}

	// DropReply: the command ran, the client saw the connection end.
	r := p.Add(&faultproxy.Rule{Match: faultproxy.Contains("SET"), Action: faultproxy.DropReply, Times: 1})
	err = c.Set(ctx, prefix+":dropped", "1", 0).Err()
	if err == nil || get("dropped") != "1" || r.Hits() != 1 {
		t.Fatalf("DropReply: err %v, value %q, hits %d; want an error and the value set", err, get("dropped"), r.Hits())
	}

	// Reset: the command never reached Redis.
	p.Clear()
	p.Add(&faultproxy.Rule{Match: faultproxy.Contains("SET"), Action: faultproxy.Reset, Times: 1})
	if err := c.Set(ctx, prefix+":reset", "1", 0).Err(); err == nil || get("reset") != "" {
		t.Fatalf("Reset: err %v, value %q; want an error and nothing set", err, get("reset"))
	}

	// Delay past the client's read timeout: a timeout for a command that ran.
	p.Clear()
	p.Add(&faultproxy.Rule{Match: faultproxy.Contains("SET"), Action: faultproxy.Delay, Delay: time.Second, Times: 1})
	err = c.Set(ctx, prefix+":late", "1", 0).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || get("late") != "1" {
		t.Fatalf("Delay: err %v, value %q; want a timeout and the value set", err, get("late"))
	}

	// Blackhole: nothing runs, nothing answers.
	p.Clear()
	p.Add(&faultproxy.Rule{Match: faultproxy.Contains("SET"), Action: faultproxy.Blackhole, Times: 1})
	if err := c.Set(ctx, prefix+":hole", "1", 0).Err(); err == nil || get("hole") != "" {
		t.Fatalf("Blackhole: err %v, value %q", err, get("hole"))
	}

	// A rule aims at one command of a pipeline: every command of it runs, and the client
	// (go-redis marks every command of a failed pipeline) learns nothing.
	p.Clear()
	p.Add(&faultproxy.Rule{Match: faultproxy.Contains("INCR"), Action: faultproxy.DropReply, Times: 1})
	pipe := c.Pipeline()
	first := pipe.Set(ctx, prefix+":before", "1", 0)
	incr := pipe.Incr(ctx, prefix+":n")
	pipe.Exec(ctx)
	if incr.Err() == nil || get("n") != "1" || get("before") != "1" {
		t.Fatalf("pipeline: set %v, incr %v, n=%q", first.Err(), incr.Err(), get("n"))
	}

	// Cut refuses connections until Restore.
	p.Clear()
	p.Cut()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through a cut proxy answered")
	}
	p.Restore()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restore: %v", err)
	}
}
