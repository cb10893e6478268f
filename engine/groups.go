package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// GroupRead asks ReadGroup for up to Count entries per partition, Budget in all.
type GroupRead struct {
	Group, Consumer string
	// Start is where a group created now begins: "0" (the whole stream) or "$" (new entries).
	Start string
	// ClaimIdle: entries another consumer has had pending this long are claimed; 0 claims none.
	ClaimIdle time.Duration
	Count     int
	Budget    int
	// SkipOwn leaves out the consumer's own pending entries (they are being processed).
	SkipOwn bool
}

// GroupEntries are the entries read from one partition's stream.
type GroupEntries struct {
	Partition int
	Messages  []redis.XMessage
	// Delivered: the entries were delivered before (this consumer's pending ones, or claimed),
	// and more such may remain than were read.
	Delivered bool
}

// ReadGroup reads the partitions' streams as a consumer group member, in at most three
// pipelined rounds (a cluster client sends each round to each node once): the consumer's own
// entries still pending (delivered before, not acknowledged), then entries claimed from other
// consumers idle longer than ClaimIdle, then entries never delivered. Groups are created on
// first use.
func (e *Engine) ReadGroup(ctx context.Context, r GroupRead, parts []int) ([]GroupEntries, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	budget := r.Budget
	todo := parts
	var out []GroupEntries
	for round := 0; round < 3 && len(todo) > 0 && budget > 0; round++ {
		if (round == 1 && r.ClaimIdle <= 0) || (round == 0 && r.SkipOwn) {
			continue
		}
		pipe := e.rdb.Pipeline()
		reads := make([]*redis.XStreamSliceCmd, len(todo))
		claims := make([]*redis.XAutoClaimCmd, len(todo))
		for i, p := range todo {
			n := int64(min(r.Count, budget))
			key := e.ks.logKey(p)
			switch round {
			case 0, 2:
				id := "0"
				if round == 2 {
					id = ">"
				}
				reads[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: r.Group, Consumer: r.Consumer,
					Streams: []string{key, id}, Count: n, Block: -1})
			case 1:
				claims[i] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: key, Group: r.Group,
					Consumer: r.Consumer, MinIdle: r.ClaimIdle, Start: "0-0", Count: n})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			if !strings.Contains(err.Error(), "NOGROUP") {
				return nil, fmt.Errorf("read streams: %w", redisErr(err))
			}
			if err := e.createGroups(ctx, r, todo); err != nil {
				return nil, err
			}
			round-- // read again now that the groups exist
			continue
		}
		var next []int
		for i, p := range todo {
			var msgs []redis.XMessage
			if reads[i] != nil {
				if s, err := reads[i].Result(); err == nil && len(s) > 0 {
					msgs = s[0].Messages
				}
			} else {
				msgs, _, _ = claims[i].Result()
			}
			if len(msgs) == 0 {
				next = append(next, p)
				continue
			}
			budget -= len(msgs)
			out = append(out, GroupEntries{Partition: p, Messages: msgs, Delivered: round < 2})
		}
		todo = next
	}
	return out, nil
}

func (e *Engine) createGroups(ctx context.Context, r GroupRead, parts []int) error {
	for _, p := range parts {
		err := e.rdb.XGroupCreateMkStream(ctx, e.ks.logKey(p), r.Group, r.Start).Err()
		if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("create consumer group %s on partition %d: %w", r.Group, p, redisErr(err))
		}
	}
	return nil
}

// AckGroup acknowledges entries of several partitions in one pipeline.
func (e *Engine) AckGroup(ctx context.Context, group string, entries []GroupEntries) error {
	if len(entries) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, en := range entries {
		ids := make([]string, len(en.Messages))
		for i, m := range en.Messages {
			ids[i] = m.ID
		}
		pipe.XAck(ctx, e.ks.logKey(en.Partition), group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ack: %w", redisErr(err))
	}
	return nil
}
