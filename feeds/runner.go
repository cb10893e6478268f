package feeds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/internal/loop"
	"github.com/flashhold/flashhold/stockfile"
)

// Config is the feed runner's configuration.
type Config struct {
	// Interval between passes: a feed is fetched within about this long of its time.
	Interval time.Duration
	// Timeout bounds one fetch, the whole answer read.
	Timeout time.Duration
}

// DefaultConfig is the runner's configuration when the environment sets nothing.
func DefaultConfig() Config { return Config{Interval: 10 * time.Second, Timeout: time.Minute} }

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Interval <= 0 || c.Timeout <= 0 {
		return fmt.Errorf("FLASHHOLD_FEED_INTERVAL and FLASHHOLD_FEED_TIMEOUT must be positive, got %s and %s", c.Interval, c.Timeout)
	}
	return nil
}

// Guard checks a feed's URL and dials only the addresses it allows (package alerts'
// URLPolicy, the webhooks' guard).
type Guard interface {
	URLGuard
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Importer keeps a feed's answer as an import (package imports' Store).
type Importer interface {
	Create(ctx context.Context, up imports.Upload) (imports.Import, bool, error)
}

// leaseName is the Redis lease one instance runs the feeds under.
const leaseName = "feeds"

// maxRedirects bounds the redirects a fetch follows (each dial is guarded).
const maxRedirects = 3

// Runner fetches the feeds as they come due and makes each answer an import.
type Runner struct {
	eng    *engine.Engine
	store  *Store
	imp    Importer
	guard  Guard
	limits imports.Config
	cfg    Config
	log    zerolog.Logger
	owner  string
	now    func() time.Time
	client *http.Client

	runs *prometheus.CounterVec
}

// Option changes a Runner.
type Option func(*Runner)

// WithClock makes the runner read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(r *Runner) { r.now = now } }

// NewRunner returns a runner of store's feeds: it fetches through guard and keeps each answer
// with imp, within the imports' limits.
func NewRunner(eng *engine.Engine, store *Store, imp Importer, guard Guard, limits imports.Config, cfg Config, log zerolog.Logger, opts ...Option) *Runner {
	r := &Runner{eng: eng, store: store, imp: imp, guard: guard, limits: limits, cfg: cfg, log: log, owner: loop.InstanceID(),
		now: time.Now,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_feed_runs_total",
			Help: "Occurrences of vendors' feeds dealt with, by result (imported, not_modified, failed)."}, []string{"result"})}
	r.client = &http.Client{
		Transport: &http.Transport{DialContext: guard.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return guard.Check(req.Context(), req.URL.String())
		},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds the runner's metrics to reg.
func (r *Runner) Register(reg prometheus.Registerer) error { return reg.Register(r.runs) }

// Run runs passes every interval until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	return loop.Run(ctx, r.cfg.Interval, r.cfg.Interval, func(ctx context.Context) error {
		_, err := r.RunOnce(ctx)
		return err
	}, func(err error) { r.log.Warn().Err(err).Msg("feed pass failed") })
}

// RunOnce fetches, if this runner holds the lease, each feed whose latest occurrence is due
// and not dealt with yet, and returns how many it dealt with.
func (r *Runner) RunOnce(ctx context.Context) (int, error) {
	held, err := r.eng.Lease(ctx, leaseName, r.owner, 2*r.cfg.Interval+r.cfg.Timeout)
	if err != nil || !held {
		return 0, err
	}
	list, err := r.store.List(ctx, "")
	if err != nil {
		return 0, err
	}
	return loop.Each(list, func(x *Feed) (bool, error) { return r.runFeed(ctx, x) })
}

// runFeed deals with f's latest occurrence due, if any: the fetch, the import, the record. An
// import Postgres could not keep now is tried again next pass; a feed that answered nothing
// usable is recorded as failed (the next occurrence tries again).
func (r *Runner) runFeed(ctx context.Context, f *Feed) (bool, error) {
	after := f.Created
	if f.LastRun != nil {
		after = *f.LastRun
	}
	at, err := f.Due(after, r.now())
	if err != nil || at.IsZero() {
		return false, err
	}
	run := Run{Feed: f.ID, Occurrence: f.OccurrenceKey(at), OccurredAt: at}
	etag, lastModified, err := r.fetch(ctx, f, &run)
	if err != nil {
		return false, fmt.Errorf("feed %d at %s: %w", f.ID, run.Occurrence, err)
	}
	if err := r.store.Record(ctx, run, etag, lastModified); err != nil {
		return false, err
	}
	r.runs.WithLabelValues(run.Result).Inc()
	r.log.Info().Int64("feed", f.ID).Str("vendor", f.Vendor).Str("occurrence", run.Occurrence).Str("result", run.Result).
		Int("http_status", run.HTTPStatus).Str("import", run.ImportID).Str("error", run.Error).Msg("feed ran")
	return true, nil
}

// fetch gets the feed (conditionally) and keeps a 200 answer as an import; it fills in run and
// returns the answer's validators. The error is one to try again (Postgres could not keep the
// import); a feed that gave nothing usable is a failed run.
func (r *Runner) fetch(ctx context.Context, f *Feed, run *Run) (etag, lastModified string, err error) {
	fail := func(format string, args ...any) (string, string, error) {
		run.Result, run.Error = Failed, fmt.Sprintf(format, args...)
		return "", "", nil
	}
	if err := r.guard.Check(ctx, f.URL); err != nil {
		return fail("url refused: %v", err)
	}
	fctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return fail("url: %v", err)
	}
	req.Header.Set("User-Agent", "flashhold-feed/1")
	if f.ETag != "" {
		req.Header.Set("If-None-Match", f.ETag)
	}
	if f.LastModified != "" {
		req.Header.Set("If-Modified-Since", f.LastModified)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fail("fetch: %v", err)
	}
	defer resp.Body.Close()
	run.HTTPStatus = resp.StatusCode
	switch resp.StatusCode {
	case http.StatusNotModified:
		run.Result = NotModified
		return "", "", nil
	case http.StatusOK:
	default:
		return fail("the feed answered HTTP %d", resp.StatusCode)
	}
	format := f.Format
	if format == "" {
		if format, err = stockfile.Format(resp.Header.Get("Content-Type")); err != nil {
			return fail("%v (set the feed's format)", err)
		}
	}
	im, _, err := r.imp.Create(fctx, imports.Upload{Vendor: f.Vendor, Actor: f.Actor, Format: format,
		Source: "feed:" + strconv.FormatInt(f.ID, 10), IdempotencyKey: "feed-" + strconv.FormatInt(f.ID, 10) + "-" + run.Occurrence,
		Mode: f.Mode, Body: resp.Body, MaxRows: r.limits.MaxRows, MaxBytes: r.limits.MaxBytes})
	var fe *stockfile.Error
	switch {
	case errors.As(err, &fe):
		return fail("the feed cannot be read, nothing applied: %s", fe.Message)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fail("the feed was not read within %s, nothing applied", r.cfg.Timeout)
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) {
			return fail("the feed's answer broke off, nothing applied: %v", err)
		}
		return "", "", err
	}
	run.Result, run.ImportID = Imported, im.ID
	return resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), nil
}
