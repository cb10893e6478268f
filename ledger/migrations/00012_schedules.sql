-- +goose Up
-- Vendors' recurring stock rules (package schedules): SET a pool to qty, or RESTOCK it by qty,
-- at each occurrence of a cron expression in a time zone, until ends_at.
CREATE TABLE stock_schedules (
    id              bigserial   PRIMARY KEY,
    vendor_id       text        NOT NULL,
    location        text        NOT NULL,
    sku             text        NOT NULL,
    kind            text        NOT NULL,
    qty             bigint      NOT NULL,
    cron            text        NOT NULL,
    time_zone       text        NOT NULL,
    ends_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    -- the occurrence last dealt with (applied, replayed or failed for good)
    last_occurrence timestamptz,
    last_result     text        NOT NULL DEFAULT ''
);
CREATE INDEX stock_schedules_vendor ON stock_schedules (vendor_id, id) WHERE deleted_at IS NULL;

-- One row per occurrence dealt with; its key is the occurrence's wall-clock time in the
-- schedule's zone, so the hour repeated when clocks go back counts once.
CREATE TABLE stock_schedule_runs (
    schedule_id        bigint      NOT NULL REFERENCES stock_schedules (id),
    occurrence         text        NOT NULL,
    occurred_at        timestamptz NOT NULL,
    ran_at             timestamptz NOT NULL DEFAULT now(),
    transaction_id     text        NOT NULL,
    result             text        NOT NULL,
    previous_available bigint,
    new_available      bigint,
    error              text        NOT NULL DEFAULT '',
    PRIMARY KEY (schedule_id, occurrence)
);

-- +goose Down
DROP TABLE stock_schedule_runs;
DROP TABLE stock_schedules;
