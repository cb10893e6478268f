package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A keyspace's settings (fh:settings) hold its partition count, the secret hold ids are
// keyed with (unless FLASHHOLD_ID_SECRET sets one) and its epoch: a random name the first
// engine gives the keyspace. A Redis that restarted without its data (no persistence, a
// replica promoted empty) has no epoch, or a new one once an engine started on it: every
// engine checks its epoch (CheckKeyspace, on every answer that finds a pool or shard
// missing, and every second from serve's guard) and, having seen it change, refuses every
// write with ErrKeyspaceLost until the keyspace is restored from the ledger (reconcile
// --repair, which writes the settings back).

// ErrKeyspaceLost: Redis lost its data; nothing is served until it is restored.
var ErrKeyspaceLost = fmt.Errorf("%w: Redis lost its data; it is refused until restored from the ledger (flashhold reconcile --repair)", ErrUnavailable)

// LostFenceReason is the reason of the fence raised on every partition of a keyspace whose
// Redis lost its data.
const LostFenceReason = "redis lost its data"

// Settings are a keyspace's settings as kept in Redis.
type Settings struct {
	Epoch      string
	Partitions int
	// IDSecret is the secret kept in Redis ("" when FLASHHOLD_ID_SECRET is set).
	IDSecret string
}

// keyspaceState is what the engine knows of its keyspace.
type keyspaceState struct {
	mu    sync.RWMutex
	epoch string
	lost  bool
}

// openSettings records the keyspace's settings on first use and loads them: the partition
// count (refused if it differs), the epoch and the id secret.
func (e *Engine) openSettings(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	key := e.ks.settingsKey()
	pipe := e.rdb.Pipeline()
	pipe.HSetNX(ctx, key, "partitions", e.cfg.Partitions)
	pipe.HSetNX(ctx, key, "epoch", randomHex(8))
	if e.cfg.IDSecret == "" {
		pipe.HSetNX(ctx, key, "id_secret", randomHex(32))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record settings: %w", redisErr(err))
	}
	s, err := e.readSettings(ctx)
	if err != nil {
		return err
	}
	if s.Partitions != e.cfg.Partitions {
		return fmt.Errorf("keyspace %q was created with %d partitions; FLASHHOLD_PARTITIONS is %d",
			e.cfg.Prefix, s.Partitions, e.cfg.Partitions)
	}
	e.adopt(s)
	return nil
}

// adopt makes s the engine's settings.
func (e *Engine) adopt(s Settings) {
	e.keyspace.mu.Lock()
	defer e.keyspace.mu.Unlock()
	e.keyspace.epoch, e.keyspace.lost = s.Epoch, false
	if e.cfg.IDSecret != "" {
		e.secret = []byte(e.cfg.IDSecret)
	} else {
		e.secret = []byte(s.IDSecret)
	}
}

