package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestRedisRestart: while an AOF Redis is killed, restarted and loads its data, every answer
// is 503 with Retry-After (never 500), /readyz fails until Redis has loaded, and afterwards
// the service answers as before, with the hold placed before the crash intact.
func TestRedisRestart(t *testing.T) {
	srv := testredis.StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := srv.Client(t)
	ts := startServer(t, rdb, nil)
	first := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 2},
		"Idempotency-Key", "before").want(t, http.StatusCreated, "")
	// Enough data that loading it takes a while (keys of the test's own server).
	ctx := context.Background()
	if err := rdb.Do(ctx, "debug", "populate", 100000, "pad", 64).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, _ := rdb.Info(ctx, "persistence").Result()
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("AOF rewrite did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()
	// Loading slowed down to a few seconds, answering (LOADING) every kilobyte it reads.
	srv.Start("--key-load-delay", "5", "--loading-process-events-interval-bytes", "1024")

	loading, served, readyDuring := 0, 0, 0
	for i := 0; served == 0; i++ {
		if i > 2000 {
			t.Fatal("the service did not come back after Redis loaded")
		}
		info, _ := rdb.Info(ctx, "persistence").Result()
		stillLoading := strings.Contains(info, "loading:1")
		r := ts.do("POST", "/v1/holds", clientKey, map[string]any{"location": "berlin", "sku": "cap", "qty": 1},
			"Idempotency-Key", fmt.Sprint("during-", i))
		switch r.status {
		case http.StatusServiceUnavailable:
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("503 without Retry-After: %s", r.raw)
			}
			if stillLoading {
				loading++
			}
		case http.StatusCreated:
			served++
		default:
			t.Fatalf("during the restart: status %d: %s", r.status, r.raw)
		}
		if stillLoading && ts.do("GET", "/readyz", "", nil).status == http.StatusOK {
			if info, _ := rdb.Info(ctx, "persistence").Result(); strings.Contains(info, "loading:1") {
				readyDuring++ // ready although Redis was loading before and after the check
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if loading == 0 {
		t.Fatal("no request was made while Redis was loading: the test proves nothing")
	}
	if readyDuring > 0 {
		t.Fatalf("/readyz answered 200 %d times while Redis was loading", readyDuring)
	}
	ts.do("GET", "/readyz", "", nil).want(t, http.StatusOK, "")
	got := ts.do("GET", "/v1/holds/"+first.str("hold_id"), clientKey, nil).want(t, http.StatusOK, "")
	if got.str("status") != "ACTIVE" {
		t.Fatalf("the hold placed before the crash is %s", got.str("status"))
	}
	t.Logf("%d requests answered 503 while Redis loaded", loading)
}
