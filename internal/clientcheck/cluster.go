package clientcheck

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flashhold/flashhold/internal/testredis"
)

// Clustered is a Service on a Redis Cluster of its own: three masters with a replica each
// (append-only file, fsync always; a node is called failed after 1 s without an answer).
// Its Victim is the master that serves partition 0, the one a test kills.
type Clustered struct {
	*Service
	Cluster *testredis.ReplicatedCluster
	Victim  *testredis.Server
	key     string // a key of partition 0
}

// StartCluster starts the cluster and serve on it, with extra environment.
func StartCluster(t testing.TB, extra ...string) *Clustered {
	t.Helper()
	c := &Clustered{Service: &Service{t: t, bin: Binary(t), dir: t.TempDir(), prefix: "fh"}, key: "fh:{p0}:stock"}
	c.Cluster = testredis.StartReplicatedCluster(t, 3, time.Second, replicationArgs()...)
	c.rdb = c.Cluster.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if c.Victim, err = c.Cluster.MasterOf(ctx, c.key); err != nil {
		t.Fatal(err)
	}
	c.launch([]string{"FLASHHOLD_REDIS_CLUSTER_ADDRS=" + strings.Join(c.Cluster.Addrs(), ","), "FLASHHOLD_KEY_PREFIX=" + c.prefix}, nil, extra)
	return c
}

func (c *Clustered) service() *Service { return c.Service }

func (c *Clustered) killPrimary() string {
	c.Victim.Kill()
	return c.Victim.Addr
}

func (c *Clustered) newPrimary(ctx context.Context) (string, bool) {
	if !c.Cluster.Promoted(ctx, c.Victim) {
		return "", false
	}
	m, err := c.Cluster.MasterOf(ctx, c.key)
	if err != nil {
		return "", false
	}
	return m.Addr, m != c.Victim
}

// CutReplication keeps the victim's replica from getting its writes (see
// Replicated.CutReplication).
func (c *Clustered) CutReplication(ctx context.Context) error {
	return c.Victim.Client(c.t).ACLDelUser(ctx, replUser).Err()
}

// Rejoin starts the killed victim again on its files: it comes back as the replica of the
// node promoted in its place. It returns once every master has a replica in sync.
func (c *Clustered) Rejoin(ctx context.Context) error {
	c.Victim.Start()
	return c.Cluster.WaitReplicated(ctx, 3)
}
