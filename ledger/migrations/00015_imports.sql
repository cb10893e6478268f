-- +goose Up
-- Vendors' asynchronous stock imports (package imports): the upload as it came, in chunks,
-- so that any instance can apply it and resume it after a restart; each import's progress
-- and counts; the rows it did not apply, with the reason.
CREATE TABLE imports (
    id              text        PRIMARY KEY,
    vendor_id       text        NOT NULL,
    idempotency_key text,
    format          text        NOT NULL,
    source          text        NOT NULL,
    actor           text        NOT NULL,
    status          text        NOT NULL DEFAULT 'queued',
    total_rows      bigint      NOT NULL,
    bytes           bigint      NOT NULL,
    -- rows (by place in the file, from 1) below next_row are done and counted
    next_row        bigint      NOT NULL DEFAULT 1,
    applied         bigint      NOT NULL DEFAULT 0,
    unchanged       bigint      NOT NULL DEFAULT 0,
    rejected        bigint      NOT NULL DEFAULT 0,
    quarantined     bigint      NOT NULL DEFAULT 0,
    file_checked    boolean     NOT NULL DEFAULT false,
    held_reason     text        NOT NULL DEFAULT '',
    error           text        NOT NULL DEFAULT '',
    owner           text        NOT NULL DEFAULT '',
    lease_until     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    decided_by      text        NOT NULL DEFAULT '',
    UNIQUE (vendor_id, idempotency_key)
);
CREATE INDEX imports_vendor ON imports (vendor_id, created_at DESC);
CREATE INDEX imports_open ON imports (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE import_chunks (
    import_id text    NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    data      bytea   NOT NULL,
    PRIMARY KEY (import_id, seq)
);

CREATE TABLE import_rows (
    import_id     text   NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_n         bigint NOT NULL,
    status        text   NOT NULL,
    location      text   NOT NULL DEFAULT '',
    sku           text   NOT NULL DEFAULT '',
    code          text   NOT NULL,
    message       text   NOT NULL,
    quarantine_id bigint,
    PRIMARY KEY (import_id, row_n)
);

-- The whole-file check of an import (package guardrails).
ALTER TABLE vendor_guardrails ADD COLUMN file_max_share double precision NOT NULL DEFAULT 0,
    ADD COLUMN file_factor double precision NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE vendor_guardrails DROP COLUMN file_max_share, DROP COLUMN file_factor;
DROP TABLE import_rows;
DROP TABLE import_chunks;
DROP TABLE imports;
