package clientcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a pool the workload buys from.
type Pool struct {
	Location, SKU string
	// Region, when set, names the region the workload reserves the SKU from (allocation may
	// take it from this location or another of the region's).
	Region string
	Shards int
	Limit  int64 // per-customer limit (0: none)
	Stock  int64 // its stock when the workload starts
	// Backorders, when set, makes the pool take backorders up to that many units.
	Backorders int64
}

// Send is one HTTP exchange of an operation.
type Send struct {
	At         time.Time
	Status     int // 0: no answer (connection refused, reset, timed out)
	Body       []byte
	Err        string
	RetryAfter string        // the answer's Retry-After header
	Took       time.Duration // from sending to the whole answer
}

func (s Send) code() string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(s.Body, &b)
	return b.Error.Code
}

// Op is one request as a client meant it: every send of it until it got a definite answer
// (anything but no answer, 503, 429 or 409 request_in_progress), or gave up.
type Op struct {
	Kind   string // reserve, commit, release, extend, adjust, restock, spoil
	Key    string // API key sent with it
	IdemOf string // reserve: its Idempotency-Key; vendor changes: the transaction id
	Body   []byte
	Hold   string // commit, release, extend: the hold
	Sends  []Send
	Final  *Send // nil: no definite answer
}

// retryable says whether a client sends the request again.
func retryable(s Send) bool {
	return s.Status == 0 || s.Status == http.StatusServiceUnavailable || s.Status == http.StatusTooManyRequests ||
		s.Status == http.StatusConflict && s.code() == "request_in_progress"
}

// Workload drives the service and records every operation.
type Workload struct {
	URL   string
	Pools []Pool
	// Patience is how long a client keeps sending one request without a definite answer
	// (restarts of serve and Redis fall within it).
	Patience time.Duration
	// RestockMax is the most units one restock adds (default 10).
	RestockMax int
	// Refill, when set, has the vendor restock a pool it finds with fewer units available
	// back up to Refill, so that a long run keeps the same mix of holds and refusals.
	Refill int64
	// Pace is how long each buyer waits between its requests (0: none).
	Pace time.Duration
	// Spread, when set, sends the requests in turn to these base URLs instead of URL, as a
	// load balancer over several instances would (a retry goes to the next one).
	Spread []string

	http *http.Client
	mu   sync.Mutex
	ops  []*Op
	seq  atomic.Int64
	turn atomic.Int64
}

// NewWorkload returns a workload on url.
func NewWorkload(url string, pools []Pool) *Workload {
	return &Workload{URL: url, Pools: pools, Patience: 60 * time.Second, RestockMax: 10,
		http: &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// Ops returns every operation recorded so far.
func (w *Workload) Ops() []*Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Op(nil), w.ops...)
}

func (w *Workload) record(op *Op) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

