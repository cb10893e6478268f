package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
)

// KindKeyspaceLost: Redis lost its data (its keyspace epoch is not the ledger's).
const KindKeyspaceLost = "keyspace_lost"

// restoreKeyspace starts the repair of a Redis that lost its data: with every partition
// fenced, it writes back the keyspace's settings and the pools' configuration from the
// ledger. The partitions are then rebuilt one by one (their fences say why), and
// finishKeyspace ends the repair. It returns nil when Redis holds the keyspace the ledger
// knows.
func (r *Reconciler) restoreKeyspace(ctx context.Context) (*Finding, error) {
	prefix := r.eng.Config().Prefix
	known, ok, err := r.store.Keyspace(ctx, prefix)
	if err != nil || !ok {
		return nil, err
	}
	cur, err := r.eng.KeyspaceSettings(ctx)
	if err != nil {
		return nil, err
	}
	if cur.Epoch == known.Epoch {
		return nil, nil
	}
	f := &Finding{Kind: KindKeyspaceLost, Partition: -1, Shard: -1,
		Detail: fmt.Sprintf("Redis holds epoch %q, the ledger knows %q: Redis lost its data", cur.Epoch, known.Epoch)}
	r.eng.MarkLost()
	if err := r.eng.RaiseLostFences(ctx); err != nil {
		return nil, err
	}
	if err := r.eng.RestoreSettings(ctx, known); err != nil {
		return nil, err
	}
	pools, err := r.store.Pools(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.eng.RestorePools(ctx, pools); err != nil {
		return nil, err
	}
	regions, err := r.store.Regions(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.eng.RestoreRegions(ctx, regions); err != nil {
		return nil, err
	}
	f.Detail += fmt.Sprintf("; settings, %d pools and %d regions restored from the ledger", len(pools), len(regions))
	return f, nil
}

// finishKeyspace ends the repair of a Redis that lost its data, once every partition is
// rebuilt: it makes the shards the ledger never wrote, writes back the answers of the
// reservations that took several calls (so a retry gets its hold, not a second one), and
// makes the engine work with the restored keyspace.
func (r *Reconciler) finishKeyspace(ctx context.Context, f *Finding) error {
	pools, err := r.store.Pools(ctx)
	if err != nil {
		return err
	}
	for _, p := range pools {
		if err := r.eng.CreatePool(ctx, p, "reconcile"); err != nil {
			return fmt.Errorf("pool %s: %w", p.Key(), err)
		}
	}
	keep := r.eng.Config().IdempotencyTTL
	now := time.Now()
	res, err := r.store.Reservations(ctx, now.Add(-keep).UnixMilli())
	if err != nil {
		return err
	}
	answers := answersOf(res, keep, now)
	if err := r.eng.RestoreAnswers(ctx, answers); err != nil {
		return err
	}
	if err := r.eng.Adopt(ctx); err != nil {
		return err
	}
	f.Detail += fmt.Sprintf("; %d partitions rebuilt; %d answers of reservations restored", r.eng.Partitions(), len(answers))
	f.Repaired = true
	return nil
}

// answersOf rebuilds the answers of slow-path reservations (attempt other than "0") from
// their parts' RESERVED events, leaving out parts voided since.
func answersOf(res []ledger.Reservation, keep time.Duration, now time.Time) []engine.Answer {
	type hold struct {
		parts []engine.PartID
		qtys  []int64
		bos   []bool
		exp   int64
		first int64
	}
	holds := map[string]*hold{}
	var order []string
	for _, r := range res {
		token, attempt, ok := engine.PartOf(r.Part)
		if !ok || attempt == "0" || r.Voided {
			continue
		}
		key := token + "." + attempt
		h := holds[key]
		if h == nil {
			h = &hold{first: r.TS}
			holds[key] = h
			order = append(order, key)
		}
		h.parts = append(h.parts, engine.PartID{Partition: r.Partition, Part: r.Part})
		h.qtys = append(h.qtys, r.Qty)
		h.bos = append(h.bos, r.Backordered)
		h.exp = max(h.exp, r.ExpiresAt)
	}
	var out []engine.Answer
	for _, key := range order {
		h := holds[key]
		id, idx, err := engine.HoldOfParts(h.parts)
		if err != nil {
			continue
		}
		qtys, bos := make([]int64, len(idx)), make([]bool, len(idx))
		for i, j := range idx {
			qtys[i], bos[i] = h.qtys[j], h.bos[j]
		}
		out = append(out, engine.Answer{HoldID: id, ExpiresAt: h.exp, Qtys: qtys, Backordered: bos,
			Keep: keep - now.Sub(time.UnixMilli(h.first))})
	}
	return out
}
