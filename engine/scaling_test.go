package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

// TestHotPoolSpreadsOverNodes: a pool's shards sit on consecutive partitions, whose hash
// tags ({p<n>}) the cluster spreads over its masters, so reservations on one hot pool are
// served by several masters, each Redis thread taking its share. On three masters (slots as
// redis-cli --cluster create assigns them) with 64 partitions, the 8 shards of any pool touch
// every master. Logs each master's function calls and time per call (INFO commandstats):
// the figures docs/scaling.md models throughput with.
func TestHotPoolSpreadsOverNodes(t *testing.T) {
	t.Parallel()
	cl := testredis.StartReplicatedCluster(t, 3, 5*time.Second)
	e := newEngine(t, cl.Client(t), func(c *Config) { c.Partitions = 64 })
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "hot", Shards: 8}, 1_000_000)
	hot, _ := e.pool(ctx, "s1", "hot")
	masters := map[string]bool{}
	for _, p := range hot.partitions {
		m, err := cl.MasterOf(ctx, e.ks.parts[p][0])
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr] = true
	}
	for addr := range masters {
		if err := redis.NewClient(&redis.Options{Addr: addr}).ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const clients, each = 16, 250
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				req := ReserveRequest{Items: []Item{{Location: "s1", SKU: "hot", Qty: 1}}, IdempotencyKey: fmt.Sprint("k", c, "-", i), Actor: "shop"}
				if _, err := e.Reserve(ctx, req); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var total int64
	var busy float64 // µs the masters spent in function calls
	calls := map[string]int64{}
	for addr := range masters {
		info, err := redis.NewClient(&redis.Options{Addr: addr}).Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n, usec := commandStat(info, "fcall")
		calls[addr] = n
		total += n
		busy += float64(n) * usec
		t.Logf("master %s: %d FCALLs, %.1f µs each", addr, n, usec)
	}
	t.Logf("%d reservations: %d FCALLs, %.1f µs of Redis time each", clients*each, total, busy/(clients*each))
	if len(masters) != 3 {
		t.Fatalf("the 8 shards of the hot pool sit on %d masters of 3", len(masters))
	}
	for addr, n := range calls {
		if n < total/10 {
			t.Errorf("master %s served %d of %d function calls", addr, n, total)
		}
	}
}

// commandStat reads a command's calls and mean µs per call from INFO commandstats.
func commandStat(info, cmd string) (calls int64, usecPerCall float64) {
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec_per_call":
				usecPerCall, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return calls, usecPerCall
}
