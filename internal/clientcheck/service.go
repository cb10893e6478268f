// Package clientcheck looks at flashhold from outside, as its clients do: it runs the real
// `flashhold serve` binary on test-owned Redis and Postgres (Postgres through a fault proxy),
// drives it over HTTP with a workload that records every answer, breaks things underneath
// (kill -9 of serve, Redis killed and restarted, Redis restarted empty, Postgres cut), and
// checks every answer a client was given against the final state, the events API and
// `flashhold reconcile`.
package clientcheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/faultproxy"
	"github.com/flashhold/flashhold/internal/repo"
	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/internal/testredis"
)

// Keys of the service's API (the service is given their SHA-256).
const (
	ShopKey   = "cc-shop-key"
	OtherKey  = "cc-other-shop-key"
	VendorKey = "cc-vendor-key"
	AdminKey  = "cc-admin-key"
	Vendor    = "ccv"
)

// Service is flashhold serve on its own Redis (append-only file, fsync always: a Redis
// killed loses no acknowledged write), or under a key prefix of its own on the test's Redis
// Cluster, and its own Postgres schema, reached through a proxy that can cut it.
type Service struct {
	t      testing.TB
	bin    string
	dir    string
	Redis  *testredis.Server // nil on the cluster
	rdb    redis.UniversalClient
	prefix string
	PG     *faultproxy.Proxy
	pg     *pgxpool.Pool // straight to the schema, not through the proxy
	schema string
	URL    string
	addr   string
	// Remember is how long serve keeps a hold's record after it ended (its
	// FLASHHOLD_IDEMPOTENCY_TTL; 0: longer than any test runs).
	Remember time.Duration
	env      []string

	// Wrap, when set, runs serve through this command (e.g. prlimit with its arguments).
	Wrap []string

	mu     sync.Mutex
	serve  *exec.Cmd
	exited chan struct{} // closed when serve has exited
	log    *os.File
}

// partitions is serve's FLASHHOLD_PARTITIONS.
const partitions = 16

var build struct {
	once sync.Once
	bin  string
	err  error
}

// removeBinary removes the binary Binary built, if any (TestMain, after the tests).
func removeBinary() {
	if build.bin != "" {
		os.RemoveAll(filepath.Dir(build.bin))
	}
}

// Binary builds the flashhold binary once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "flashhold-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "flashhold")
		root, err := repo.Root()
		if err != nil {
			build.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", build.bin, "./cmd/flashhold")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Start starts the servers and serve (on the test's Redis Cluster with cluster true), with
// extra environment (FLASHHOLD_...=...).
func Start(t testing.TB, cluster bool, extra ...string) *Service {
	t.Helper()
	return start(t, cluster, nil, extra)
}

// StartWrapped starts the servers and serve on standalone Redis, serve run through the
// command wrap (e.g. prlimit and its arguments).
func StartWrapped(t testing.TB, wrap []string, extra ...string) *Service {
	t.Helper()
	return start(t, false, wrap, extra)
}

func start(t testing.TB, cluster bool, wrap, extra []string) *Service {
	t.Helper()
	s := &Service{t: t, bin: Binary(t), dir: t.TempDir(), prefix: "fh"}
	var redisEnv []string
	if cluster {
		c := testredis.Cluster(t)
		s.rdb, s.prefix = c, testredis.Prefix(t, c)
		redisEnv = []string{"FLASHHOLD_REDIS_CLUSTER_ADDRS=" + strings.Join(c.(*redis.ClusterClient).Options().Addrs, ","),
			"FLASHHOLD_KEY_PREFIX=" + s.prefix}
	} else {
		s.Redis = testredis.StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
		s.rdb = s.Redis.Client(t)
		redisEnv = []string{"FLASHHOLD_REDIS_URL=redis://" + s.Redis.Addr + "/0"}
	}
	s.launch(redisEnv, wrap, extra)
	return s
}

// launch gives the service its Postgres schema, behind the fault proxy, and starts serve on
// a free port with redisEnv (where Redis is) and extra environment.
func (s *Service) launch(redisEnv, wrap, extra []string) {
	t := s.t
	t.Helper()
	s.pg, s.schema = testpg.Schema(t)
	pgHost := strings.TrimPrefix(strings.SplitN(strings.TrimPrefix(testpg.URL(), "postgres://"), "/", 2)[0], "postgres@")
	var err error
	if s.PG, err = faultproxy.StartTCP(pgHost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.PG.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	s.URL = "http://" + s.addr
	keys := []string{"shop:client:" + hashKey(ShopKey), "other-shop:client:" + hashKey(OtherKey),
		"ccv-ops:vendor:" + Vendor + ":" + hashKey(VendorKey), "admin:admin:" + hashKey(AdminKey)}
	s.env = append(append(os.Environ(), redisEnv...),
		"FLASHHOLD_POSTGRES_URL=postgres://postgres@"+s.PG.Addr()+"/postgres?sslmode=disable&connect_timeout=2&search_path="+s.schema,
		"FLASHHOLD_MIGRATE_ON_START=true",
		"FLASHHOLD_API_KEYS="+strings.Join(keys, ","),
		"FLASHHOLD_HTTP_ADDR="+s.addr,
		"FLASHHOLD_PARTITIONS="+strconv.Itoa(partitions),
		"FLASHHOLD_RATE_LIMIT=-1",
		"FLASHHOLD_REDIS_TIMEOUT=1s",
		"FLASHHOLD_IDEMPOTENCY_LEASE=2s",
		"FLASHHOLD_REQUEST_TIMEOUT=3s",
		"FLASHHOLD_HOLD_TTL_MIN=1s",
		"FLASHHOLD_HOLD_TTL_DEFAULT=4s",
		"FLASHHOLD_COMMIT_GRACE=2s",
		"FLASHHOLD_PERSIST_TIMEOUT=3s",
		"FLASHHOLD_PERSIST_BACKOFF_MAX=500ms",
		"FLASHHOLD_SCHEDULE_INTERVAL=1s",
		"FLASHHOLD_FEED_INTERVAL=1s",
		"FLASHHOLD_FEED_TIMEOUT=2s",
		"FLASHHOLD_LOG_LEVEL=warn",
	)
	s.env = append(s.env, extra...)
	s.Wrap = wrap
	s.StartServe()
	t.Cleanup(s.KillServe)
}

func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

// Logf logs a step of the test with the time.
func (s *Service) Logf(format string, args ...any) {
	s.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// StartServe starts `flashhold serve` and waits until it answers /healthz.
func (s *Service) StartServe() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		f, err := os.Create(filepath.Join(s.dir, "serve.log"))
		if err != nil {
			s.t.Fatal(err)
		}
		s.log = f
		s.t.Cleanup(func() { f.Close() })
	}
	cmd := exec.Command(s.bin, "serve")
	if len(s.Wrap) > 0 {
		cmd = exec.Command(s.Wrap[0], append(s.Wrap[1:], s.bin, "serve")...)
	}
	cmd.Env, cmd.Stdout, cmd.Stderr = s.env, s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start serve: %v", err)
	}
	s.serve, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(s.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("serve exited while starting: %v\n%s", cmd.ProcessState, s.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("serve did not come up in 30 s: %v\n%s", err, s.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// KillServe kills serve at once (SIGKILL): nothing it had in hand is finished.
func (s *Service) KillServe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serve != nil && s.serve.Process != nil {
		s.serve.Process.Kill()
		<-s.exited
		s.serve = nil
	}
}

// Alive reports whether serve is running.
func (s *Service) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serve == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Flashhold runs another flashhold command with the service's environment and returns its
// exit code and output.
func (s *Service) Flashhold(ctx context.Context, args ...string) (int, string) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		return -1, err.Error()
	}
	return 0, string(out)
}

// Ready reports whether /readyz answers 200.
func (s *Service) Ready() bool {
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until /readyz answers 200, for up to d.
func (s *Service) WaitReady(d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s.Ready() {
			return true
		}
	}
	return false
}

// Metric reads the sum of one metric's samples from /metrics (-1 when absent).
func (s *Service) Metric(name string) float64 {
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var raw strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		raw.Write(buf[:n])
		if err != nil {
			break
		}
	}
	total, found := 0.0, false
	for _, line := range strings.Split(raw.String(), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total, found = total+v, true
		}
	}
	if !found {
		return -1
	}
	return total
}

