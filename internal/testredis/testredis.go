// Package testredis gives tests real Redis servers: the shared standalone server (each test
// under its own key prefix, cleaned up afterwards) and a 3-master Redis Cluster that the test
// binary starts on free loopback ports and stops when it exits.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/rediskeys"
)

// URL is the standalone Redis tests use: FLASHHOLD_TEST_REDIS_URL, or the local default.
func URL() string {
	if u := os.Getenv("FLASHHOLD_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Standalone returns a client of the shared standalone Redis; the test fails when it is not
// reachable (run `make test`, which starts it).
func Standalone(t testing.TB) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("FLASHHOLD_TEST_REDIS_URL: %v", err)
	}
	opt.PoolSize = 256
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s not reachable (start it with deploy/local/up.sh or `make test`): %v", URL(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Faulty returns a client of the same Redis as c (standalone or the test cluster) whose every
// connection goes through a fault proxy, and the proxies' net for the test to set rules on.
// The client keeps go-redis's own retries (which the engine must keep from resending its
// writes), and gives up on a reply after timeout.
func Faulty(t testing.TB, c redis.UniversalClient, timeout time.Duration) (redis.UniversalClient, *faultproxy.Net) {
	t.Helper()
	n := faultproxy.NewNet()
	t.Cleanup(n.Close)
	var fc redis.UniversalClient
	switch c := c.(type) {
	case *redis.ClusterClient:
		fc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Options().Addrs, Dialer: n.Dial, PoolSize: 64,
			ReadTimeout: timeout, WriteTimeout: timeout})
	case *redis.Client:
		opt := *c.Options()
		opt.Dialer, opt.PoolSize, opt.ReadTimeout, opt.WriteTimeout = n.Dial, 64, timeout, timeout
		opt.OnConnect = nil
		fc = redis.NewClient(&opt)
	default:
		t.Fatalf("testredis.Faulty: unexpected client %T", c)
	}
	t.Cleanup(func() { fc.Close() })
	return fc, n
}

// registryKey records every test prefix with its creation time, so prefixes left by a test
// process that was killed before its cleanup (a fuzz worker, a timeout) are removed later.
const registryKey = "fhtest-registry"

var sweepOnce sync.Once

// Prefix returns a key prefix no other test uses, and deletes every key under it when the
// test ends (on every master of a cluster). Nothing else is touched, except prefixes of this
// package's own that are more than an hour old.
func Prefix(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "fhtest-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sweepOnce.Do(func() { sweepAbandoned(ctx, c) })
	c.ZAdd(ctx, registryKey, redis.Z{Score: float64(time.Now().Unix()), Member: prefix})
	CleanUpWith(t, c, prefix)
	return prefix
}

// CleanUpWith deletes prefix's keys through c when the test ends, and forgets the prefix. Prefix
// calls it with its own client; a test whose engine reaches Redis through a connection it cuts
// (a fault proxy) calls it again with a direct one.
func CleanUpWith(t testing.TB, c redis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, c, prefix); err != nil {
			t.Logf("clean up keys %s:*: %v", prefix, err)
			return
		}
		c.ZRem(ctx, registryKey, prefix)
	})
}

// sweepAbandoned deletes the keys of test prefixes registered more than an hour ago.
func sweepAbandoned(ctx context.Context, c redis.UniversalClient) {
	old, err := c.ZRangeByScore(ctx, registryKey, &redis.ZRangeBy{Min: "-inf",
		Max: strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}).Result()
	if err != nil {
		return
	}
	for _, p := range old {
		if DeletePrefix(ctx, c, p) == nil {
			c.ZRem(ctx, registryKey, p)
		}
	}
}

// DeletePrefix deletes every key that starts with prefix+":".
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	return rediskeys.DeletePrefix(ctx, c, prefix)
}

var cluster struct {
	once  sync.Once
	addrs []string
	procs []*exec.Cmd
	dir   string
	err   error
}

