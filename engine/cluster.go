package engine

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/redis/go-redis/v9"
)

// followFailovers makes a cluster client ask the cluster where its slots are as soon as a
// command finds a node gone, not serving, or no longer owning a slot. The engine's writes are
// never resent by the client (see once), and resending is what would otherwise make go-redis
// reload; without this, a client kept sending to a dead master until its periodic reload
// (every minute) after the cluster had promoted the replica (TestClusterFailoverServes).
// Reloads are asynchronous and coalesced by go-redis.
type followFailovers struct{ cc *redis.ClusterClient }

func (f followFailovers) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f followFailovers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if topologyChanged(err) {
			f.cc.ReloadState(ctx)
		}
		return err
	}
}

func (f followFailovers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if topologyChanged(c.Err()) {
				f.cc.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// topologyChanged reports an error that may mean the cluster moved a slot or failed a node
// over: the node could not be reached, or answered that it does not serve the slot now.
func topologyChanged(err error) bool {
	if err == nil || err == redis.Nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller's deadline, not the cluster: no reason to ask for the slot map
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, prefix := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "MASTERDOWN", "LOADING"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
