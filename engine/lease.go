package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease takes or renews the lease called name for owner, for ttl. It returns false when
// another owner holds it. Background work (sweeping a partition, rebalancing) takes a lease so
// two processes do not do the same work at once; a lease of a process that died lapses.
func (e *Engine) Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	return e.lease(ctx, name, owner, ttl, "1")
}

// ReleaseLease gives up a lease the owner holds.
func (e *Engine) ReleaseLease(ctx context.Context, name, owner string) error {
	_, err := e.lease(ctx, name, owner, time.Millisecond, "0")
	return err
}

func (e *Engine) lease(ctx context.Context, name, owner string, ttl time.Duration, take string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	n, err := e.scripts["lease"].Run(ctx, e.rdb, []string{e.ks.prefix + ":lease:" + name}, owner, ttl.Milliseconds(), take).Int()
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, redisErr(err))
	}
	return n == 1, nil
}

// Leases takes or renews many leases in one pipeline; ok[i] says whether owner holds names[i].
func (e *Engine) Leases(ctx context.Context, names []string, owner string, ttl time.Duration) ([]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	s := e.scripts["lease"]
	run := func() ([]*redis.Cmd, error) {
		pipe := e.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(names))
		for i, n := range names {
			cmds[i] = s.EvalSha(ctx, pipe, []string{e.ks.prefix + ":lease:" + n}, owner, ttl.Milliseconds(), "1")
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A node lost its script cache; pipelines do not fall back to EVAL by themselves.
		if err := e.LoadScripts(ctx); err != nil {
			return nil, err
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, fmt.Errorf("leases: %w", redisErr(err))
	}
	ok := make([]bool, len(cmds))
	for i, c := range cmds {
		n, _ := c.Int()
		ok[i] = n == 1
	}
	return ok, nil
}
