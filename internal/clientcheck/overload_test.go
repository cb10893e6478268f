package clientcheck

import (
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOverload drives more connections than serve's cap (100) and more requests than it
// admits (300 clients without pause, at most 16 requests admitted at once) for four
// seconds, and checks what they were told: serve stays up; what it cannot take it sheds,
// with 503 and Retry-After (a connection over the cap as too_many_connections, a request
// over the admission limit as overloaded); every request it admits is answered within its
// deadline; no other 5xx; and afterwards every answer holds (Check).
func TestOverload(t *testing.T) {
	const timeout = 3 * time.Second // FLASHHOLD_REQUEST_TIMEOUT in Start
	// At most 16 requests admitted at once, below the 100 connections: admission sheds
	// whatever the machine's speed (with the default limit it sheds only once requests
	// take longer than the target, which a fast run may not reach).
	s := Start(t, false, "FLASHHOLD_HTTP_MAX_CONNS=100", "FLASHHOLD_ADMIT_MAX=16")
	pools := setUp(t, s)
	w := NewWorkload(s.URL, pools)
	during(w, 300, 4*time.Second, 0, nil)
	s.Logf("overload: %d operations", len(w.Ops()))
	if !s.Alive() {
		t.Fatalf("serve exited under overload:\n%s", s.LogTail())
	}
	codes := map[string]int{}
	for _, op := range w.Ops() {
		for _, snd := range op.Sends {
			switch {
			case snd.Status == http.StatusServiceUnavailable:
				codes[snd.code()]++
				if snd.RetryAfter == "" {
					t.Errorf("%s answered 503 without Retry-After: %s", op.Kind, snd.Body)
				}
			case snd.Status >= 500:
				t.Errorf("%s answered %d: %s", op.Kind, snd.Status, snd.Body)
			case snd.Status == 0:
				codes["no answer"]++
			default:
				codes["answered"]++
				if snd.Took > timeout+500*time.Millisecond {
					t.Errorf("%s admitted and answered %d after %v, past its %v deadline", op.Kind, snd.Status, snd.Took, timeout)
				}
			}
		}
	}
	s.Logf("sends by outcome: %v", codes)
	if codes["too_many_connections"] == 0 || codes["overloaded"] == 0 {
		t.Errorf("nothing shed by the connection cap or by admission: %v", codes)
	}
	if s.Metric("flashhold_http_shed_total") <= 0 || s.Metric("flashhold_http_connections_refused_total") <= 0 {
		t.Error("the shed requests and refused connections are not in the metrics")
	}
	settleAndCheck(t, s, pools, w)
}

// TestOutOfFiles runs serve with 200 file descriptors and the connection cap above that,
// opens 400 connections at once, and checks that serve keeps running through the accept
// errors (it exited on the first before) and serves again once they are closed.
func TestOutOfFiles(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	s := StartWrapped(t, []string{"prlimit", "--nofile=200:200"}, "FLASHHOLD_HTTP_MAX_CONNS=100000")
	addr := strings.TrimPrefix(s.URL, "http://")
	var conns []net.Conn
	for range 400 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // serve meets EMFILE on every accept past its descriptors
	for _, c := range conns {
		c.Close()
	}
	if !s.WaitReady(10 * time.Second) {
		t.Fatalf("serve does not answer after running out of file descriptors (%d connections opened):\n%s", len(conns), s.LogTail())
	}
	if !s.Alive() {
		t.Fatal("serve exited")
	}
	if n := s.Metric("flashhold_http_accept_errors_total"); n <= 0 {
		t.Fatalf("no accept error counted (%v) with %d connections on 200 descriptors", n, len(conns))
	}
	if !strings.Contains(s.LogTail(), "too many open files") {
		t.Errorf("the log does not name the accept error:\n%s", s.LogTail())
	}
}
