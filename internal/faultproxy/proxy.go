// Package faultproxy is a TCP proxy for fault tests: it sits between a client and a server
// on loopback and, on command, loses what a real network loses. For Redis it understands the
// protocol (RESP2/RESP3) and aims at chosen commands: it can let a command run and lose its
// reply, delay a reply past the client's deadline, reset the connection before a command is
// sent, or swallow everything from a command on. For any TCP service (Postgres) it can cut
// every connection and refuse new ones for a while.
package faultproxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Action is what the proxy does to a request a rule matches.
type Action int

const (
	// DropReply forwards the request (the server runs it) and loses its reply: the client's
	// connection is closed when the reply arrives, so the client sees EOF for a command that ran.
	DropReply Action = iota + 1
	// Delay holds the reply for Rule.Delay before passing it on (and every reply after it on
	// the connection, as a slow network would).
	Delay
	// Reset closes the connection before the request reaches the server: it never runs.
	Reset
	// Blackhole forwards nothing from the request on and answers nothing; the connection
	// stays open until the client gives up on it.
	Blackhole
	// Stall holds the request for Rule.Delay before sending it on (and every request after it
	// on the connection): it runs late, after what other connections send meanwhile.
	Stall
)

// Rule picks requests and says what to do with them.
type Rule struct {
	// Match picks requests by the name commandOf gives them ("SET", "FCALL <function>").
	Match func(command string) bool
	// Args, when set, must also hold for the request's arguments (after the command name).
	Args func(args []string) bool
	Action
	Delay time.Duration
	// Times is how many matching requests the rule acts on (0: every one).
	Times int
	// OnHit, when set, is called (on the proxy's goroutine) each time the rule acts: for
	// DropReply once the command has run and its reply is lost, for the others as the request
	// arrives. A test can cut the network at that very moment.
	OnHit func()
	hits  atomic.Int64
}

// Hits is how many requests the rule has acted on.
func (r *Rule) Hits() int64 { return r.hits.Load() }

// Contains matches commands whose name contains s (case-sensitive; commands are upper case,
// function names lower case).
func Contains(s string) func(string) bool {
	return func(c string) bool { return strings.Contains(c, s) }
}

// Suffix matches commands whose name ends with s: Suffix("_reserve") is the reserve function
// of any library version.
func Suffix(s string) func(string) bool {
	return func(c string) bool { return strings.HasSuffix(c, s) }
}

// Proxy forwards connections from its own loopback address to a target.
type Proxy struct {
	target string
	ln     net.Listener
	resp   bool

	mu    sync.Mutex
	rules []*Rule
	conns map[net.Conn]struct{}
	cut   bool
	done  bool
	// rulesFrom, when set, is the proxy whose rules this one obeys (see Net).
	rulesFrom *Proxy
}

// StartRESP starts a proxy to a Redis server that understands its protocol and obeys rules.
func StartRESP(target string) (*Proxy, error) { return start(target, true) }

// StartTCP starts a plain TCP proxy (any protocol): only Cut and Restore apply.
func StartTCP(target string) (*Proxy, error) { return start(target, false) }

