-- +goose Up
-- A pool's substitutes (engine.PoolConfig.Substitutes), kept with the rest of its configuration.
ALTER TABLE pools ADD COLUMN substitutes text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE pools DROP COLUMN substitutes;