func (e *Engine) readSettings(ctx context.Context) (Settings, error) {
	m, err := e.rdb.HGetAll(ctx, e.ks.settingsKey()).Result()
	if err != nil {
		return Settings{}, fmt.Errorf("read settings: %w", redisErr(err))
	}
	n, _ := strconv.Atoi(m["partitions"])
	return Settings{Epoch: m["epoch"], Partitions: n, IDSecret: m["id_secret"]}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Epoch is the keyspace epoch the engine works with.
func (e *Engine) Epoch() string {
	e.keyspace.mu.RLock()
	defer e.keyspace.mu.RUnlock()
	return e.keyspace.epoch
}

// KeyspaceSettings reads the settings Redis holds now.
func (e *Engine) KeyspaceSettings(ctx context.Context) (Settings, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	return e.readSettings(ctx)
}

// CheckKeyspace reads Redis's epoch and returns ErrKeyspaceLost unless it is the engine's.
// Having found it lost once, the engine stays so (and refuses pools it does not find, and
// every write behind the fences RaiseLostFences puts up) until Adopt.
func (e *Engine) CheckKeyspace(ctx context.Context) error {
	e.keyspace.mu.RLock()
	lost, want := e.keyspace.lost, e.keyspace.epoch
	e.keyspace.mu.RUnlock()
	if lost {
		return ErrKeyspaceLost
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	got, err := e.rdb.HGet(ctx, e.ks.settingsKey(), "epoch").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read the keyspace epoch: %w", redisErr(err))
	}
	if got == want {
		return nil
	}
	e.keyspace.mu.Lock()
	e.keyspace.lost = true
	e.keyspace.mu.Unlock()
	e.log.Error().Str("epoch", want).Str("redis_epoch", got).Msg("Redis lost its data: refusing writes until restored from the ledger")
	return ErrKeyspaceLost
}

// MarkLost makes the engine refuse as CheckKeyspace does after finding the keyspace lost
// (a guard that knows better than the engine's own epoch tells it so), until Adopt.
func (e *Engine) MarkLost() {
	e.keyspace.mu.Lock()
	e.keyspace.lost = true
	e.keyspace.mu.Unlock()
}

// Adopt makes the engine work with the settings Redis holds now (after the keyspace was
// restored, or to accept a keyspace started anew).
func (e *Engine) Adopt(ctx context.Context) error {
	s, err := e.KeyspaceSettings(ctx)
	if err != nil {
		return err
	}
	if s.Epoch == "" || s.Partitions != e.cfg.Partitions {
		return fmt.Errorf("keyspace %q has no settings to adopt", e.cfg.Prefix)
	}
	e.adopt(s)
	e.pools.clear()
	e.soldOut.Clear()
	return nil
}

// RestoreSettings writes a keyspace's settings into Redis (from the ledger's copy), replacing
// whatever a fresh start put there.
func (e *Engine) RestoreSettings(ctx context.Context, s Settings) error {
	if s.Epoch == "" || s.Partitions != e.cfg.Partitions {
		return fmt.Errorf("settings to restore: epoch %q, %d partitions; want an epoch and %d partitions", s.Epoch, s.Partitions, e.cfg.Partitions)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	fields := []any{"epoch", s.Epoch, "partitions", s.Partitions}
	if s.IDSecret != "" {
		fields = append(fields, "id_secret", s.IDSecret)
	}
	if err := e.rdb.HSet(ctx, e.ks.settingsKey(), fields...).Err(); err != nil {
		return fmt.Errorf("restore settings: %w", redisErr(err))
	}
	return nil
}

// RaiseLostFences fences every partition for LostFenceReason (those fenced already keep
// their reason): nothing is written until each is rebuilt from the ledger.
func (e *Engine) RaiseLostFences(ctx context.Context) error {
	calls := make([]opCall, e.cfg.Partitions)
	for p := range calls {
		calls[p] = opCall{name: "fence", p: p, args: [][]any{{"1", LostFenceReason + " at " + time.UnixMilli(e.nowMs()).UTC().Format(time.RFC3339)}}}
	}
	// fence raises unconditionally; keep a partition's earlier reason (a fork's) by raising
	// only where none is set.
	fenced, err := e.fences(ctx)
	if err != nil {
		return err
	}
	var todo []opCall
	for p, reason := range fenced {
		if reason == "" {
			todo = append(todo, calls[p])
		}
	}
	_, errs := e.runAll(ctx, e.nowMs(), todo)
	return firstErr(errs)
}

// fences reads every partition's fence reason ("" when not fenced).
func (e *Engine) fences(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, e.cfg.Partitions)
	for p := range cmds {
		cmds[p] = pipe.HGet(ctx, e.ks.partition(p)[5], "fence")
	}
	pipe.Exec(ctx)
	out := make([]string, len(cmds))
	for p, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read fences: %w", redisErr(err))
		}
		out[p] = c.Val()
	}
	return out, nil
}

// IsLostFence reports whether a fence reason is RaiseLostFences's.
func IsLostFence(reason string) bool { return strings.HasPrefix(reason, LostFenceReason) }

