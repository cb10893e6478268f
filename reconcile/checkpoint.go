package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flashhold/flashhold/engine"
)

// checkpoint is where a partition was last found clean: the ledger's event at Seq (with
// Hash) and the state the events up to it add up to.
type checkpoint struct {
	Seq   int64
	Hash  string
	State *engine.Replay
}

// newState is the state a replay starts from, or a checkpoint is read into: counters and
// open parts, no history.
func newState() *engine.Replay { return engine.NewReplay(engine.ReplayOptions{}) }

// loadCheckpoint returns the partition's checkpoint when it can still be trusted: the ledger
// row at its seq has its hash and Redis has reached it. Otherwise replay starts at the first
// event (an empty checkpoint).
func (r *Reconciler) loadCheckpoint(ctx context.Context, p int, redisSeq int64) (*checkpoint, error) {
	empty := &checkpoint{State: newState()}
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
	// A state stored in another shape (an earlier version) is not trusted: replay from the start.
	cp.State = newState()
	if err := json.Unmarshal(raw, cp.State); err != nil {
		return empty, nil
	}
	return &cp, nil
}

func (r *Reconciler) saveCheckpoint(ctx context.Context, p int, run, seq int64, hash string, state *engine.Replay) error {
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
