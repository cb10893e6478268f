-- +goose Up
-- The window of a pool's per-customer limit (engine.PoolConfig.CustomerWindow, ms; 0: for good).
ALTER TABLE pools ADD COLUMN customer_window_ms bigint NOT NULL DEFAULT 0 CHECK (customer_window_ms >= 0);

-- +goose Down
ALTER TABLE pools DROP COLUMN customer_window_ms;
