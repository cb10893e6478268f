package api

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/imports"
	"github.com/flashhold/flashhold/stockfile"
)

// Imports is what the API needs of the vendors' asynchronous imports (package imports).
type Imports interface {
	Create(ctx context.Context, up imports.Upload) (imports.Import, bool, error)
	Get(ctx context.Context, vendor, id string) (imports.Import, error)
	List(ctx context.Context, vendor, before string, limit int) ([]imports.Import, error)
	Rows(ctx context.Context, id, status string, after int64, limit int) ([]imports.RowReport, error)
	Decide(ctx context.Context, vendor, id string, approve bool, by string) (imports.Import, error)
}

// WithImports enables the asynchronous imports, within cfg's limits.
func WithImports(st Imports, cfg imports.Config) Option {
	return func(s *Server) { s.imports, s.importCfg = st, cfg }
}

// ImportRows applies a batch of an import's rows as the vendor API would apply each change
// (the pool must be the vendor's; guardrails may quarantine a change), the changes of any one
// pool in the order given: the runner's imports.Apply. A change the API would answer 503
// (Redis or Postgres unavailable, a partition fenced) or 409 request_in_progress makes it an
// error: the batch is sent again later.
func (s *Server) ImportRows(ctx context.Context, vendor string, reqs []engine.AdjustRequest) ([]imports.Outcome, error) {
	out := make([]imports.Outcome, len(reqs))
	guarded := false
	if s.guard != nil {
		l, err := s.limits(ctx, vendor)
		if err != nil {
			return nil, err
		}
		guarded = !l.Off()
	}
	if !guarded {
		for i, r := range s.eng.AdjustMany(ctx, vendor, reqs) {
			o, err := outcomeOf(r.Result, r.Err)
			if err != nil {
				return nil, err
			}
			out[i] = o
		}
		return out, nil
	}
	// Each change is checked against the pool as the changes before it left it: the changes of
	// one pool one at a time, pools side by side.
	byPool := map[engine.PoolKey][]int{}
	var pools []engine.PoolKey
	for i, r := range reqs {
		k := engine.PoolKey{Location: r.Location, SKU: r.SKU}
		if _, seen := byPool[k]; !seen {
			pools = append(pools, k)
		}
		byPool[k] = append(byPool[k], i)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	work := make(chan engine.PoolKey)
	for range min(s.importCfg.Workers, len(pools)) {
		wg.Go(func() {
			for k := range work {
				for _, i := range byPool[k] {
					res, err := s.applyChange(ctx, vendor, reqs[i])
					o, err := outcomeOf(res, err)
					if err != nil {
						mu.Lock()
						first = cmp.Or(first, err)
						mu.Unlock()
						break
					}
					out[i] = o
				}
			}
		})
	}
	for _, k := range pools {
		work <- k
	}
	close(work)
	wg.Wait()
	return out, first
}

// outcomeOf is what became of a row from its change's result or error; the error is one the
// row must be tried again for.
func outcomeOf(res *engine.AdjustResult, err error) (imports.Outcome, error) {
	var q *quarantined
	if errors.As(err, &q) {
		return imports.Outcome{Status: imports.Quarantined, Code: "quarantined", Message: q.item.Rule, QuarantineID: q.item.ID}, nil
	}
	if err != nil {
		ae := toError(err)
		if ae.Status >= 500 || ae.Code == "request_in_progress" {
			return imports.Outcome{}, err
		}
		return imports.Outcome{Status: imports.RowRejected, Code: ae.Code, Message: ae.Message}, nil
	}
	if res.Before == res.After {
		return imports.Outcome{Status: imports.Unchanged}, nil
	}
	return imports.Outcome{Status: imports.Applied}, nil
}

func (s *Server) importCall(c *call) (string, error) {
	return c.ledgerVendor(s.imports != nil, "imports")
}

// importView is an import as the API shows it.
type importView struct {
	imports.Import
	Progress float64 `json:"progress"`
	RowsDone int64   `json:"rows_done"`
	Link     string  `json:"href"`
}

func viewOf(im imports.Import) importView {
	return importView{Import: im, Progress: im.Progress(), RowsDone: im.Done(),
		Link: "/v1/vendors/" + im.Vendor + "/inventory/imports/" + im.ID}
}

// createImport serves POST /v1/vendors/{vendor}/inventory/imports: the body (CSV or JSON, as
// for bulk_update) is read as it streams in, kept, and answered 202 with the import's id; it
// is applied in the background.
func (s *Server) createImport(c *call) error {
	vendor, err := s.importCall(c)
	if err != nil {
		return err
	}
	format, err := stockfile.Format(string(c.rc.Request.Header.ContentType()))
	if err != nil {
		c.rc.SetConnectionClose()
		return err
	}
	body := bodyStream(c.rc)
	if body == nil {
		body = bytes.NewReader(c.rc.PostBody())
	}
	// Receiving a large file takes longer than a request may: the upload has its own deadline.
	ctx, cancel := context.WithTimeout(s.base, s.importCfg.UploadTimeout)
	defer cancel()
	im, replayed, err := s.imports.Create(ctx, imports.Upload{Vendor: vendor, Actor: c.actor(), Format: format, Source: "upload",
		IdempotencyKey: string(c.rc.Request.Header.Peek("Idempotency-Key")), Body: body,
		MaxRows: s.importCfg.MaxRows, MaxBytes: s.importCfg.MaxBytes})
	if err != nil || replayed {
		// The rest of the body, if any, is not read: the connection cannot be used again.
		c.rc.SetConnectionClose()
	}
	if err != nil {
		return err
	}
	if replayed {
		c.rc.Response.Header.Set("Idempotent-Replayed", "true")
	}
	v := viewOf(im)
	c.rc.Response.Header.Set("Location", v.Link)
	return c.json(http.StatusAccepted, v)
}

// getImport serves GET …/imports/{id}: status, counts, progress, and a page of the rows not
// applied (?rows=rejected|quarantined, ?rows_after=<row>, ?rows_limit=).
func (s *Server) getImport(c *call) error {
	vendor, err := s.importCall(c)
	if err != nil {
		return err
	}
	status := c.query("rows")
	switch status {
	case "", imports.RowRejected, imports.Quarantined:
	default:
		return errorf(http.StatusUnprocessableEntity, "invalid", "rows must be rejected or quarantined")
	}
	limit, err := intQuery(c, "rows_limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	var after int64
	if a := c.query("rows_after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			return errorf(http.StatusBadRequest, "bad_request", "rows_after must be a row number")
		}
	}
	im, err := s.imports.Get(c.ctx, vendor, c.param("id"))
	if err != nil {
		return err
	}
	rows, err := s.imports.Rows(c.ctx, im.ID, status, after, limit)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []imports.RowReport{}
	}
	body := map[string]any{"import": viewOf(im), "rows": rows}
	if len(rows) == limit {
		body["next_rows_after"] = rows[len(rows)-1].Row
	}
	return c.json(http.StatusOK, body)
}

// listImports serves GET …/imports: the vendor's imports, newest first (?before=<id>, ?limit=).
func (s *Server) listImports(c *call) error {
	vendor, err := s.importCall(c)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 50, 1, 500)
	if err != nil {
		return err
	}
	list, err := s.imports.List(c.ctx, vendor, c.query("before"), limit)
	if err != nil {
		return err
	}
	views := make([]importView, len(list))
	for i, im := range list {
		views[i] = viewOf(im)
	}
	body := map[string]any{"vendor_id": vendor, "imports": views}
	if len(list) == limit {
		body["next_before"] = list[len(list)-1].ID
	}
	return c.json(http.StatusOK, body)
}

// decideImport serves POST …/imports/{id}/approve and …/reject, for an import the whole-file
// check held: approved, it is applied (without the check); rejected, nothing of it is.
func (s *Server) decideImport(approve bool) func(*call) error {
	return func(c *call) error {
		vendor, err := s.importCall(c)
		if err != nil {
			return err
		}
		im, err := s.imports.Decide(c.ctx, vendor, c.param("id"), approve, c.actor())
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, viewOf(im))
	}
}
