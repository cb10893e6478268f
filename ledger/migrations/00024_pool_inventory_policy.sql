-- +goose Up
-- A pool's inventory policy (engine.PoolConfig.Policy: '' or deny, backorder, preorder), the
-- most units it keeps backordered, and a preorder's release time (unix ms).
ALTER TABLE pools ADD COLUMN inventory_policy text NOT NULL DEFAULT ''
  CHECK (inventory_policy IN ('', 'deny', 'backorder', 'preorder'));
ALTER TABLE pools ADD COLUMN backorder_limit bigint NOT NULL DEFAULT 0 CHECK (backorder_limit >= 0);
ALTER TABLE pools ADD COLUMN release_at bigint NOT NULL DEFAULT 0 CHECK (release_at >= 0);

-- +goose Down
ALTER TABLE pools DROP COLUMN release_at;
ALTER TABLE pools DROP COLUMN backorder_limit;
ALTER TABLE pools DROP COLUMN inventory_policy;
