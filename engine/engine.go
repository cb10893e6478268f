// Package engine is flashhold's Go API over Redis: sharded stock pools, holds that expire,
// and one event per change, all through the Lua scripts in package lua.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/lua"
)

// Engine reserves, commits, releases and adjusts stock. It is safe for concurrent use;
// many engines (processes) may share one Redis.
type Engine struct {
	rdb   redis.UniversalClient
	cfg   Config
	ks    keyspace
	now   func() time.Time
	log   zerolog.Logger
	pools *poolCache
	stats Stats

	// lib is the Functions library of the partition operations (its name and code); fns
	// names each operation's function in it. scripts holds the standalone scripts.
	lib, libCode string
	fns          map[string]string
	scripts      map[string]*redis.Script

	soldOut  sync.Map // PoolKey -> *shortPool: what proves the pool short (see soldout.go)
	batchers *coalescer
	keyspace keyspaceState
	secret   []byte // keys hold ids (see Engine.token); set with the keyspace's settings
}

// Option changes how New builds an Engine.
type Option func(*Engine)

// WithClock makes the engine read time from now (tests drive a fake clock with it).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithLogger sets the engine's logger.
func WithLogger(l zerolog.Logger) Option { return func(e *Engine) { e.log = l } }

// NewRedisClient connects to the Redis (or Redis Cluster) the configuration names.
func NewRedisClient(cfg Config) (redis.UniversalClient, error) {
	if len(cfg.RedisClusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        cfg.RedisClusterAddrs,
			ReadTimeout:  cfg.RedisTimeout,
			WriteTimeout: cfg.RedisTimeout,
			PoolSize:     cfg.RedisPoolSize,
		}), nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("FLASHHOLD_REDIS_URL: %w", err)
	}
	opt.ReadTimeout, opt.WriteTimeout = cfg.RedisTimeout, cfg.RedisTimeout
	if cfg.RedisPoolSize > 0 {
		opt.PoolSize = cfg.RedisPoolSize
	}
	return redis.NewClient(opt), nil
}

// New builds an engine over rdb, loads its functions and scripts on every node and checks
// that the partition count matches the one this keyspace was created with.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config, opts ...Option) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		rdb:     rdb,
		cfg:     cfg,
		ks:      newKeyspace(cfg.Prefix, cfg.Partitions),
		now:     time.Now,
		log:     zerolog.Nop(),
		fns:     make(map[string]string, len(lua.Names)),
		scripts: map[string]*redis.Script{},
	}
	for _, o := range opts {
		o(e)
	}
	e.pools = newPoolCache(e)
	var err error
	if e.lib, e.libCode, err = lua.Library(); err != nil {
		return nil, err
	}
	for _, name := range lua.Names {
		if !lua.Standalone(name) {
			e.fns[name] = lua.Function(e.lib, name)
			continue
		}
		src, err := lua.Script(name)
		if err != nil {
			return nil, err
		}
		e.scripts[name] = redis.NewScript(src)
	}
	if err := e.LoadScripts(ctx); err != nil {
		return nil, err
	}
	if err := e.openSettings(ctx); err != nil {
		return nil, err
	}
	if cfg.Coalesce {
		e.batchers = newCoalescer(e)
	}
	return e, nil
}

// Close stops the engine's background workers. It does not close the Redis client.
func (e *Engine) Close() {
	if e.batchers != nil {
		e.batchers.stop()
	}
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Partitions returns the number of keyspace partitions.
func (e *Engine) Partitions() int { return e.cfg.Partitions }

// Redis returns the client the engine uses.
func (e *Engine) Redis() redis.UniversalClient { return e.rdb }

// LoadScripts loads the library (FUNCTION LOAD REPLACE) and every standalone script on every
// node (every master of a cluster). A node that lost them (a restart without persistence,
// FUNCTION FLUSH, SCRIPT FLUSH) answers "Function not found" or NOSCRIPT without running
// anything; the engine then loads them again and repeats the call.
func (e *Engine) LoadScripts(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*e.cfg.RedisTimeout)
	defer cancel()
	load := func(ctx context.Context, node *redis.Client) error {
		if err := node.FunctionLoadReplace(ctx, e.libCode).Err(); err != nil {
			return fmt.Errorf("load function library %s: %w", e.lib, redisErr(err))
		}
		for name, s := range e.scripts {
			if err := s.Load(ctx, node).Err(); err != nil {
				return fmt.Errorf("load script %s: %w", name, redisErr(err))
			}
		}
		return nil
	}
	return e.forEachNode(ctx, load)
}

