package clientcheck

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Another starts one more serve on the same Redis, key prefix and Postgres schema as s, on
// a port of its own: a second instance behind the same load balancer.
func (s *Service) Another() *Service {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := &Service{t: s.t, bin: s.bin, dir: s.t.TempDir(), Redis: s.Redis, rdb: s.rdb, prefix: s.prefix, PG: s.PG,
		pg: s.pg, schema: s.schema, URL: "http://" + addr, addr: addr, Remember: s.Remember,
		// The last value of a variable wins (os/exec keeps the last of duplicates).
		env: append(append([]string(nil), s.env...), "FLASHHOLD_HTTP_ADDR="+addr)}
	o.StartServe()
	s.t.Cleanup(o.KillServe)
	return o
}

// Pid is serve's process id (0 when it is not running).
func (s *Service) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serve == nil || s.serve.Process == nil {
		return 0
	}
	return s.serve.Process.Pid
}

// Leases watches the service's leases (sweep:<partition>, persist:<partition>, maintain,
// alerts, reconcile) in Redis and remembers when each changed hands.
type Leases struct {
	mu      sync.Mutex
	holders map[string][]Holding
	stop    context.CancelFunc
	done    chan struct{}
}

// Holding is a lease seen held by one owner from At on.
type Holding struct {
	Owner string
	At    time.Time
}

// WatchLeases reads every lease of s's prefix each interval until Stop.
func (s *Service) WatchLeases(interval time.Duration) *Leases {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leases{holders: map[string][]Holding{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		pattern := s.prefix + ":lease:*"
		for ctx.Err() == nil {
			now := time.Now()
			keys, _ := s.rdb.Keys(ctx, pattern).Result()
			for _, k := range keys {
				owner, err := s.rdb.Get(ctx, k).Result()
				if err != nil {
					continue
				}
				name := strings.TrimPrefix(k, s.prefix+":lease:")
				l.mu.Lock()
				h := l.holders[name]
				if len(h) == 0 || h[len(h)-1].Owner != owner {
					l.holders[name] = append(h, Holding{Owner: owner, At: now})
				}
				l.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}()
	return l
}

// Stop ends the watch.
func (l *Leases) Stop() { l.stop(); <-l.done }

// Moves says, for every lease the process pid held at from, how long after from another
// owner was first seen holding it (-1: never, up to now).
func (l *Leases) Moves(pid int, from time.Time) map[string]time.Duration {
	mark := "-" + strconv.Itoa(pid) + "-"
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Duration{}
	for name, hs := range l.holders {
		held := false
		for _, h := range hs {
			if !h.At.After(from) {
				held = strings.Contains(h.Owner, mark)
				continue
			}
			if !held {
				break
			}
			if !strings.Contains(h.Owner, mark) {
				out[name] = h.At.Sub(from)
				break
			}
		}
		if _, moved := out[name]; held && !moved {
			out[name] = -1
		}
	}
	return out
}
