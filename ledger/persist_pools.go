package ledger

import (
	"context"
	"time"
)

func (p *Persister) syncPools(ctx context.Context) error {
	p.mu.Lock()
	due := p.cfg.SyncPoolsEvery > 0 && time.Since(p.lastSync) >= p.cfg.SyncPoolsEvery
	if due {
		p.lastSync = time.Now() // one sync at a time; a failure retries after the interval
	}
	p.mu.Unlock()
	if !due {
		return nil
	}
	pools, err := p.eng.Pools(ctx)
	if err != nil {
		return err
	}
	return p.store.SyncPools(ctx, pools)
}
