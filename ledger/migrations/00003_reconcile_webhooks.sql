-- +goose Up
-- Reconciliation: each run, what it found, and how far each partition is verified.
CREATE TABLE reconcile_runs (
    id              bigserial   PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text        NOT NULL DEFAULT 'running',
    repair          boolean     NOT NULL DEFAULT false,
    events_replayed bigint      NOT NULL DEFAULT 0,
    findings        integer     NOT NULL DEFAULT 0,
    summary         jsonb
);

CREATE TABLE reconcile_findings (
    id        bigserial PRIMARY KEY,
    run_id    bigint    NOT NULL REFERENCES reconcile_runs (id) ON DELETE CASCADE,
    kind      text      NOT NULL,
    partition integer   NOT NULL,
    location  text      NOT NULL DEFAULT '',
    sku       text      NOT NULL DEFAULT '',
    shard     integer,
    seq_from  bigint,
    seq_to    bigint,
    amount    bigint,
    detail    text      NOT NULL DEFAULT '',
    repaired  boolean   NOT NULL DEFAULT false
);
CREATE INDEX reconcile_findings_run ON reconcile_findings (run_id);

CREATE TABLE checkpoints (
    partition   integer     PRIMARY KEY,
    seq         bigint      NOT NULL,
    hash        text        NOT NULL,
    run_id      bigint      REFERENCES reconcile_runs (id),
    verified_at timestamptz NOT NULL DEFAULT now()
);

-- Stock alert webhooks.
CREATE TABLE webhook_subscriptions (
    id           text        PRIMARY KEY,
    vendor_id    text        NOT NULL,
    callback_url text        NOT NULL,
    event_types  text[]      NOT NULL,
    secret       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX webhook_subscriptions_vendor ON webhook_subscriptions (vendor_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    subscription_id text        NOT NULL REFERENCES webhook_subscriptions (id),
    event_id        text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_subscriptions;
DROP TABLE checkpoints;
DROP TABLE reconcile_findings;
DROP TABLE reconcile_runs;
