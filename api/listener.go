package api

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// overCapResponse answers a connection beyond the cap: it is closed after this one answer.
var overCapResponse = func() []byte {
	body := `{"error":{"code":"too_many_connections","message":"the server holds its most connections; retry soon"}}`
	return []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
}()

// guardedListener keeps serving through accept errors and caps the connections open at once.
//
// An accept error other than the listener being closed (too many open files, a connection
// aborted before it was accepted) is logged at most once a second and retried after a pause
// that doubles up to one second: a server that returned on it would exit under exactly the
// load it exists for. A connection accepted beyond the cap is answered 503 with Retry-After
// and closed at once, before fasthttp reads anything from it.
type guardedListener struct {
	net.Listener
	slots    chan struct{}
	log      *zerolog.Logger
	refused  atomic.Int64 // connections answered 503 for the cap
	failures atomic.Int64 // accept errors
	lastLog  atomic.Int64 // unix nanos of the last logged accept error
}

func newGuardedListener(ln net.Listener, maxConns int, log *zerolog.Logger) *guardedListener {
	return &guardedListener{Listener: ln, slots: make(chan struct{}, maxConns), log: log}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	pause := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			l.failures.Add(1)
			if now := time.Now().UnixNano(); now-l.lastLog.Load() > int64(time.Second) {
				l.lastLog.Store(now)
				ev := l.log.Warn().Err(err).Int("open_connections", len(l.slots))
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					ev = ev.Str("hint", "the process is out of file descriptors: lower FLASHHOLD_HTTP_MAX_CONNS or raise the open-files limit")
				}
				ev.Msg("accepting a connection failed; retrying")
			}
			time.Sleep(pause)
			pause = min(2*pause, time.Second)
			continue
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: l.release}, nil
		default:
			l.refused.Add(1)
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			c.Write(overCapResponse)
			c.Close()
		}
	}
}

func (l *guardedListener) release() { <-l.slots }

// slotConn gives its slot back once, when closed.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// DefaultMaxConns is the connection cap derived from the process's open-files limit: three
// quarters of it, leaving the rest for Redis and Postgres connections, logs and the like
// (at least 64; 1024 when the limit cannot be read).
func DefaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 1024
	}
	n := lim.Cur / 4 * 3
	if lim.Cur > 1<<20 {
		n = 1 << 20
	}
	return int(max(n, 64))
}

// RaiseOpenFilesLimit raises the soft open-files limit to the hard one (the Go runtime does
// so on Linux at start too; this also reports the result).
func RaiseOpenFilesLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, 0, err
		}
	}
	return lim.Cur, lim.Max, nil
}
