-- +goose Up
-- Shoppers' back-in-stock notices: a storefront (an API key) asks to be told when a SKU comes
-- back at a location or in a region, for one customer. The notice goes to the storefront's
-- webhook (webhook_subscriptions with vendor_id 'client/<key id>'), at most once per interest:
-- the restock's alert marks it notified in the transaction that queues the notice.
CREATE TABLE notify_interests (
    id          bigserial   PRIMARY KEY,
    client_id   text        NOT NULL,
    customer_id text        NOT NULL,
    sku         text        NOT NULL,
    location    text        NOT NULL DEFAULT '',
    region      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    notified_at timestamptz,
    alert_id    bigint
);
CREATE UNIQUE INDEX notify_interests_pending ON notify_interests (client_id, customer_id, sku, location, region)
    WHERE notified_at IS NULL;
CREATE INDEX notify_interests_sku ON notify_interests (sku) WHERE notified_at IS NULL;

-- +goose Down
DROP TABLE notify_interests;
