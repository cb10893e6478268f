package config

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestWebhookSubscriptionLimit: FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS defaults to 100, is read
// from the environment, and must be at least 1.
func TestWebhookSubscriptionLimit(t *testing.T) {
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Alerts.MaxSubscriptions != 100 {
		t.Errorf("default %d, want 100", cfg.Alerts.MaxSubscriptions)
	}
	t.Setenv("FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS", "7")
	if cfg, err = Load(); err != nil || cfg.Alerts.MaxSubscriptions != 7 {
		t.Errorf("set to 7: %d, %v", cfg.Alerts.MaxSubscriptions, err)
	}
	t.Setenv("FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS", "0")
	if _, err = Load(); err == nil || !strings.Contains(err.Error(), "FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS") {
		t.Errorf("0 accepted: %v", err)
	}
}

// lockedBuffer is a log sink that go-redis goroutines may write to while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// TestRedisLogsAreJSON: once the logger is built, go-redis's own messages come out of it, each
// one JSON object at warn level marked component go-redis, not a plain-text line on stderr.
func TestRedisLogsAreJSON(t *testing.T) {
	var out lockedBuffer
	Config{LogLevel: "info"}.logger(&out)
	// go-redis warns, before it sends anything, that it truncates a TTL below a millisecond.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	rdb.Set(context.Background(), "flashhold-config-test", "v", 500*time.Microsecond)
	var found bool
	for _, line := range out.lines() {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not one JSON object per line: %q", line)
		}
		if strings.Contains(fmt.Sprint(entry["message"]), "truncating to 1ms") {
			found = true
			if entry["level"] != "warn" || entry["component"] != "go-redis" || entry["service"] != "flashhold" {
				t.Errorf("entry %s", line)
			}
		}
	}
	if !found {
		t.Fatalf("go-redis's warning is not in the log: %q", out.lines())
	}
}

// TestRedisLoggerOneObject: a go-redis message with line breaks (its panics carry stacks)
// is still one JSON object on one line.
func TestRedisLoggerOneObject(t *testing.T) {
	var out lockedBuffer
	l := redisLogger{Config{LogLevel: "info"}.logger(&out).With().Str("component", "go-redis").Logger()}
	l.Printf(context.Background(), "autopipeline: recovered panic: %v\n%s\n", "boom", "goroutine 1 [running]:\nmain.main()")
	lines := out.lines()
	if len(lines) != 1 {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	if entry["level"] != "warn" || entry["component"] != "go-redis" ||
		entry["message"] != "autopipeline: recovered panic: boom\ngoroutine 1 [running]:\nmain.main()" {
		t.Errorf("entry %s", lines[0])
	}
}
