package ledger

import (
	"context"
	"time"
)

// syncPools copies the pools and the regions into Postgres when they changed since the last
// copy (the engine's PoolsVersion moved, or this persister has not copied them yet), at most
// every SyncPoolsEvery.
func (p *Persister) syncPools(ctx context.Context) error {
	p.mu.Lock()
	due := p.cfg.SyncPoolsEvery > 0 && time.Since(p.lastSync) >= p.cfg.SyncPoolsEvery
	if due {
		p.lastSync = time.Now() // one sync at a time; a failure retries after the interval
	}
	synced, had := p.poolsVersion, p.poolsSynced
	p.mu.Unlock()
	if !due {
		return nil
	}
	v, err := p.eng.PoolsVersion(ctx)
	if err != nil || had && v == synced {
		return err
	}
	pools, err := p.eng.Pools(ctx)
	if err != nil {
		return err
	}
	if err := p.store.SyncPools(ctx, pools); err != nil {
		return err
	}
	if err := p.store.SyncRegions(ctx, p.eng.Regions); err != nil {
		return err
	}
	p.mu.Lock()
	p.poolsVersion, p.poolsSynced = v, true
	p.mu.Unlock()
	return nil
}