// do sends op until it gets a definite answer or the workload's patience runs out.
func (w *Workload) do(ctx context.Context, method, path string, op *Op) {
	w.record(op)
	backoff := 50 * time.Millisecond
	for deadline := time.Now().Add(w.Patience); ; {
		s := w.send(ctx, method, path, op)
		op.Sends = append(op.Sends, s)
		if !retryable(s) {
			op.Final = &op.Sends[len(op.Sends)-1]
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

func (w *Workload) send(ctx context.Context, method, path string, op *Op) Send {
	base := w.URL
	if n := int64(len(w.Spread)); n > 0 {
		base = w.Spread[w.turn.Add(1)%n]
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(op.Body))
	if err != nil {
		return Send{At: time.Now(), Err: err.Error()}
	}
	req.Header.Set("X-API-Key", op.Key)
	if op.Kind == "reserve" {
		req.Header.Set("Idempotency-Key", op.IdemOf)
	}
	at := time.Now()
	resp, err := w.http.Do(req)
	if err != nil {
		return Send{At: at, Err: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Send{At: at, Status: resp.StatusCode, Body: body, RetryAfter: resp.Header.Get("Retry-After"), Took: time.Since(at)}
}

// hold is what a 201 answer told (Qty: the units of a hold of one part, as reduced since).
type hold struct {
	Qty       int64  `json:"-"`
	ID        string `json:"hold_id"`
	ExpiresAt int64  `json:"expires_at_ms"`
	Parts     []struct {
		Location, SKU string
		Qty           int64 `json:"qty"`
		Backordered   bool  `json:"backordered"`
	} `json:"parts"`
}

// Run runs clients concurrent buyers for d (one of them also restocks and spoils now and
// then), each buying from the pools, committing, releasing, extending or abandoning its
// holds, sending some requests twice at once and some again after their answer.
// Requests already sent when d is over are sent until they get their answer.
func (w *Workload) Run(ctx context.Context, clients int, d time.Duration) {
	stop, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() { w.buyer(ctx, stop, c) })
	}
	wg.Go(func() { w.vendor(ctx, stop) })
	wg.Wait()
}

func (w *Workload) buyer(ctx, stop context.Context, c int) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
	key := ShopKey
	if c%2 == 1 {
		key = OtherKey
	}
	var mine, left []hold // held now; left to expire
	for stop.Err() == nil {
		if w.Pace > 0 {
			time.Sleep(w.Pace)
		}
		switch n := rng.IntN(10); {
		case n == 0 && len(left) > 0 && time.Now().UnixMilli() > left[0].ExpiresAt-200:
			// Back, about when (or after) the hold left alone expired: too late, or just in time.
			h := left[0]
			left = left[1:]
			if rng.IntN(2) == 0 {
				w.end(ctx, key, h.ID, "commit", nil)
			} else {
				w.end(ctx, key, h.ID, "release", nil)
			}
		case n < 6 || len(mine) == 0:
			if h, ok := w.reserve(ctx, rng, key, c); ok {
				mine = append(mine, h)
			}
		default:
			i := rng.IntN(len(mine))
			h := mine[i]
			mine = append(mine[:i], mine[i+1:]...)
			one := len(h.Parts) == 1 && h.Qty > 1 // a hold of one part can be changed
			switch rng.IntN(6) {
			case 4: // one unit fewer
				if one {
					body := fmt.Appendf(nil, `{"qty": %d}`, h.Qty-1)
					if w.change(ctx, key, h.ID, "adjust", body, rng.IntN(4) == 0) {
						h.Qty--
					}
				}
				mine = append(mine, h)
			case 5: // buy all but one of them
				if one {
					w.end(ctx, key, h.ID, "commit", fmt.Appendf(nil, `{"qty": %d}`, h.Qty-1))
				} else {
					w.end(ctx, key, h.ID, "commit", nil)
				}
			case 0:
				w.end(ctx, key, h.ID, "commit", nil)
			case 1:
				w.end(ctx, key, h.ID, "release", nil)
			case 2:
				w.end(ctx, key, h.ID, "extend", []byte(`{"ttl_ms": 3000}`))
				mine = append(mine, h)
			default: // left alone: it expires, unless its buyer comes back in time
				left = append(left, h)
			}
		}
	}
}

func (w *Workload) reserve(ctx context.Context, rng *rand.Rand, key string, c int) (hold, bool) {
	item := func(p Pool) map[string]any {
		if p.Region != "" {
			return map[string]any{"region": p.Region, "sku": p.SKU, "qty": 1 + rng.IntN(3), "allow_split": rng.IntN(2) == 0}
		}
		return map[string]any{"location": p.Location, "sku": p.SKU, "qty": 1 + rng.IntN(3)}
	}
	body := map[string]any{"customer_id": fmt.Sprintf("cust-%d", rng.IntN(40)), "ttl_ms": 1000 + rng.IntN(3000)}
	if rng.IntN(5) == 0 && len(w.Pools) > 1 { // a cart of two pools
		i, j := rng.IntN(len(w.Pools)), rng.IntN(len(w.Pools)-1)
		if j >= i {
			j++
		}
		if a, b := w.Pools[i], w.Pools[j]; a.Region != "" && a.Region == b.Region && a.SKU == b.SKU {
			j = i // one line: the region's SKU once
		}
		body["items"] = []map[string]any{item(w.Pools[i])}
		if j != i {
			body["items"] = append(body["items"].([]map[string]any), item(w.Pools[j]))
		}
	} else {
		for k, v := range item(w.Pools[rng.IntN(len(w.Pools))]) {
			body[k] = v
		}
	}
	raw, _ := json.Marshal(body)
	op := &Op{Kind: "reserve", Key: key, IdemOf: fmt.Sprintf("k%d-%d", c, w.seq.Add(1)), Body: raw}
	switch rng.IntN(10) {
	case 0: // the same request twice at once
		twin := *op
		var wg sync.WaitGroup
		wg.Go(func() { w.do(ctx, "POST", "/v1/holds", &twin) })
		w.do(ctx, "POST", "/v1/holds", op)
		wg.Wait()
	case 1: // and again after its answer
		w.do(ctx, "POST", "/v1/holds", op)
		again := *op
		again.Sends, again.Final = nil, nil
		w.do(ctx, "POST", "/v1/holds", &again)
	default:
		w.do(ctx, "POST", "/v1/holds", op)
	}
	if op.Final == nil || op.Final.Status != http.StatusCreated {
		return hold{}, false
	}
	var h hold
	if json.Unmarshal(op.Final.Body, &h) != nil {
		return hold{}, false
	}
	if len(h.Parts) == 1 {
		h.Qty = h.Parts[0].Qty
	}
	return h, true
}

func (w *Workload) end(ctx context.Context, key, id, what string, body []byte) {
	w.do(ctx, "POST", "/v1/holds/"+id+"/"+what, &Op{Kind: what, Key: key, Hold: id, Body: body})
}

// change sends a change of a hold (twice at once when twice), and says whether it was
// answered 200.
func (w *Workload) change(ctx context.Context, key, id, what string, body []byte, twice bool) bool {
	op := &Op{Kind: what, Key: key, Hold: id, Body: body}
	if twice {
		twin := *op
		var wg sync.WaitGroup
		wg.Go(func() { w.do(ctx, "POST", "/v1/holds/"+id+"/"+what, &twin) })
		w.do(ctx, "POST", "/v1/holds/"+id+"/"+what, op)
		wg.Wait()
	} else {
		w.do(ctx, "POST", "/v1/holds/"+id+"/"+what, op)
	}
	return op.Final != nil && op.Final.Status == http.StatusOK
}

func (w *Workload) vendor(ctx, stop context.Context) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 99))
	for stop.Err() == nil {
		select {
		case <-stop.Done():
			return
		case <-time.After(time.Duration(200+rng.IntN(300)) * time.Millisecond):
		}
		p := w.Pools[rng.IntN(len(w.Pools))]
		kind, qty := "RESTOCK", 1+rng.IntN(w.RestockMax)
		if rng.IntN(3) == 0 {
			kind, qty = "SPOILAGE", -(1 + rng.IntN(3))
		}
		if avail, ok := w.available(ctx, p); ok && avail < w.Refill {
			kind, qty = "RESTOCK", int(w.Refill-avail)
		}
		tx := fmt.Sprintf("tx-%d", w.seq.Add(1))
		raw, _ := json.Marshal(map[string]any{"location": p.Location, "change_type": kind, "quantity_change": qty, "transaction_id": tx})
		w.do(ctx, "POST", "/v1/vendors/"+Vendor+"/inventory/"+p.SKU+"/update", &Op{Kind: kindOf(kind), Key: VendorKey, IdemOf: tx, Body: raw})
	}
}

// available reads the units of p available now, as its vendor sees them.
func (w *Workload) available(ctx context.Context, p Pool) (int64, bool) {
	if w.Refill == 0 {
		return 0, false
	}
	var page struct {
		Items []struct {
			Location  string `json:"location"`
			SKU       string `json:"sku"`
			Available int64  `json:"stock_quantity"`
		} `json:"items"`
	}
	if status, _ := get(ctx, w.URL+"/v1/vendors/"+Vendor+"/inventory?limit=1000", VendorKey, &page); status != http.StatusOK {
		return 0, false
	}
	for _, it := range page.Items {
		if it.Location == p.Location && it.SKU == p.SKU {
			return it.Available, true
		}
	}
	return 0, false
}

func kindOf(change string) string {
	if change == "RESTOCK" {
		return "restock"
	}
	return "spoil"
}
