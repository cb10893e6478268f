package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/flashhold/flashhold/internal/rediskeys"
	"github.com/flashhold/flashhold/lua"
)

// Library is one version of the function library loaded in Redis.
type Library struct {
	Name string `json:"name"`
	// Current is true for the library of this engine's own build.
	Current bool `json:"current"`
	// Nodes is how many nodes (masters of a cluster) hold it.
	Nodes int `json:"nodes"`
}

// forEachNode runs f on every node: the one server, or every master of a cluster.
func (e *Engine) forEachNode(ctx context.Context, f func(context.Context, *redis.Client) error) error {
	return rediskeys.ForEachNode(ctx, e.rdb, f)
}

// Libraries lists every version of the flashhold function library that Redis holds, sorted by
// name. Each build loads its own (the name is a hash of its sources) and none deletes another's:
// during a rolling upgrade the old instances still call theirs.
func (e *Engine) Libraries(ctx context.Context) ([]Library, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*e.cfg.RedisTimeout)
	defer cancel()
	var mu sync.Mutex
	nodes := map[string]int{}
	err := e.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		libs, err := node.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: lua.LibraryPrefix + "*"}).Result()
		if err != nil {
			return fmt.Errorf("list function libraries: %w", redisErr(err))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range libs {
			nodes[l.Name]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Library, 0, len(nodes))
	for name, n := range nodes {
		out = append(out, Library{Name: name, Current: name == e.lib, Nodes: n})
	}
	slices.SortFunc(out, func(a, b Library) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteLibraries deletes the named libraries from every node that holds them and returns how
// many deletions it made. It refuses this engine's own library and names that are not
// flashhold libraries; a name no node holds is no error.
func (e *Engine) DeleteLibraries(ctx context.Context, names []string) (int, error) {
	for _, n := range names {
		switch {
		case n == e.lib:
			return 0, invalid("library", "%s is this build's own library", n)
		case !strings.HasPrefix(n, lua.LibraryPrefix):
			return 0, invalid("library", "%q is not a flashhold library", n)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*e.cfg.RedisTimeout)
	defer cancel()
	var mu sync.Mutex
	deleted := 0
	err := e.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		for _, n := range names {
			err := node.FunctionDelete(ctx, n).Err()
			if redis.HasErrorPrefix(err, "Library not found") {
				continue
			}
			if err != nil {
				return fmt.Errorf("delete function library %s: %w", n, redisErr(err))
			}
			mu.Lock()
			deleted++
			mu.Unlock()
		}
		return nil
	})
	return deleted, err
}

// PruneLibraries deletes every version of the library but this build's and those named in
// keep, and returns the names it deleted. Run it once no instance of an older build is left:
// an instance whose library was deleted loads it again on its next call (as after a Redis
// restart), so pruning too early costs a reload, not a failure.
func (e *Engine) PruneLibraries(ctx context.Context, keep []string) ([]string, error) {
	libs, err := e.Libraries(ctx)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, l := range libs {
		if !l.Current && !slices.Contains(keep, l.Name) {
			stale = append(stale, l.Name)
		}
	}
	if len(stale) == 0 {
		return nil, nil
	}
	_, err = e.DeleteLibraries(ctx, stale)
	return stale, err
}
