-- +goose Up
-- The regions (see engine/region.go), copied from Redis like the pools, so that a Redis that
-- lost its data is restored with them.
CREATE TABLE regions (
    name       text        PRIMARY KEY,
    doc        jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE regions;
