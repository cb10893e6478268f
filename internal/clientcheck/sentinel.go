package clientcheck

import (
	"context"
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

const replUser, replPassword = "replication", "cc-replication-password"

// replicationArgs are the arguments of every server of a replicated Redis: append-only file
// with fsync always, and the replication user.
func replicationArgs() []string {
	return []string{"--appendonly", "yes", "--appendfsync", "always",
		"--user", replUser, "on", ">" + replPassword, "~*", "&*", "+@all",
		"--masteruser", replUser, "--masterauth", replPassword}
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
	// Replicas authenticate as a user of their own, known to every server (ACLs do not
	// replicate, and any replica may be promoted): CutReplication removes it.
	args := replicationArgs()
	r.Primary = testredis.StartServer(t, args...)
	for range replicas {
		r.Replicas = append(r.Replicas, testredis.StartReplica(t, r.Primary, args...))
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

// replicated is a Redis with replicas whose primary a test kills under load.
type replicated interface {
	service() *Service
	// killPrimary kills the primary (kill -9) and returns its address.
	killPrimary() string
	// newPrimary names the node that serves in the dead primary's place, once there is one.
	newPrimary(ctx context.Context) (string, bool)
	// CutReplication keeps the primary's replicas from getting its writes.
	CutReplication(ctx context.Context) error
}

func (r *Replicated) service() *Service { return r.Service }

func (r *Replicated) killPrimary() string {
	r.Primary.Kill()
	return r.Primary.Addr
}

func (r *Replicated) newPrimary(ctx context.Context) (string, bool) {
	a, err := r.Sentinels.Primary(ctx, 0)
	return a, err == nil && a != r.Primary.Addr
}

// CutReplication breaks every replica's link to the primary (as a network partition between
// them would) and keeps them from reconnecting: the primary goes on acknowledging writes no
// replica has.
func (r *Replicated) CutReplication(ctx context.Context) error {
	c := r.Primary.Client(r.t)
	return c.ACLDelUser(ctx, replUser).Err() // closes the user's connections too
}
