-- +goose Up
-- Events Redis wrote on a forked partition (after it lost acknowledged writes), kept as
-- evidence when reconciliation rebuilds the partition from the ledger, with what became of
-- each: carried over as a new ledger event, or why not.
CREATE TABLE forked_events (
    partition   integer     NOT NULL,
    hash        text        NOT NULL,
    seq         bigint      NOT NULL,
    canonical   text        NOT NULL,
    run_id      bigint      REFERENCES reconcile_runs (id),
    saved_at    timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL DEFAULT '',
    carried_seq bigint,
    PRIMARY KEY (partition, hash)
);

-- +goose Down
DROP TABLE forked_events;
