package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/internal/testredis"
	"github.com/flashhold/flashhold/internal/testwait"
)

func fixedAdmission(limit int, wait time.Duration) *admission {
	return newAdmission(AdmissionConfig{On: true, Target: time.Hour, Wait: wait, MinLimit: limit, MaxLimit: limit})
}

// TestAdmissionFinishingFirst: when a place frees up, a waiting commit goes before a new
// hold that has waited longer.
func TestAdmissionFinishingFirst(t *testing.T) {
	a := fixedAdmission(1, 5*time.Second)
	done, ok := a.admit(context.Background(), starting)
	if !ok {
		t.Fatal("the first request was shed")
	}
	order := make(chan class, 2)
	var wg sync.WaitGroup
	for i, c := range []class{starting, finishing} {
		wg.Go(func() {
			d, ok := a.admit(context.Background(), c)
			if !ok {
				t.Errorf("%s shed", classNames[c])
				return
			}
			order <- c
			d()
		})
		waitFor(t, func() bool { _, _, n := a.state(); return n == i+1 })
	}
	done()
	wg.Wait()
	if first := <-order; first != finishing {
		t.Fatalf("%s was admitted first; a finishing request must go first", classNames[first])
	}
}

// TestAdmissionSheds: beyond the limit, twice as many as the limit wait (for at most the
// wait, and never past their deadline); the rest are shed at once.
func TestAdmissionSheds(t *testing.T) {
	a := fixedAdmission(2, 50*time.Millisecond)
	var mu sync.Mutex
	shed := map[class]int{}
	a.onShed = func(c class) { mu.Lock(); shed[c]++; mu.Unlock() }
	for range 2 {
		if _, ok := a.admit(context.Background(), starting); !ok {
			t.Fatal("shed under the limit")
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			start := time.Now()
			if _, ok := a.admit(context.Background(), starting); ok {
				t.Error("admitted with no place free")
			}
			if took := time.Since(start); took < 40*time.Millisecond || took > time.Second {
				t.Errorf("shed after %v; want after the 50ms wait", took)
			}
		})
	}
	waitFor(t, func() bool { _, _, n := a.state(); return n == 4 })
	start := time.Now()
	if _, ok := a.admit(context.Background(), finishing); ok || time.Since(start) > 10*time.Millisecond {
		t.Error("a request beyond the queue was not shed at once")
	}
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	wg.Wait()
	if _, ok := a.admit(ctx, starting); ok {
		t.Error("a request past its deadline was admitted")
	}
	mu.Lock()
	defer mu.Unlock()
	if shed[starting] != 5 || shed[finishing] != 1 {
		t.Errorf("shed counts %v; want 5 starting, 1 finishing", shed)
	}
}

// waitFor waits until cond holds (for at most 5 s).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.Until(t, 5*time.Second, "the condition holds", cond)
}

// TestAdmissionAdapts: the limit shrinks while requests take longer than the target and
// grows back while they are fast and others wait.
func TestAdmissionAdapts(t *testing.T) {
	a := newAdmission(AdmissionConfig{On: true, Target: 10 * time.Millisecond, Wait: time.Millisecond, MinLimit: 4, MaxLimit: 1000})
	l0, _, _ := a.state()
	for range 20 {
		a.window.start = time.Now().Add(-time.Second)
		a.inflight++
		a.done(50 * time.Millisecond)
	}
	slow, _, _ := a.state()
	if slow >= l0/2 {
		t.Fatalf("limit %v after slow windows, from %v; want it to shrink", slow, l0)
	}
	for range 20 {
		a.window.start, a.window.queued = time.Now().Add(-time.Second), true
		a.inflight++
		a.done(time.Millisecond)
	}
	if fast, _, _ := a.state(); fast <= slow*2 {
		t.Fatalf("limit %v after fast windows with requests waiting, from %v; want it to grow", fast, slow)
	}
}

// TestConnectionCap: a connection beyond FLASHHOLD_HTTP_MAX_CONNS is answered 503 with
// Retry-After and a JSON error, the server keeps serving those it holds, and a place that
// frees up is taken by the next connection.
func TestConnectionCap(t *testing.T) {
	ts := startServer(t, testredis.Standalone(t), func(c *Config) { c.MaxConns = 3 })
	addr := strings.TrimPrefix(ts.url, "http://")
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held { // each is served: the listener has accepted it
		get(t, c, "/healthz", 200)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, extra, "/healthz", http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.body, `"code":"too_many_connections"`) {
		t.Fatalf("over the cap: %v %s", resp.Header, resp.body)
	}
	held[0].Close()
	testwait.Until(t, 5*time.Second, "a freed place is given to a new connection", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return tryGet(c, "/healthz") == 200
	})
	for _, c := range held[1:] {
		c.Close()
	}
	// Until the server has seen the closes, a new connection may still be over the cap (and
	// answered 503 before it sends anything).
	var metrics string
	waitFor(t, func() bool {
		resp, err := http.Get(ts.url + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		metrics = string(body)
		return resp.StatusCode == 200
	})
	if strings.Contains(metrics, "flashhold_http_connections_refused_total 0") ||
		!strings.Contains(metrics, "flashhold_http_connections_refused_total ") {
		t.Fatal("flashhold_http_connections_refused_total did not count the refused connection")
	}
}

type rawResponse struct {
	*http.Response
	body string
}

func get(t *testing.T, c net.Conn, path string, want int) rawResponse {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s; want %d", path, resp.StatusCode, body, want)
	}
	return rawResponse{resp, string(body)}
}

func tryGet(c net.Conn, path string) int {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// failingListener fails its first n accepts with err, then accepts from the real one.
type failingListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptErrorsKeepServing: an accept that fails (out of file descriptors) is retried;
// Serve does not return on it (it did: serve exited under overload).
func TestAcceptErrorsKeepServing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	g := newGuardedListener(&failingListener{Listener: ln, n: 5, err: &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}}, 10, &log)
	accepted := make(chan error, 1)
	go func() {
		c, err := g.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept returned %v after accept errors; want it to keep trying", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not accept after the errors passed")
	}
	if g.failures.Load() != 5 {
		t.Fatalf("%d failures counted, want 5", g.failures.Load())
	}
	ln.Close()
	if _, err := g.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v; want net.ErrClosed", err)
	}
}
