-- +goose Up
-- Durable configuration: vendors, their locations, and pools (copied from Redis).
CREATE TABLE vendors (
    id         text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE locations (
    id         text        PRIMARY KEY,
    vendor_id  text        NOT NULL REFERENCES vendors (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pools (
    location       text        NOT NULL REFERENCES locations (id),
    sku            text        NOT NULL,
    vendor_id      text        NOT NULL REFERENCES vendors (id),
    shards         integer     NOT NULL,
    low_stock      bigint      NOT NULL DEFAULT 0,
    customer_limit bigint      NOT NULL DEFAULT 0,
    best_before    bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location, sku)
);
CREATE INDEX pools_vendor ON pools (vendor_id);

-- +goose Down
DROP TABLE pools;
DROP TABLE locations;
DROP TABLE vendors;
