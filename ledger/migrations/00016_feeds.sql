-- +goose Up
-- Vendors' stock feeds (package feeds): a URL fetched on a schedule and applied as an import.
CREATE TABLE feeds (
    id             bigserial   PRIMARY KEY,
    vendor_id      text        NOT NULL,
    url            text        NOT NULL,
    format         text        NOT NULL DEFAULT '',
    mode           text        NOT NULL,
    cron           text        NOT NULL,
    time_zone      text        NOT NULL,
    ends_at        timestamptz,
    actor          text        NOT NULL,
    etag           text        NOT NULL DEFAULT '',
    last_modified  text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    last_occurrence timestamptz,
    last_result    text        NOT NULL DEFAULT '',
    last_import    text        NOT NULL DEFAULT ''
);
CREATE INDEX feeds_vendor ON feeds (vendor_id, id) WHERE deleted_at IS NULL;

-- What came of each occurrence of a feed.
CREATE TABLE feed_runs (
    feed_id     bigint      NOT NULL REFERENCES feeds (id),
    occurrence  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    result      text        NOT NULL,
    http_status integer     NOT NULL DEFAULT 0,
    import_id   text        NOT NULL DEFAULT '',
    error       text        NOT NULL DEFAULT '',
    PRIMARY KEY (feed_id, occurrence)
);

-- An import's mode: '' (any rows), set (stock_quantity rows only) or delta (change rows only).
ALTER TABLE imports ADD COLUMN mode text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE imports DROP COLUMN mode;
DROP TABLE feed_runs;
DROP TABLE feeds;