// Cluster returns a client of a 3-master Redis Cluster started by this test binary. The
// test is skipped, saying why, when redis-server is not installed.
func Cluster(t testing.TB) redis.UniversalClient {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (deploy/local/up.sh installs it); skipping the Redis Cluster run")
	}
	cluster.once.Do(startCluster)
	if cluster.err != nil {
		t.Fatalf("start redis cluster: %v", cluster.err)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.addrs, PoolSize: 256})
	t.Cleanup(func() { c.Close() })
	return c
}

// StopCluster stops the cluster nodes, if any were started. Call it from TestMain.
func StopCluster() {
	for _, p := range cluster.procs {
		if p.Process != nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	if cluster.dir != "" {
		os.RemoveAll(cluster.dir)
	}
}

// freePort finds a loopback port that is free together with its cluster bus port (+10000).
func freePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port pair found")
}

func startCluster() {
	dir, err := os.MkdirTemp("", "flashhold-cluster-")
	if err != nil {
		cluster.err = err
		return
	}
	cluster.dir = dir
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			cluster.err = err
			return
		}
		nodeDir := filepath.Join(dir, strconv.Itoa(port))
		os.MkdirAll(nodeDir, 0o755)
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir", nodeDir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--logfile", filepath.Join(nodeDir, "log"))
		if err := cmd.Start(); err != nil {
			cluster.err = fmt.Errorf("node %d: %w", i, err)
			return
		}
		cluster.procs = append(cluster.procs, cmd)
		cluster.addrs = append(cluster.addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range cluster.addrs {
		if err := waitPing(ctx, a); err != nil {
			cluster.err = err
			return
		}
	}
	args := append([]string{"--cluster", "create"}, cluster.addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		cluster.err = fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
		return
	}
	for _, a := range cluster.addrs {
		if err := waitClusterOK(ctx, a); err != nil {
			cluster.err = err
			return
		}
	}
}

func waitPing(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for {
		if c.Ping(ctx).Err() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s did not start", addr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitClusterOK(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for {
		info, _ := c.ClusterInfo(ctx).Result()
		if strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: cluster not ok: %s", addr, info)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Main runs a package's tests, then stops the cluster nodes they may have started. Use it as
// the package's TestMain: func TestMain(m *testing.M) { testredis.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopCluster()
	os.Exit(code)
}

// Server is a redis-server the test started on a free loopback port, in a directory of its
// own; the test can kill it, restart it (on the same port and data) and read its log.
type Server struct {
	t    testing.TB
	Addr string
	Dir  string
	args []string
	cmd  *exec.Cmd
}

// StartServer starts a redis-server with extra arguments (e.g. "--appendonly", "yes"); it is
// killed when the test ends. The test is skipped when redis-server is not installed.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (deploy/local/up.sh installs it)")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir(), args: args}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start (re)starts the server on its port and directory, with extra arguments for this start
// only, and waits until it accepts connections (it may still be loading its data).
func (s *Server) Start(extra ...string) {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir, "--save", "",
		"--protected-mode", "no", "--logfile", filepath.Join(s.Dir, "log"), "--enable-debug-command", "yes"}, s.args...)
	s.cmd = exec.Command("redis-server", append(args, extra...)...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not start: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL): what it had not written to disk is lost.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Client returns a client of the server.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, PoolSize: 64})
	t.Cleanup(func() { c.Close() })
	return c
}

// StartReplica starts a replica of primary (its own server, killed when the test ends, with
// extra arguments) and waits until it has synchronised.
func StartReplica(t testing.TB, primary *Server, args ...string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary.Addr)
	r := StartServer(t, append([]string{"--replicaof", host, port}, args...)...)
	c := r.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s of %s did not synchronise: %s", r.Addr, primary.Addr, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wipe removes the server's data files (append-only file, snapshot): started again, it
// comes up empty. Kill it first.
func (s *Server) Wipe() {
	s.t.Helper()
	for _, name := range []string{"appendonlydir", "dump.rdb"} {
		if err := os.RemoveAll(filepath.Join(s.Dir, name)); err != nil {
			s.t.Fatal(err)
		}
	}
}