// lostFunctions reports a reply that means the node does not have the library (it ran nothing).
func lostFunctions(err error) bool {
	return redis.HasErrorPrefix(err, "Function not found")
}

func (e *Engine) nowMs() int64 { return e.now().UnixMilli() }

// run calls an operation on partition p with its own deadline. args follow the partition
// number and now, which run prepends. A node that lost the library gets it again, once.
func (e *Engine) run(ctx context.Context, name string, p int, now int64, args ...any) (reply, error) {
	out, errs := e.runAll(ctx, now, []opCall{{name: name, p: p, args: [][]any{args}}})
	return out[0], errs[0]
}

// opCall is one call of an operation on one partition, for runAll. args are its arguments
// after the partition number and now, in pieces sent one after another (a batch passes each
// request's own). record, when set, is the key record the operation also takes.
type opCall struct {
	name   string
	p      int
	record string
	args   [][]any
}

func (e *Engine) cmdOf(ctx context.Context, c opCall, now int64) *redis.Cmd {
	if c.record != "" {
		return e.fcallRecord(ctx, c.name, c.p, c.record, now, c.args...)
	}
	return e.fcall(ctx, c.name, c.p, now, c.args...)
}

// runAll sends calls as one pipeline, after the plain commands natives (which the caller
// reads itself), and returns each call's reply or error (out[i] and errs[i] belong to
// calls[i]). Like run, it loads the library again, once, when a node lost it, and repeats the
// calls that node did not run.
func (e *Engine) runAll(ctx context.Context, now int64, calls []opCall, natives ...redis.Cmder) (out []reply, errs []error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	out, errs = make([]reply, len(calls)), make([]error, len(calls))
	cmds := make([]*redis.Cmd, len(calls))
	var waited error // the replicas' acknowledgement of the last round trip's writes
	send := func(todo []int) {
		pipe := e.rdb.Pipeline()
		for _, c := range natives {
			_ = pipe.Process(ctx, c)
		}
		natives = nil
		for _, i := range todo {
			cmds[i] = e.cmdOf(ctx, calls[i], now)
			_ = pipe.Process(ctx, once{cmds[i]})
		}
		var wait *redis.IntCmd
		if e.cfg.RedisWaitReplicas > 0 {
			wait = redis.NewIntCmd(ctx, "wait", e.cfg.RedisWaitReplicas, e.cfg.RedisWaitTimeout.Milliseconds())
			_ = pipe.Process(ctx, wait)
		}
		pipe.Exec(ctx) // each command's own error is read below
		waited = nil
		if wait != nil {
			if n, err := wait.Result(); err != nil || n < int64(e.cfg.RedisWaitReplicas) {
				waited = fmt.Errorf("%w: %d of %d replicas acknowledged the write within %s (%v)",
					errNotReplicated, n, e.cfg.RedisWaitReplicas, e.cfg.RedisWaitTimeout, err)
			}
		}
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	send(all)
	var lost []int
	for i, c := range calls {
		if lostFunctions(cmds[i].Err()) {
			lost = append(lost, i)
			continue
		}
		out[i], errs[i] = e.scriptReply(c.name, c.p, cmds[i])
		if errs[i] == nil && waited != nil {
			errs[i] = waited
		}
	}
	if len(lost) == 0 {
		return out, errs
	}
	if err := e.LoadScripts(ctx); err != nil {
		for _, i := range lost {
			errs[i] = fmt.Errorf("%s on partition %d: %w", calls[i].name, calls[i].p, err)
		}
		return out, errs
	}
	send(lost)
	for _, i := range lost {
		out[i], errs[i] = e.scriptReply(calls[i].name, calls[i].p, cmds[i])
		if errs[i] == nil && waited != nil {
			errs[i] = waited
		}
	}
	return out, errs
}

// fcall builds the FCALL of operation name on partition p in one argument list: the
// partition's keys, p and now, then the pieces of args one after another. A reply for which
// lostFunctions holds means the node lost the library, and the call did nothing.
func (e *Engine) fcall(ctx context.Context, name string, p int, now int64, args ...[]any) *redis.Cmd {
	return e.fcallWith(ctx, name, e.ks.calls[p], now, args...)
}

// fcallRecord is fcall for the operations that also take a key record of partition p (claim,
// settle, hold_end): its name is their ninth key.
func (e *Engine) fcallRecord(ctx context.Context, name string, p int, record string, now int64, args ...[]any) *redis.Cmd {
	head := e.ks.calls[p] // the number of keys, the keys, p
	withRecord := make([]any, 0, len(head)+1)
	withRecord = append(withRecord, len(head)-1) // the partition's keys and the record
	withRecord = append(withRecord, head[1:len(head)-1]...)
	withRecord = append(withRecord, record, head[len(head)-1])
	return e.fcallWith(ctx, name, withRecord, now, args...)
}

func (e *Engine) fcallWith(ctx context.Context, name string, head []any, now int64, args ...[]any) *redis.Cmd {
	n := 2 + len(head) + 1
	for _, a := range args {
		n += len(a)
	}
	full := make([]any, 0, n)
	full = append(full, "fcall", e.fns[name])
	full = append(full, head...)
	full = append(full, now)
	for _, a := range args {
		full = append(full, a...)
	}
	cmd := redis.NewCmd(ctx, full...)
	cmd.SetFirstKeyPos(3) // the first key, for a cluster client's routing
	return cmd
}

// once wraps a command the Redis client must never send twice by itself: go-redis resends
// a command (or a whole pipeline) after a network error, and a script whose reply was lost
// may have run. The engine decides what to do with a lost reply (see ambiguous).
type once struct{ *redis.Cmd }

// NoRetry tells go-redis not to resend the command.
func (once) NoRetry() bool { return true }

// scriptReply reads a script call's reply.
func (e *Engine) scriptReply(name string, p int, cmd *redis.Cmd) (reply, error) {
	v, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("%s on partition %d: %w", name, p, redisErr(err))
	}
	r, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s on partition %d: unexpected reply %T", name, p, v)
	}
	return reply(r), nil
}