// WaitPersisted waits until the ledger holds every event Redis has, with no seq missing:
// each partition's rows are seq 1 up to its last seq in Redis (its meta). (The lag metric is
// measured once a second, so it can read 0 while the newest events wait; and the ledger can
// hold later events of a partition before earlier ones, which a dead persister left pending
// until they are claimed.)
func (s *Service) WaitPersisted(d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if s.persisted() {
			return true
		}
	}
	return false
}

func (s *Service) persisted() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ledger := map[int]int64{}
	rows, err := s.pg.Query(ctx, "SELECT partition, max(seq), count(*) FROM inventory_events GROUP BY 1")
	if err != nil {
		return false
	}
	for rows.Next() {
		var p int
		var last, n int64
		if rows.Scan(&p, &last, &n) != nil || n != last {
			rows.Close()
			return false
		}
		ledger[p] = last
	}
	if rows.Err() != nil {
		return false
	}
	for part := range partitions {
		seq, err := s.rdb.HGet(ctx, fmt.Sprintf("%s:{p%d}:meta", s.prefix, part), "seq").Int64()
		if err == redis.Nil {
			seq, err = 0, nil
		}
		if err != nil || seq != ledger[part] {
			return false
		}
	}
	return true
}

// Streams describes every partition's seq, stream length and consumer groups in Redis, and
// what the ledger holds of it, for failure messages.
func (s *Service) Streams(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc := s.rdb
	var b strings.Builder
	for part := range partitions {
		key := fmt.Sprintf("%s:{p%d}:log", s.prefix, part)
		seq, _ := rc.HGet(ctx, fmt.Sprintf("%s:{p%d}:meta", s.prefix, part), "seq").Result()
		n, _ := rc.XLen(ctx, key).Result()
		groups, _ := rc.XInfoGroups(ctx, key).Result()
		fmt.Fprintf(&b, "p%d: seq %s, %d entries, groups %+v\n", part, seq, n, groups)
	}
	fmt.Fprintf(&b, "ledger (partition|max seq|rows):\n")
	if rows, err := s.pg.Query(ctx, "SELECT partition, max(seq), count(*) FROM inventory_events GROUP BY 1 ORDER BY 1"); err != nil {
		fmt.Fprintf(&b, "%v\n", err)
	} else {
		for rows.Next() {
			var p, seq, n int64
			rows.Scan(&p, &seq, &n)
			fmt.Fprintf(&b, "%d|%d|%d\n", p, seq, n)
		}
		rows.Close()
	}
	if resp, err := http.Get(s.URL + "/metrics"); err == nil {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "flashhold_ledger_lag") || strings.HasPrefix(line, "flashhold_keyspace") {
				fmt.Fprintln(&b, line)
			}
		}
	}
	return b.String()
}

// LogTail is the end of serve's log, for failure messages.
func (s *Service) LogTail() string {
	raw, _ := os.ReadFile(filepath.Join(s.dir, "serve.log"))
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}
