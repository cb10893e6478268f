-- +goose Up
-- Every event of every partition, exactly once: the natural key is (partition, seq).
CREATE TABLE inventory_events (
    partition       integer     NOT NULL,
    seq             bigint      NOT NULL,
    type            text        NOT NULL,
    location        text        NOT NULL,
    sku             text        NOT NULL,
    shard           integer     NOT NULL,
    delta           bigint      NOT NULL,
    available_after bigint      NOT NULL,
    held_delta      bigint      NOT NULL,
    hold            text        NOT NULL DEFAULT '',
    qty             bigint      NOT NULL,
    customer        text        NOT NULL DEFAULT '',
    idem            text        NOT NULL DEFAULT '',
    actor           text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    ts              bigint      NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    persisted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, seq)
);
-- A pool's history by time (events API, audits).
CREATE INDEX inventory_events_pool_ts ON inventory_events (location, sku, ts);
-- A hold's history.
CREATE INDEX inventory_events_hold ON inventory_events (hold) WHERE hold <> '';

-- Stream entries that could not be decoded, kept with their raw payload.
CREATE TABLE dead_letters (
    id         bigserial   PRIMARY KEY,
    partition  integer     NOT NULL,
    stream_id  text        NOT NULL,
    payload    jsonb       NOT NULL,
    error      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partition, stream_id)
);

-- Integrity alarms: a stream event that contradicts the ledger (Redis lost acknowledged writes).
CREATE TABLE integrity_alarms (
    id         bigserial   PRIMARY KEY,
    partition  integer     NOT NULL,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    detail     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE integrity_alarms;
DROP TABLE dead_letters;
DROP TABLE inventory_events;
