// Package rediskeys removes a key prefix from Redis, on every master of a cluster: what the
// tests and the bench use to leave a shared server as they found it.
package rediskeys

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DeletePrefix deletes every key that starts with prefix+":".
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := node.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, del)
	}
	if node, ok := c.(*redis.Client); ok {
		return del(ctx, node)
	}
	return fmt.Errorf("unsupported client %T", c)
}