// redisErr marks errors that mean Redis could not be reached, did not answer, or cannot serve
// for now (loading its data, failing over, a cluster slot moving): the caller may try again.
func redisErr(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		unavailableReply(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// unavailableReply reports an error reply Redis gives while it cannot serve for a while.
func unavailableReply(err error) bool {
	for _, prefix := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY",
		"NOREPLICAS", "MISCONF", "OOM"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// errNotReplicated: a write ran on the primary, but fewer replicas than
// FLASHHOLD_REDIS_WAIT_REPLICAS acknowledged it in time; a failover now could lose it.
var errNotReplicated = fmt.Errorf("%w: write not acknowledged by the replicas", ErrUnavailable)

// ambiguous reports an error after which a write may or may not have happened (or may
// not survive a failover): the request
// left for Redis, and no reply came back (timeout, connection reset or closed). A refused
// connection, an exhausted pool or an error reply mean the command did not run.
func ambiguous(err error) bool {
	if errors.Is(err, errNotReplicated) {
		return true
	}
	if err == nil || unavailableReply(err) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// reply is a script's answer: a status code, then values.
type reply []any

func (r reply) code() string {
	if len(r) == 0 {
		return ""
	}
	s, _ := r[0].(string)
	return s
}

func (r reply) int(i int) int64 {
	if i >= len(r) {
		return 0
	}
	switch v := r[i].(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func (r reply) str(i int) string {
	if i >= len(r) {
		return ""
	}
	switch v := r[i].(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}

// fencedErr turns a FENCED reply into an error naming the partition and reason.
func fencedErr(p int, r reply) error {
	return fmt.Errorf("%w: partition %d: %s", ErrFenced, p, r.str(1))
}
