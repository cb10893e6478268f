// Package rediskeys works on every node of a Redis deployment: ForEachNode runs a function
// on the one server or on every master of a cluster, and DeletePrefix removes a key prefix
// with it (what the tests and the bench use to leave a shared server as they found it).
package rediskeys

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ForEachNode runs f on the one server of c, or on every master of a cluster (concurrently,
// as ClusterClient.ForEachMaster does).
func ForEachNode(ctx context.Context, c redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, f)
	case *redis.Client:
		return f(ctx, c)
	}
	return fmt.Errorf("unsupported Redis client %T", c)
}

// DeletePrefix deletes every key that starts with prefix+":".
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	return ForEachNode(ctx, c, func(ctx context.Context, node *redis.Client) error {
		// A thousand UNLINKs a round trip (one key each: on a cluster node keys of different
		// slots cannot share one): a run that left a million keys is gone in seconds.
		iter := node.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		pipe := node.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val())
			if pipe.Len() == 1000 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if pipe.Len() > 0 {
			_, err := pipe.Exec(ctx)
			return err
		}
		return nil
	})
}
