-- +goose Up
-- A pool's safety stock (engine.PoolConfig.SafetyStock), kept with the rest of its configuration.
ALTER TABLE pools ADD COLUMN safety_stock bigint NOT NULL DEFAULT 0 CHECK (safety_stock >= 0);

-- +goose Down
ALTER TABLE pools DROP COLUMN safety_stock;
