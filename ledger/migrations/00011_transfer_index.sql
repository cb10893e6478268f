-- +goose Up
-- A rebuild after Redis lost writes looks up the transfers other partitions made with the
-- partition rebuilt (their reason names it, "<partition>/<shard>"): transfers are few beside
-- reservations, so a partial index keeps the lookup small however large the ledger grows.
CREATE INDEX inventory_events_transfers ON inventory_events (reason text_pattern_ops)
    WHERE type IN ('TRANSFER_OUT', 'TRANSFER_IN');

-- +goose Down
DROP INDEX inventory_events_transfers;
