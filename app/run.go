package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/flashhold/flashhold/api"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/ledger"
)

// Run serves the API and runs the background services until ctx ends; then it lets requests
// in flight finish (for at most FLASHHOLD_SHUTDOWN_TIMEOUT), and only then stops the
// services, so that what those requests did is still swept and persisted.
func (a *App) Run(ctx context.Context) error {
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var workers sync.WaitGroup
	for _, s := range a.services {
		workers.Go(func() { _ = s.Run(bg) })
	}
	served := make(chan error, 1)
	go func() { served <- a.Server.Serve(a.ln) }()
	a.log.Info().Str("addr", a.Addr()).Int("api_keys", len(a.keys)).Bool("sweeper", a.Sweeper != nil).
		Bool("persister", a.Persister != nil).Bool("alerts", a.Store != nil && a.cfg.AlertsOn).Msg("serving")
	select {
	case err := <-served:
		stopBackground()
		workers.Wait()
		return err
	case <-ctx.Done():
	}
	a.log.Info().Msg("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err := a.Server.Shutdown(sctx)
	stopBackground()
	workers.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil {
		return err
	}
	a.log.Info().Msg("stopped")
	return nil
}

// ledgerEvents serves the events API from the Postgres ledger.
type ledgerEvents struct{ store *ledger.Store }

func (l ledgerEvents) Events(ctx context.Context, q api.EventQuery) (api.EventPage, error) {
	if len(q.Hold) > 0 {
		evs, err := l.store.HoldEvents(ctx, q.Vendor, q.Hold)
		return api.EventPage{Events: evs, Source: "postgres"}, err
	}
	if q.Follow {
		evs, next, err := l.store.FollowEvents(ctx, q.Vendor, q.AfterPartition, q.AfterSeq, q.Limit)
		if errors.Is(err, ledger.ErrUnknownCursor) {
			return api.EventPage{}, &engine.ValidationError{Field: "after",
				Reason: fmt.Sprintf("the ledger has no event %d:%d: continue from the next_after a page gave", q.AfterPartition, q.AfterSeq)}
		}
		return api.EventPage{Events: evs, Next: fmt.Sprintf("%d:%d", q.AfterPartition, next), Source: "postgres"}, err
	}
	evs, err := l.store.Events(ctx, q.Vendor, q.AfterPartition, q.AfterSeq, q.Limit)
	if err != nil {
		return api.EventPage{}, err
	}
	page := api.EventPage{Events: evs, Source: "postgres"}
	if len(evs) == q.Limit {
		last := evs[len(evs)-1]
		page.Next = fmt.Sprintf("%d:%d", last.Partition, last.Seq)
	}
	return page, nil
}
