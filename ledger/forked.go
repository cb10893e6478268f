package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flashhold/flashhold/engine"
)

// Outcomes of a forked event.
const (
	ForkPending  = ""         // saved, not yet carried over
	ForkCarried  = "carried"  // applied again as a new ledger event (carried_seq)
	ForkSkipped  = "skipped"  // nothing left to apply (the ledger already has its effect)
	ForkConflict = "conflict" // could not be applied without a count going negative
)

// SaveForked keeps a forked partition's events (those not saved before) under run.
func (s *Store) SaveForked(ctx context.Context, run int64, events []engine.Event) error {
	batch := &pgx.Batch{}
	for i := range events {
		ev := &events[i]
		batch.Queue(`INSERT INTO forked_events (partition, hash, seq, canonical, run_id) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (partition, hash) DO NOTHING`, ev.Partition, ev.Hash, ev.Seq, ev.Canonical(), run)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("ledger: save forked events: %w", err)
	}
	return nil
}

// ForkedEvent is a saved forked event and what became of it so far (Outcome: "" pending, or
// "carried", "skipped: …", "conflict: …").
type ForkedEvent struct {
	engine.Event
	Outcome string
}

// Carried reports whether the event was carried over.
func (f ForkedEvent) Carried() bool { return f.Outcome == ForkCarried }

// ForkedEvents returns partition p's forked events (only those not yet carried over when
// pending), oldest first.
func (s *Store) ForkedEvents(ctx context.Context, p int, pending bool) ([]ForkedEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT canonical, hash, outcome FROM forked_events WHERE partition = $1 AND (outcome = '' OR NOT $2)
		ORDER BY saved_at, seq`, p, pending)
	if err != nil {
		return nil, fmt.Errorf("ledger: forked events: %w", err)
	}
	var out []ForkedEvent
	for rows.Next() {
		var c, h, outcome string
		if err := rows.Scan(&c, &h, &outcome); err != nil {
			return nil, err
		}
		ev, err := engine.ParseEvent(c, h)
		if err != nil {
			return nil, fmt.Errorf("ledger: forked event %s of partition %d: %w", h, p, err)
		}
		out = append(out, ForkedEvent{ev, outcome})
	}
	return out, rows.Err()
}

// SettleForked records what became of a forked event: outcome, with a note, and the seq of
// the event that carried it over (0: none).
func (s *Store) SettleForked(ctx context.Context, p int, hash, outcome, note string, carriedSeq int64) error {
	var seq *int64
	if carriedSeq > 0 {
		seq = &carriedSeq
	}
	text := outcome
	if note != "" {
		text += ": " + note
	}
	if _, err := s.pool.Exec(ctx, `UPDATE forked_events SET outcome = $3, carried_seq = $4 WHERE partition = $1 AND hash = $2`,
		p, hash, text, seq); err != nil {
		return fmt.Errorf("ledger: settle forked event: %w", err)
	}
	return nil
}
