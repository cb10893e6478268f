package testredis

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplicatedCluster is a Redis Cluster of one test's own: masters with one replica each, on
// free loopback ports, killed when the test ends. Unlike Cluster it may be broken: a test can
// kill a master and watch the cluster promote its replica.
type ReplicatedCluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartReplicatedCluster starts masters masters and as many replicas (a node is called failed
// after nodeTimeout without an answer), with extra redis-server arguments for every node, and
// waits until every slot is served and every replica in sync. The test is skipped when
// redis-server is not installed.
func StartReplicatedCluster(t testing.TB, masters int, nodeTimeout time.Duration, args ...string) *ReplicatedCluster {
	t.Helper()
	c := &ReplicatedCluster{t: t}
	nodeArgs := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10)}, args...)
	for range 2 * masters {
		c.Nodes = append(c.Nodes, StartServer(t, nodeArgs...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	for _, n := range c.Nodes {
		if err := waitClusterOK(ctx, n.Addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitReplicated(ctx, masters); err != nil {
		t.Fatal(err)
	}
	return c
}

// Addrs are the nodes' addresses, as seed nodes for a client.
func (c *ReplicatedCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a cluster client of the nodes.
func (c *ReplicatedCluster) Client(t testing.TB) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: 64})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// clusterNode is a line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string // master: the id of the node a replica follows
	flags            string
	slots            [][2]int
}

func (n clusterNode) is(flag string) bool { return strings.Contains(","+n.flags+",", ","+flag+",") }

// view reads CLUSTER NODES from the first node that answers, other than skip.
func (c *ReplicatedCluster) view(ctx context.Context, skip *Server) ([]clusterNode, error) {
	var last error
	for _, s := range c.Nodes {
		if s == skip {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		text, err := cl.ClusterNodes(ctx).Result()
		cl.Close()
		if err != nil {
			last = err
			continue
		}
		var out []clusterNode
		for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			n := clusterNode{id: f[0], addr: addr, flags: f[2], master: f[3]}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if strings.HasPrefix(r, "[") {
					continue // a slot being migrated
				}
				a, _ := strconv.Atoi(lo)
				b := a
				if ok {
					b, _ = strconv.Atoi(hi)
				}
				n.slots = append(n.slots, [2]int{a, b})
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("no cluster node answered: %v", last)
}

func (c *ReplicatedCluster) server(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// MasterOf is the node that serves key's slot now.
func (c *ReplicatedCluster) MasterOf(ctx context.Context, key string) (*Server, error) {
	nodes, err := c.view(ctx, nil)
	if err != nil {
		return nil, err
	}
	var slot int
	for _, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		n, err := cl.ClusterKeySlot(ctx, key).Result()
		cl.Close()
		if err == nil {
			slot = int(n)
			break
		}
	}
	for _, n := range nodes {
		if !n.is("master") || n.is("fail") {
			continue
		}
		for _, r := range n.slots {
			if slot >= r[0] && slot <= r[1] {
				return c.server(n.addr), nil
			}
		}
	}
	return nil, fmt.Errorf("no master serves slot %d", slot)
}

// ReplicaOf is the replica of master.
func (c *ReplicatedCluster) ReplicaOf(ctx context.Context, master *Server) (*Server, error) {
	nodes, err := c.view(ctx, nil)
	if err != nil {
		return nil, err
	}
	var id string
	for _, n := range nodes {
		if n.addr == master.Addr {
			id = n.id
		}
	}
	for _, n := range nodes {
		if id != "" && n.master == id && !n.is("fail") {
			return c.server(n.addr), nil
		}
	}
	return nil, fmt.Errorf("%s has no replica", master.Addr)
}

// Promoted reports, asking a node other than dead, whether dead's replica serves its slots:
// dead is flagged failed, and no slot is left to a failed node.
func (c *ReplicatedCluster) Promoted(ctx context.Context, dead *Server) bool {
	nodes, err := c.view(ctx, dead)
	if err != nil {
		return false
	}
	for _, n := range nodes {
		if n.addr == dead.Addr && (!n.is("fail") || len(n.slots) > 0) {
			return false
		}
	}
	return true
}

// WaitReplicated waits until masters masters each have a replica whose link is up, and
// every node says the cluster is ok.
func (c *ReplicatedCluster) WaitReplicated(ctx context.Context, masters int) error {
	for {
		synced := 0
		nodes, err := c.view(ctx, nil)
		if err == nil {
			for _, n := range nodes {
				if !n.is("slave") || n.is("fail") {
					continue
				}
				cl := redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1})
				info, _ := cl.Info(ctx, "replication").Result()
				cl.Close()
				if strings.Contains(info, "master_link_status:up") {
					synced++
				}
			}
		}
		if synced >= masters {
			for _, n := range c.Nodes {
				if err := waitClusterOK(ctx, n.Addr); err != nil {
					return err
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d replicas in sync (%v)", synced, masters, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
