-- +goose Up
-- Per-vendor limits on what one stock change may do (package guardrails); a vendor without a
-- row has the defaults of the configuration.
CREATE TABLE vendor_guardrails (
    vendor_id    text             PRIMARY KEY,
    max_change   bigint           NOT NULL,
    max_relative double precision NOT NULL,
    ceiling      bigint           NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now()
);

-- Changes held back by a guardrail until the vendor or an admin approves or rejects them.
CREATE TABLE quarantine (
    id               bigserial   PRIMARY KEY,
    vendor_id        text        NOT NULL,
    location         text        NOT NULL,
    sku              text        NOT NULL,
    kind             text        NOT NULL,
    qty              bigint      NOT NULL,
    transaction_id   text        NOT NULL,
    actor            text        NOT NULL,
    reason           text        NOT NULL DEFAULT '',
    available_before bigint      NOT NULL,
    rule             text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    decided_by       text        NOT NULL DEFAULT '',
    new_available    bigint,
    UNIQUE (vendor_id, transaction_id)
);
CREATE INDEX quarantine_vendor ON quarantine (vendor_id, status, id);

-- +goose Down
DROP TABLE quarantine;
DROP TABLE vendor_guardrails;
