-- +goose Up
-- No query of flashhold reads a pool's events by time (the events API pages by (partition,
-- seq), a hold's history uses inventory_events_hold), and keeping this b-tree up to date cost
-- a quarter (one SKU) to two fifths (SKUs spread) of Postgres's CPU per appended event (see
-- docs/ledger.md). Build it on a reporting replica when an audit needs it.
DROP INDEX inventory_events_pool_ts;

-- +goose Down
CREATE INDEX inventory_events_pool_ts ON inventory_events (location, sku, ts);
