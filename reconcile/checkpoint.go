package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/flashhold/flashhold/engine"
)

// shardState is one shard's counters as the events add them up.
type shardState struct {
	Available int64 `json:"a"`
	Held      int64 `json:"h"`
	Committed int64 `json:"c"`
}

// add applies one event of the shard to its counters.
func (st *shardState) add(ev *engine.Event) {
	st.Available = ev.After
	st.Held += ev.HeldDelta
	if ev.Type == engine.EventCommitted {
		st.Committed += ev.Qty
	}
}

// openPart is a hold part the events leave open.
type openPart struct {
	Location string `json:"l"`
	SKU      string `json:"s"`
	Shard    int    `json:"n"`
	Qty      int64  `json:"q"`
	Seq      int64  `json:"seq"`
}

// replayState is a partition's replayed state: counters per shard ("location|sku|shard")
// and open hold parts by part id.
type replayState struct {
	Shards map[string]*shardState `json:"shards"`
	Open   map[string]openPart    `json:"open"`
}

func newReplayState() *replayState {
	return &replayState{Shards: map[string]*shardState{}, Open: map[string]openPart{}}
}

// apply adds one event to the state.
func (s *replayState) apply(ev *engine.Event) {
	f := fmt.Sprintf("%s|%s|%d", ev.Location, ev.SKU, ev.Shard)
	st := s.Shards[f]
	if st == nil {
		st = &shardState{}
		s.Shards[f] = st
	}
	st.add(ev)
	switch ev.Type {
	case engine.EventReserved:
		s.Open[ev.Hold] = openPart{Location: ev.Location, SKU: ev.SKU, Shard: ev.Shard, Qty: ev.Qty, Seq: ev.Seq}
	case engine.EventCommitted:
		delete(s.Open, ev.Hold)
	case engine.EventReleased, engine.EventExpired, engine.EventVoided:
		delete(s.Open, ev.Hold)
	}
}

func (s *replayState) clone() *replayState {
	c := &replayState{Shards: make(map[string]*shardState, len(s.Shards)), Open: maps.Clone(s.Open)}
	for f, st := range s.Shards {
		v := *st
		c.Shards[f] = &v
	}
	return c
}

// checkpoint is where a partition was last found clean: the ledger's event at Seq (with
// Hash) and the state the events up to it add up to.
type checkpoint struct {
	Seq   int64
	Hash  string
	State *replayState
}

// loadCheckpoint returns the partition's checkpoint when it can still be trusted: the ledger
// row at its seq has its hash and Redis has reached it. Otherwise replay starts at the first
// event (an empty checkpoint).
func (r *Reconciler) loadCheckpoint(ctx context.Context, p int, redisSeq int64) (*checkpoint, error) {
	empty := &checkpoint{State: newReplayState()}
	var cp checkpoint
	var raw []byte
	err := r.store.Pool().QueryRow(ctx, `SELECT seq, hash, state FROM checkpoints WHERE partition = $1`, p).Scan(&cp.Seq, &cp.Hash, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return empty, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if raw == nil || cp.Seq > redisSeq {
		return empty, nil
	}
	// The ledger row at the checkpoint must still be the one verified then, content included.
	rows, err := r.store.PartitionEvents(ctx, p, cp.Seq-1, 1)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || rows[0].Seq != cp.Seq || rows[0].Hash != cp.Hash || rows[0].ComputeHash() != cp.Hash {
		return empty, nil
	}
	cp.State = newReplayState()
	if err := json.Unmarshal(raw, cp.State); err != nil {
		return empty, nil
	}
	return &cp, nil
}

func (r *Reconciler) saveCheckpoint(ctx context.Context, p int, run, seq int64, hash string, state *replayState) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return err
	}
	_, err = r.store.Pool().Exec(ctx, `INSERT INTO checkpoints (partition, seq, hash, run_id, state, verified_at)
		VALUES ($1, $2, $3, $4, $5, now())
		ON CONFLICT (partition) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, run_id = EXCLUDED.run_id,
			state = EXCLUDED.state, verified_at = EXCLUDED.verified_at`, p, seq, hash, run, raw)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}
