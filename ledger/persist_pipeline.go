package ledger

import (
	"context"
	"time"

	"github.com/flashhold/flashhold/internal/loop"
)

// Run persists until ctx ends: passes back to back while there is work (reading the next
// batch while the current one is written; Linger apart instead when set and the batches are
// small), every Interval when idle, and with capped exponential backoff while Postgres or
// Redis fail.
func (p *Persister) Run(ctx context.Context) error {
	p.log.Info().Str("consumer", p.owner).Str("mode", p.cfg.Mode).Msg("persister started")
	defer p.log.Info().Msg("persister stopped")
	r := &pipeline{p: p}
	defer r.drain()
	return loop.Paced(ctx, p.cfg.BackoffMax, r.pass, func(err error, retryIn time.Duration) {
		p.log.Warn().Err(err).Dur("retry_in", retryIn).Msg("persist pass failed; events stay buffered in Redis")
	})
}

// pipeline is what Run carries from one pass to the next: the next batch, read while the
// current one is written, and the previous batch's acknowledgement, made while the next one
// is written (the entries of a committed batch are only acknowledged: Postgres stays busy).
type pipeline struct {
	p        *Persister
	next     chan fetched
	settling chan error
	lastLag  time.Time
}

type fetched struct {
	b   *batch
	err error
}

// pass writes one batch and says how long to wait before the next.
func (r *pipeline) pass(ctx context.Context) (time.Duration, error) {
	p := r.p
	var b *batch
	var err error
	if r.next != nil {
		f := <-r.next
		r.next, b, err = nil, f.b, f.err
	} else {
		b, err = p.fetch(ctx, true)
	}
	busy, linger := false, false
	if err == nil && b.read > 0 {
		busy, linger = true, p.cfg.Linger > 0 && b.read < p.cfg.MaxRows/4
		if !linger {
			r.next = make(chan fetched, 1)
			go func(ch chan fetched) {
				nb, err := p.fetch(ctx, false)
				ch <- fetched{nb, err}
			}(r.next)
		}
		var forked map[int]bool
		_, forked, err = p.commit(ctx, b)
		if serr := r.settled(); err == nil {
			err = serr
		}
		if err == nil {
			r.settling = make(chan error, 1)
			go func(ch chan error) { ch <- p.settle(ctx, b, forked) }(r.settling)
		}
		if err != nil && r.next != nil { // what was prefetched is re-read from the pending entries later
			<-r.next
			r.next = nil
		}
	} else if serr := r.settled(); err == nil {
		err = serr
	}
	if err != nil {
		p.failed() // also when stopping: a later pass of this persister reads what stays pending
	}
	if time.Since(r.lastLag) > time.Second {
		r.lastLag = time.Now()
		if err := p.UpdateLag(ctx); err != nil && ctx.Err() == nil {
			p.log.Debug().Err(err).Msg("lag not measured")
		}
	}
	switch {
	case linger:
		return p.cfg.Linger, err
	case busy:
		return 0, err
	}
	return p.cfg.Interval, err
}

// settled waits for the previous batch's acknowledgement.
func (r *pipeline) settled() error {
	if r.settling == nil {
		return nil
	}
	err := <-r.settling
	r.settling = nil
	return err
}

// drain waits for what is still in flight when Run stops.
func (r *pipeline) drain() {
	if r.next != nil {
		<-r.next
		r.p.failed() // what it read stays pending for the next full pass
	}
	if r.settling != nil {
		<-r.settling
	}
}
