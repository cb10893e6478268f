-- +goose Up
-- A deleted region is kept as deleted (deleted_at) rather than removed, so that a copy of the
-- regions read from Redis before the delete, written after it, cannot bring it back.
ALTER TABLE regions ADD COLUMN deleted_at timestamptz;

-- +goose Down
DELETE FROM regions WHERE deleted_at IS NOT NULL;
ALTER TABLE regions DROP COLUMN deleted_at;
