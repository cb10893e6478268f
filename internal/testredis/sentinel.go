package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinels are redis-sentinel processes the test started on free loopback ports, all
// monitoring one primary under one name; they are killed when the test ends.
type Sentinels struct {
	Master string
	Addrs  []string
	procs  []*exec.Cmd
}

// SentinelBinary is the redis-sentinel command, or "" when it is not installed
// (deploy/local/sentinel.sh installs it).
func SentinelBinary() string {
	p, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return ""
	}
	return p
}

// StartSentinels starts n Sentinels (quorum n/2+1) monitoring primary as master. They call
// the primary down after downAfter without an answer and give a failover failoverTimeout.
// The test is skipped when redis-sentinel is not installed.
func StartSentinels(t testing.TB, primary *Server, master string, n int, downAfter, failoverTimeout time.Duration) *Sentinels {
	t.Helper()
	bin := SentinelBinary()
	if bin == "" {
		t.Skip("redis-sentinel is not installed (deploy/local/sentinel.sh installs Debian's redis-sentinel); skipping the Sentinel failover test")
	}
	host, port, _ := net.SplitHostPort(primary.Addr)
	s := &Sentinels{Master: master}
	t.Cleanup(s.Kill)
	for i := range n {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		// Sentinel rewrites its configuration file as it learns; it must be its own.
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s %s %s %d\n"+
			"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\nsentinel parallel-syncs %s 1\n",
			p, dir, filepath.Join(dir, "log"), master, host, port, n/2+1,
			master, downAfter.Milliseconds(), master, failoverTimeout.Milliseconds(), master)
		file := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, file)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sentinel %d: %v", i, err)
		}
		s.procs = append(s.procs, cmd)
		s.Addrs = append(s.Addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	// Ready when every Sentinel names the primary and knows of the others.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a})
		for {
			m, err := c.Master(ctx, master).Result()
			if err == nil && m["num-other-sentinels"] == strconv.Itoa(n-1) {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				t.Fatalf("sentinel %s did not get ready: %v %v", a, m, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return s
}

// Primary is the address the Sentinel at Addrs[i] gives for the primary now.
func (s *Sentinels) Primary(ctx context.Context, i int) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addrs[i]})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// Kill stops every Sentinel (SIGKILL).
func (s *Sentinels) Kill() {
	for _, p := range s.procs {
		if p.Process != nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	s.procs = nil
}

// WaitReplicas waits until every Sentinel knows of n replicas of the primary (Sentinels
// learn them from the primary's INFO; a failover needs one).
func (s *Sentinels) WaitReplicas(t testing.TB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a})
		for {
			r, err := c.Replicas(ctx, s.Master).Result()
			if err == nil && len(r) >= n {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				t.Fatalf("sentinel %s knows %d replicas, want %d: %v", a, len(r), n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
}
