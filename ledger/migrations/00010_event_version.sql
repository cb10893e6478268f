-- +goose Up
-- Events of version 2 carry the part's expiry as a column of its own (version 1 kept it in
-- the reason of RESERVED and EXTENDED events). Rows written before this migration are all of
-- version 1; a constant default adds both columns without rewriting the table.
ALTER TABLE inventory_events ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE inventory_events ADD COLUMN expires_at bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE inventory_events DROP COLUMN expires_at;
ALTER TABLE inventory_events DROP COLUMN version;