func start(target string, resp bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, resp: resp, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (host:port) for clients to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Add installs a rule and returns it (its Hits count what it did).
func (p *Proxy) Add(r *Rule) *Rule {
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// Clear removes every rule.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.closeAll()
	p.mu.Unlock()
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Drop closes every open connection (the server went away for a moment) without refusing
// new ones.
func (p *Proxy) Drop() {
	p.mu.Lock()
	p.closeAll()
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.done = true
	p.closeAll()
	p.mu.Unlock()
	p.ln.Close()
}

func (p *Proxy) closeAll() {
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// track registers conns as open; false when the proxy is cut or closed (they are closed).
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.done {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

// match returns the first rule with turns left that matches the request, and takes a turn.
func (p *Proxy) match(frame []byte) *Rule {
	if p.rulesFrom != nil {
		return p.rulesFrom.match(frame)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rules) == 0 {
		return nil
	}
	command := commandOf(frame)
	var args []string
	for _, r := range p.rules {
		if r.Times > 0 && r.hits.Load() >= int64(r.Times) {
			continue
		}
		if !r.Match(command) {
			continue
		}
		if r.Args != nil {
			if args == nil {
				if all := requestArgs(frame, 1<<10); len(all) > 0 {
					args = all[1:]
				}
			}
			if !r.Args(args) {
				continue
			}
		}
		r.hits.Add(1)
		return r
	}
	return nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(server) {
		p.untrack(client)
		return
	}
	defer p.untrack(client, server)
	if !p.resp {
		go func() { io.Copy(server, client); server.Close() }()
		io.Copy(client, server)
		return
	}
	// One action per forwarded request, in order: replies come back in the same order.
	pending := make(chan *Rule, 1<<16)
	go p.requests(client, server, pending)
	p.replies(client, server, pending)
}

// requests forwards the client's requests, applying rules, and queues each forwarded
// request's rule (nil: none) for the reply side.
func (p *Proxy) requests(client, server net.Conn, pending chan<- *Rule) {
	defer close(pending)
	r := bufio.NewReaderSize(client, 64<<10)
	w := bufio.NewWriterSize(server, 64<<10)
	for {
		frame, err := readFrame(r)
		if err != nil {
			server.Close()
			return
		}
		rule := p.match(frame)
		if rule != nil && rule.OnHit != nil && rule.Action != DropReply {
			rule.OnHit()
		}
		if rule != nil {
			switch rule.Action {
			case Stall:
				w.Flush()
				time.Sleep(rule.Delay)
			case Reset:
				w.Flush()
				client.Close()
				server.Close()
				return
			case Blackhole:
				w.Flush()
				io.Copy(io.Discard, client)
				server.Close()
				return
			}
		}
		pending <- rule
		if _, err := w.Write(frame); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// replies passes the server's replies back, each as its request's rule says.
func (p *Proxy) replies(client, server net.Conn, pending <-chan *Rule) {
	r := bufio.NewReaderSize(server, 64<<10)
	w := bufio.NewWriterSize(client, 64<<10)
	for {
		frame, err := readFrame(r)
		if err != nil {
			w.Flush()
			return
		}
		rule, ok := <-pending
		if !ok {
			return
		}
		if rule != nil {
			switch rule.Action {
			case DropReply:
				w.Flush()
				if rule.OnHit != nil {
					rule.OnHit()
				}
				return // the deferred untrack closes both sides
			case Delay:
				w.Flush()
				time.Sleep(rule.Delay)
			}
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// Net proxies every address a client dials, each through its own Proxy sharing one set of
// rules: a Redis Cluster client dials each node through its own proxy (Dialer), and a rule
// acts on whichever node the command goes to.
type Net struct {
	mu      sync.Mutex
	proxies map[string]*Proxy
	shared  *Proxy // holds the rules; never listens
}

// NewNet returns a Net with no proxies yet.
func NewNet() *Net {
	return &Net{proxies: map[string]*Proxy{}, shared: &Proxy{conns: map[net.Conn]struct{}{}}}
}

// Dial connects to addr through its proxy, starting the proxy on first use. It fits
// redis.Options.Dialer and redis.ClusterOptions.Dialer.
func (n *Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	p, ok := n.proxies[addr]
	if !ok {
		var err error
		if p, err = StartRESP(addr); err != nil {
			n.mu.Unlock()
			return nil, err
		}
		p.rulesFrom = n.shared
		n.proxies[addr] = p
	}
	n.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

// Add installs a rule on every proxy of the net.
func (n *Net) Add(r *Rule) *Rule { return n.shared.Add(r) }

// Clear removes every rule.
func (n *Net) Clear() { n.shared.Clear() }

// Drop closes every open connection of every proxy.
func (n *Net) Drop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies {
		p.Drop()
	}
}

// Cut closes every connection and refuses new ones until Restore.
func (n *Net) Cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies {
		p.Cut()
	}
}

// Restore accepts connections again after Cut.
func (n *Net) Restore() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies {
		p.Restore()
	}
}

// Close stops every proxy.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies {
		p.Close()
	}
}
