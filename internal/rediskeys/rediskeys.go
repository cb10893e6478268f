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
		iter := node.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := node.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	})
}
