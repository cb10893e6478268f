-- +goose Up
-- Stock threshold crossings (LOW_STOCK, OUT_OF_STOCK, BACK_IN_STOCK), one row per alert.
CREATE TABLE stock_alerts (
    id         bigserial   PRIMARY KEY,
    vendor_id  text        NOT NULL,
    location   text        NOT NULL,
    sku        text        NOT NULL,
    type       text        NOT NULL,
    available  bigint      NOT NULL,
    threshold  bigint      NOT NULL,
    ts         bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_alerts_vendor ON stock_alerts (vendor_id, id);
CREATE INDEX stock_alerts_pool ON stock_alerts (location, sku, id);

-- +goose Down
DROP TABLE stock_alerts;
