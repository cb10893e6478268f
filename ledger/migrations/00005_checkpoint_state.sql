-- +goose Up
-- A checkpoint carries the replayed state of its partition at its seq (per-shard counters and
-- open hold parts), so the next reconciliation replays only the events after it.
ALTER TABLE checkpoints ADD COLUMN state jsonb;

-- +goose Down
ALTER TABLE checkpoints DROP COLUMN state;
