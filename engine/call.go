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
)

// runParts calls operation name once per part of a hold, each call with the part's id and
// then args, and returns each part's reply or error. A one-part hold's call goes through
// call; the calls of several parts go out together in one pipeline.
func (e *Engine) runParts(ctx context.Context, name string, h *holdRef, args ...any) ([]reply, []error) {
	if len(h.refs) == 1 {
		r, err := e.call(ctx, name, h.refs[0].Partition, "", append([]any{h.key.part(h.refs[0])}, args...)...)
		return []reply{r}, []error{err}
	}
	calls := make([]opCall, len(h.refs))
	for i, ref := range h.refs {
		calls[i] = opCall{name: name, p: ref.Partition, args: [][]any{{h.key.part(ref)}, args}}
	}
	return e.runAll(ctx, e.nowMs(), calls)
}

// call runs one operation on partition p (with key record record, if not empty): through the
// coalescer when it is on, where it shares a round trip with other requests, else on its own.
func (e *Engine) call(ctx context.Context, name string, p int, record string, args ...any) (reply, error) {
	if e.batchers != nil {
		return e.batchers.call(ctx, name, p, record, args)
	}
	if record != "" {
		out, errs := e.runAll(ctx, e.nowMs(), []opCall{{name: name, p: p, record: record, args: [][]any{args}}})
		return out[0], errs[0]
	}
	return e.run(ctx, name, p, e.nowMs(), args...)
}

// firstErr is the first error of errs, or nil.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitTurn waits before asking again about a request or hold another call holds: a little
// longer each time, until ctx ends or, in all since started, patience (by then the other
// call's lease has lapsed and a retry takes over). It reports whether to ask again.
func waitTurn(ctx context.Context, started time.Time, patience time.Duration, wait *time.Duration) bool {
	if time.Since(started)+*wait > patience {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*wait):
	}
	*wait = min(2**wait, 100*time.Millisecond)
	return true
}

// run calls an operation on partition p with its own deadline. args follow the partition
// number and now, which run prepends. A node that lost the library gets it again, once.
func (e *Engine) run(ctx context.Context, name string, p int, now int64, args ...any) (reply, error) {
	out, errs := e.runAll(ctx, now, []opCall{{name: name, p: p, args: [][]any{args}}})
	return out[0], errs[0]
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
	waited := make([]error, len(calls)) // the replicas' acknowledgement of each call's write
	send := func(todo []int) {
		for _, i := range todo {
			cmds[i] = e.cmdOf(ctx, calls[i], now)
		}
		e.roundTrip(ctx, natives, cmds, todo, waited)
		natives = nil
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
		if errs[i] == nil && waited[i] != nil {
			errs[i] = waited[i]
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
		if errs[i] == nil && waited[i] != nil {
			errs[i] = waited[i]
		}
	}
	return out, errs
}

// roundTrip sends natives and the commands cmds[i], i in todo, in one round trip. With
// FLASHHOLD_REDIS_WAIT_REPLICAS set, a WAIT follows them on the same connection, and
// waited[i] is set to errNotReplicated when too few replicas acknowledged. On a cluster, WAIT
// counts only the writes of its own connection, so each node then gets a pipeline of its own
// (the commands of its slots, then WAIT), the nodes in parallel.
func (e *Engine) roundTrip(ctx context.Context, natives []redis.Cmder, cmds []*redis.Cmd, todo []int, waited []error) {
	cc, cluster := e.rdb.(*redis.ClusterClient)
	if e.cfg.RedisWaitReplicas == 0 || !cluster {
		err := e.pipeline(ctx, e.rdb, natives, cmds, todo)
		for _, i := range todo {
			waited[i] = err
		}
		return
	}
	type group struct {
		natives []redis.Cmder
		todo    []int
	}
	nodes := map[*redis.Client]*group{}
	at := func(key string, fail func(error)) *group {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			fail(fmt.Errorf("%w: no node for %s: %w", ErrUnavailable, key, err))
			return nil
		}
		g := nodes[node]
		if g == nil {
			g = &group{}
			nodes[node] = g
		}
		return g
	}
	for _, c := range natives { // single-key commands: the key is their first argument
		if g := at(fmt.Sprint(c.Args()[1]), c.SetErr); g != nil {
			g.natives = append(g.natives, c)
		}
	}
	for _, i := range todo {
		if g := at(fmt.Sprint(cmds[i].Args()[3]), cmds[i].SetErr); g != nil {
			g.todo = append(g.todo, i)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var nativesWaited error
	for node, g := range nodes {
		wg.Go(func() {
			err := e.pipeline(ctx, node, g.natives, cmds, g.todo)
			for _, i := range g.todo {
				waited[i] = err
			}
			if err != nil && len(g.natives) > 0 {
				mu.Lock()
				nativesWaited = err
				mu.Unlock()
			}
			if movedOrDown(g.natives, cmds, g.todo) {
				cc.ReloadState(ctx) // a node failed or gave its slots away: ask the cluster again
			}
		})
	}
	wg.Wait()
	if nativesWaited != nil { // as on one node: the round trip's writes stand together
		for _, i := range todo {
			waited[i] = nativesWaited
		}
	}
}

// pipeline sends natives and cmds[i], i in todo, through c in one pipeline, with a WAIT after
// them when replicas must acknowledge, and returns errNotReplicated when too few did.
func (e *Engine) pipeline(ctx context.Context, c redis.Cmdable, natives []redis.Cmder, cmds []*redis.Cmd, todo []int) error {
	pipe := c.Pipeline()
	for _, n := range natives {
		_ = pipe.Process(ctx, n)
	}
	for _, i := range todo {
		_ = pipe.Process(ctx, once{cmds[i]})
	}
	var wait *redis.IntCmd
	if e.cfg.RedisWaitReplicas > 0 {
		wait = redis.NewIntCmd(ctx, "wait", e.cfg.RedisWaitReplicas, e.cfg.RedisWaitTimeout.Milliseconds())
		_ = pipe.Process(ctx, wait)
	}
	pipe.Exec(ctx) // each command's own error is read by its caller
	if wait != nil {
		if n, err := wait.Result(); err != nil || n < int64(e.cfg.RedisWaitReplicas) {
			return fmt.Errorf("%w: %d of %d replicas acknowledged the write within %s (%v)",
				errNotReplicated, n, e.cfg.RedisWaitReplicas, e.cfg.RedisWaitTimeout, err)
		}
	}
	return nil
}

// movedOrDown reports whether a command sent straight to a cluster node found it gone or no
// longer serving the slot (topologyChanged, the cluster client hook's rule).
func movedOrDown(natives []redis.Cmder, cmds []*redis.Cmd, todo []int) bool {
	for _, n := range natives {
		if topologyChanged(n.Err()) {
			return true
		}
	}
	for _, i := range todo {
		if topologyChanged(cmds[i].Err()) {
			return true
		}
	}
	return false
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
		"NOREPLICAS", "MISCONF", "OOM", "MOVED", "ASK"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

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

// opCall is one call of an operation on one partition, for runAll. args are its arguments
// after the partition number and now, in pieces sent one after another (a batch passes each
// request's own). record, when set, is the key record the operation also takes.
type opCall struct {
	name   string
	p      int
	record string
	args   [][]any
}

// reply is a script's answer: a status code, then values.
type reply []any

// errNotReplicated: a write ran on the primary, but fewer replicas than
// FLASHHOLD_REDIS_WAIT_REPLICAS acknowledged it in time; a failover now could lose it.
var errNotReplicated = fmt.Errorf("%w: write not acknowledged by the replicas", ErrUnavailable)