// noShard is the error for a pool or shard Redis does not have: ErrKeyspaceLost when Redis
// lost its data, else ErrUnknownPool.
func (e *Engine) noShard(ctx context.Context, what string) error {
	if err := e.CheckKeyspace(ctx); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", ErrUnknownPool, what)
}

// RestorePools writes pool configurations back (from the ledger's copy), with the sets that
// background work and the vendor API scan. It creates no shard: the ledger's rebuild writes
// their counters, and CreatePool afterwards makes any shard the ledger never wrote.
func (e *Engine) RestorePools(ctx context.Context, pools []PoolConfig) error {
	for _, c := range pools {
		if err := e.validatePoolConfig(c); err != nil {
			return fmt.Errorf("pool %s: %w", c.Key(), err)
		}
		raw, _ := json.Marshal(c)
		ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
		err := e.rdb.HSet(ctx, e.ks.poolsKey(), c.Key().String(), raw).Err()
		if err == nil {
			err = e.indexPool(ctx, c)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("restore pool %s: %w", c.Key(), redisErr(err))
		}
	}
	e.pools.clear()
	return nil
}

// Answer is the answer of a reservation that took several calls, as its key record keeps it.
type Answer struct {
	HoldID    string
	ExpiresAt int64 // unix ms
	Qtys      []int64
	// Backordered says which parts were placed backordered.
	Backordered []bool
	Keep        time.Duration // how long it is still kept
}

// RestoreAnswers writes key records back (from the ledger's RESERVED events), so that a
// request sent again gets the hold it was given, not a second one. The ledger does not keep
// requests' fingerprints: a restored answer is given to any request with the same key. A
// record Redis holds already is left alone.
func (e *Engine) RestoreAnswers(ctx context.Context, answers []Answer) error {
	pipe := e.rdb.Pipeline()
	ctx, cancel := context.WithTimeout(ctx, 5*e.cfg.RedisTimeout)
	defer cancel()
	for _, a := range answers {
		hk, refs, err := parseHoldID(a.HoldID, e.cfg.Partitions)
		if err != nil || len(refs) != len(a.Qtys) || a.Keep <= 0 {
			continue
		}
		kp := e.keyPartition(hk.token)
		pipe.SetNX(ctx, e.ks.recordKey(kp, hk.token), anyRequest+"|A|"+encodeAnswer(a.HoldID, a.ExpiresAt, a.Qtys, a.Backordered), a.Keep)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("restore answers: %w", redisErr(err))
	}
	return nil
}

// anyRequest is the fingerprint of a restored key record: any request matches it.
const anyRequest = "*"

// KeepsNothing reports whether the Redis the engine talks to keeps nothing on disk (no
// append-only file and no snapshots): a restart then loses every hold, and the service
// refuses until the keyspace is restored from the ledger. ok is false when Redis does not
// say (CONFIG refused, a cluster).
func (e *Engine) KeepsNothing(ctx context.Context) (nothing, ok bool) {
	c, isClient := e.rdb.(*redis.Client)
	if !isClient {
		return false, false
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	aof, err1 := c.ConfigGet(ctx, "appendonly").Result()
	save, err2 := c.ConfigGet(ctx, "save").Result()
	if err1 != nil || err2 != nil {
		return false, false
	}
	return aof["appendonly"] == "no" && strings.TrimSpace(save["save"]) == "", true
}

// Told reports whether the request that placed part was answered with its hold: a part the
// fast path placed is its request's answer (a retry is given it); one an attempt of the slow
// path placed is when the request's key record holds that attempt's answer.
func (e *Engine) Told(ctx context.Context, part string) (bool, error) {
	token, attempt, ok := PartOf(part)
	if !ok {
		return false, nil
	}
	if attempt == fastAttempt {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	v, err := e.rdb.Get(ctx, e.ks.recordKey(e.keyPartition(token), token)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read key record: %w", redisErr(err))
	}
	f := strings.SplitN(v, "|", 3) // "<fp>|A|<answer>": see claim.lua
	return len(f) == 3 && f[1] == "A" && strings.HasPrefix(f[2], token+"."+attempt+"_"), nil
}
