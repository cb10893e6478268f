-- +goose Up
-- The settings of each Redis keyspace the ledger records (by key prefix): its epoch, its
-- partition count and, when the operator set no FLASHHOLD_ID_SECRET, the secret its hold ids
-- are keyed with. A Redis that lost its data is told apart by its epoch, and restored with
-- these settings (reconcile --repair).
CREATE TABLE keyspaces (
    prefix     text        PRIMARY KEY,
    epoch      text        NOT NULL,
    partitions integer     NOT NULL,
    id_secret  text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE keyspaces;
