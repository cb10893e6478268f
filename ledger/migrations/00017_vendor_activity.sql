-- +goose Up
-- Events per vendor and minute, as the alert detector reads them (a vendor's summary: events
-- in the last hour).
CREATE TABLE vendor_activity (
    vendor_id text        NOT NULL,
    minute    timestamptz NOT NULL,
    events    bigint      NOT NULL,
    PRIMARY KEY (vendor_id, minute)
);

-- +goose Down
DROP TABLE vendor_activity;
