package clientcheck

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/testredis"
)

// Replicated is a Service on a primary (append-only file, fsync always) with replicas,
// watched by three Sentinels; serve finds the primary through the Sentinels.
type Replicated struct {
	*Service
	Primary   *testredis.Server
	Replicas  []*testredis.Server
	Sentinels *testredis.Sentinels
}

// SentinelMaster is the name the test's Sentinels monitor the primary under.
const SentinelMaster = "flashhold"

// StartSentinel starts a primary, replicas replicas of it, three Sentinels (down after 1 s
// without an answer, failover timeout 3 s) and serve configured with the Sentinels, with extra
// environment. The test is skipped when redis-sentinel is not installed.
func StartSentinel(t testing.TB, replicas int, extra ...string) *Replicated {
	t.Helper()
	if testredis.SentinelBinary() == "" {
		t.Skip("redis-sentinel is not installed (deploy/local/sentinel.sh installs Debian's redis-sentinel); skipping the Sentinel failover test")
	}
	r := &Replicated{Service: &Service{t: t, bin: Binary(t), dir: t.TempDir(), prefix: "fh"}}
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	r.Primary = testredis.StartServer(t, aof...)
	for range replicas {
		r.Replicas = append(r.Replicas, testredis.StartReplica(t, r.Primary, aof...))
	}
	r.Sentinels = testredis.StartSentinels(t, r.Primary, SentinelMaster, 3, time.Second, 3*time.Second)
	r.Sentinels.WaitReplicas(t, replicas)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: r.Sentinels.Addrs, PoolSize: 16})
	t.Cleanup(func() { rdb.Close() })
	r.rdb = rdb
	r.launch([]string{"FLASHHOLD_REDIS_SENTINEL_ADDRS=" + strings.Join(r.Sentinels.Addrs, ","),
		"FLASHHOLD_REDIS_SENTINEL_MASTER=" + SentinelMaster}, nil, extra)
	return r
}
