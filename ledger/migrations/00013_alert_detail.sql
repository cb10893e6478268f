-- +goose Up
-- An ANOMALY alert says what happened in words; the other types need none.
ALTER TABLE stock_alerts ADD COLUMN detail text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE stock_alerts DROP COLUMN detail;
