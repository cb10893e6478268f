package clientcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Report is what Check found.
type Report struct {
	Reserves, Holds, Refusals, Commits, Releases, VendorChanges int
	Reductions, PartialCommits                                  int
	Backorders, Fills                                           int // parts told backordered; FILLED events
	Unanswered                                                  int // operations without a definite answer
	Events                                                      int
	Violations                                                  []string
}

func (r *Report) violate(format string, args ...any) {
	if len(r.Violations) < 200 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

// told is what clients were told of one hold.
type told struct {
	at        time.Time // when the hold was given
	owner     string
	hold      hold
	committed bool // a commit was answered 200
	released  bool // a release was answered 200
	notSold   bool // a commit was answered 410 or 409 (not sold whole)
	extended  int64
	sold      int64          // a commit of some of its units (qty) was answered 200: those units
	sent      map[int64]bool // reductions sent (to qty), answered or not
	reduced   map[int64]bool // reductions answered 200
}

// sentAdjust notes a reduction sent for the hold (to the qty in its body).
func (t *told) sentAdjust(op *Op) {
	var asked struct {
		Qty int64 `json:"qty"`
	}
	json.Unmarshal(op.Body, &asked)
	if t.sent == nil {
		t.sent, t.reduced = map[int64]bool{}, map[int64]bool{}
	}
	t.sent[asked.Qty] = true
}

// Check checks every operation's answers against the service as it stands: the holds (as
// their owners read them), the events (admin, from the ledger), the pools' counts, and a
// `flashhold reconcile` run. Call it with traffic stopped, once every hold has expired.
func Check(ctx context.Context, s *Service, pools []Pool, ops []*Op) *Report {
	rep := &Report{}
	holds := map[string]*told{}
	answers := map[string][]string{}        // API key and idempotency key -> definite answers
	vendorTold := map[string]vendorChange{} // transaction id -> the change told
	for _, op := range ops {
		if op.Final == nil {
			rep.Unanswered++
			rep.violate("%s %s %s got no definite answer in %d sends (last: %d %s)", op.Kind, op.IdemOf, op.Hold,
				len(op.Sends), op.Sends[len(op.Sends)-1].Status, op.Sends[len(op.Sends)-1].Err)
			if t := holds[op.Hold]; t != nil && op.Kind == "adjust" {
				t.sentAdjust(op) // it may have been made
			}
			continue
		}
		switch op.Kind {
		case "reserve":
			rep.Reserves++
			for _, s := range op.Sends {
				if retryable(s) {
					continue
				}
				a := fmt.Sprint(s.Status, " ", s.code())
				if s.Status == http.StatusCreated {
					var h hold
					json.Unmarshal(s.Body, &h)
					if len(h.Parts) == 1 {
						h.Qty = h.Parts[0].Qty
					}
					a = "201 " + h.ID
					if holds[h.ID] == nil {
						holds[h.ID] = &told{at: s.At, owner: op.Key, hold: h}
						rep.Holds++
						for _, p := range h.Parts {
							if p.Backordered {
								rep.Backorders++
							}
						}
					}
				} else if s.Status == http.StatusConflict {
					rep.Refusals++
				}
				answers[op.Key+" "+op.IdemOf] = append(answers[op.Key+" "+op.IdemOf], a)
			}
		case "commit", "release", "extend", "adjust":
			t := holds[op.Hold]
			if t == nil {
				rep.violate("%s of %s, a hold no client was given", op.Kind, op.Hold)
				continue
			}
			var asked struct {
				Qty int64 `json:"qty"`
			}
			json.Unmarshal(op.Body, &asked)
			st, code := op.Final.Status, op.Final.code()
			switch {
			case op.Kind == "adjust":
				t.sentAdjust(op)
				if st == http.StatusOK {
					t.reduced[asked.Qty] = true
					rep.Reductions++
				} else if st != http.StatusGone && code != "hold_backordered" {
					rep.violate("adjust of hold %s to %d answered %d: %s", op.Hold, asked.Qty, st, op.Final.Body)
				}
			case op.Kind == "commit" && st == http.StatusOK:
				t.committed = true
				if asked.Qty > 0 {
					t.sold = asked.Qty
					rep.PartialCommits++
				}
				rep.Commits++
			case op.Kind == "commit" && (st == http.StatusGone || code == "partial_commit"):
				t.notSold = true
			case op.Kind == "release" && st == http.StatusOK:
				t.released = true
				rep.Releases++
			case op.Kind == "release" && code == "hold_committed":
				t.committed = true
			case op.Kind == "extend" && st == http.StatusOK:
				var b struct {
					Exp int64 `json:"expires_at_ms"`
				}
				json.Unmarshal(op.Final.Body, &b)
				t.extended = max(t.extended, b.Exp)
			case st >= 500 || st == http.StatusNotFound:
				rep.violate("%s of hold %s answered %d: %s", op.Kind, op.Hold, st, op.Final.Body)
			}
		case "restock", "spoil":
			rep.VendorChanges++
			var b struct {
				Location string `json:"location"`
				SKU      string `json:"sku"`
				Prev     int64  `json:"previous_stock"`
				New      int64  `json:"new_stock"`
			}
			if op.Final.Status == http.StatusOK && json.Unmarshal(op.Final.Body, &b) == nil {
				vendorTold[op.IdemOf] = vendorChange{b.Location + "|" + b.SKU, b.New - b.Prev}
			} else if op.Final.Status != http.StatusConflict {
				rep.violate("%s %s answered %d: %s", op.Kind, op.IdemOf, op.Final.Status, op.Final.Body)
			}
		}
	}
	// The same request with the same key got the same answer every time.
	for k, as := range answers {
		for _, a := range as[1:] {
			if a != as[0] {
				rep.violate("request %s was answered %q and %q", k, as[0], a)
				break
			}
		}
	}
	for id, t := range holds {
		if t.committed && t.released {
			rep.violate("hold %s was told both committed and released", id)
		}
	}
	checkHolds(ctx, s, rep, holds)
	vendorDelta := checkEvents(ctx, s, rep, holds, vendorTold)
	checkPools(ctx, s, rep, pools, vendorDelta)
	if code, out := s.Flashhold(ctx, "reconcile", "--out", "reconcile-report"); code != 0 {
		rep.violate("flashhold reconcile exited %d: %s", code, lastLines(out, 20))
	}
	return rep
}

// checkHolds reads every hold a client was given, as its owner, and compares it with what
// the client was told.
// Open backorders are not held, so the check may start while some holds are still open: each
// hold's status is judged by the clock around its own read (the server reads it in between).
func checkHolds(ctx context.Context, s *Service, rep *Report, holds map[string]*told) {
	for id, t := range holds {
		if s.Remember > 0 && time.Since(t.at) > s.Remember-5*time.Second {
			continue // its record may be forgotten by now; the ledger still shows it (checkEvents)
		}
		var got struct {
			Status    string `json:"status"`
			ExpiresAt int64  `json:"expires_at_ms"`
		}
		before := time.Now().UnixMilli()
		status, body := get(ctx, s.URL+"/v1/holds/"+id, t.owner, &got)
		after := time.Now().UnixMilli()
		if status != http.StatusOK {
			rep.violate("hold %s, given to a client at %s, reads %d: %s", id, t.at.Format("15:04:05.000"), status, body)
			continue
		}
		switch {
		case t.committed && got.Status != "COMMITTED":
			rep.violate("hold %s was told committed and is %s", id, got.Status)
		case t.released && got.Status != "RELEASED":
			rep.violate("hold %s (given at %s) was told released and is %s", id, t.at.Format("15:04:05.000"), got.Status)
		case t.notSold && got.Status == "COMMITTED":
			rep.violate("hold %s was told not sold and is COMMITTED", id)
		case !t.committed && !t.released && got.Status == "ACTIVE" && before > max(t.hold.ExpiresAt, t.extended)+2000:
			rep.violate("hold %s is ACTIVE past its expiry", id)
		case !t.committed && !t.released && got.Status == "EXPIRED" && after < t.hold.ExpiresAt:
			rep.violate("hold %s is EXPIRED before its expiry: told %d, read at %d", id, t.hold.ExpiresAt, after)
		}
		if t.extended > 0 && got.ExpiresAt < t.extended {
			rep.violate("hold %s was extended to %d and expires at %d", id, t.extended, got.ExpiresAt)
		}
	}
}

type event struct {
	Partition int    `json:"partition"`
	Seq       int64  `json:"seq"`
	Type      string `json:"type"`
	Location  string `json:"location"`
	SKU       string `json:"sku"`
	Hold      string `json:"hold"`
	Qty       int64  `json:"qty"`
	Idem      string `json:"idem"`
	Delta     int64  `json:"delta"`
}

// vendorChange is a stock change a vendor was told was made.
type vendorChange struct {
	pool  string // location|sku
	delta int64
}

// checkEvents reads every event from the ledger (through the events API, following each
// partition) and checks that
// each part was reserved once and ended at most once, that every part of a hold a client
// was given has its RESERVED, that sales told are sold, that no part no client was told
// of was ever sold, and that each vendor change told has events that make exactly it. It
// returns the net of the vendor changes told that the ledger holds, by pool.
func checkEvents(ctx context.Context, s *Service, rep *Report, holds map[string]*told, vendorTold map[string]vendorChange) map[string]int64 {
	// Each partition followed as a consumer of the feed would: until a page brings nothing.
	var evs []event
	for part := range partitions {
		for after := ""; ; {
			var page struct {
				Events []event `json:"events"`
				Next   string  `json:"next_after"`
			}
			status, body := get(ctx, fmt.Sprintf("%s/v1/inventory/events?limit=1000&partition=%d&after=%s", s.URL, part, after), AdminKey, &page)
			if status != http.StatusOK || page.Next == "" {
				rep.violate("events API, following partition %d, answered %d: %s", part, status, body)
				return nil
			}
			evs = append(evs, page.Events...)
			if len(page.Events) == 0 {
				break
			}
			after = page.Next
		}
	}
	rep.Events = len(evs)
	reserved, ended := map[string]int{}, map[string][]string{}
	placedAs := map[string]string{} // part -> RESERVED or BACKORDERED
	queued := map[string][]string{} // pool -> its backordered parts, in the order placed
	filled := map[string][]string{} // pool -> its FILLED parts, in order
	fills := map[string]int{}       // part -> its FILLED events
	reduced := map[string][]int64{} // part -> the units of its REDUCED events
	sold := map[string]int64{}      // part -> the units its COMMITTED event sold
	made := map[string]int64{}      // vendor transaction -> the net its events made
	moved := map[string][]event{}   // transfer id -> its TRANSFER_OUT and TRANSFER_IN
	for _, ev := range evs {
		switch ev.Type {
		case "RESTOCKED", "SPOILED", "ADJUSTED":
			made[ev.Idem] += ev.Delta
		case "TRANSFER_OUT", "TRANSFER_IN":
			moved[ev.Idem] = append(moved[ev.Idem], ev)
		}
		if ev.Hold == "" {
			continue
		}
		switch ev.Type {
		case "RESERVED", "BACKORDERED":
			reserved[ev.Hold]++
			placedAs[ev.Hold] = ev.Type
			if ev.Type == "BACKORDERED" {
				queued[ev.Location+"|"+ev.SKU] = append(queued[ev.Location+"|"+ev.SKU], ev.Hold)
			}
		case "FILLED":
			rep.Fills++
			fills[ev.Hold]++
			filled[ev.Location+"|"+ev.SKU] = append(filled[ev.Location+"|"+ev.SKU], ev.Hold)
		case "REDUCED":
			reduced[ev.Hold] = append(reduced[ev.Hold], ev.Qty)
		case "COMMITTED", "RELEASED", "EXPIRED", "VOIDED":
			ended[ev.Hold] = append(ended[ev.Hold], ev.Type)
			if ev.Type == "COMMITTED" {
				sold[ev.Hold] = ev.Qty
			}
		}
	}
	toldParts := map[string]string{} // part -> hold
	for id, t := range holds {
		for i, part := range partsOf(id) {
			toldParts[part] = id
			if reserved[part] != 1 {
				rep.violate("part %s of hold %s (given to a client) has %d RESERVED or BACKORDERED events", part, id, reserved[part])
			}
			if i < len(t.hold.Parts) && t.hold.Parts[i].Backordered != (placedAs[part] == "BACKORDERED") {
				rep.violate("part %s of hold %s was told backordered: %v; it was placed %s", part, id, t.hold.Parts[i].Backordered, placedAs[part])
			}
			if t.committed && (len(ended[part]) != 1 || ended[part][0] != "COMMITTED") {
				rep.violate("part %s of hold %s was told sold; its events end %v", part, id, ended[part])
			}
			for _, e := range ended[part] {
				if e == "VOIDED" {
					rep.violate("part %s of hold %s, given to a client, was voided", part, id)
				}
			}
		}
		checkChanges(rep, id, t, reduced, sold)
	}
	checkFills(rep, queued, filled, fills, ended, placedAs)
	for part, n := range reserved {
		if n > 1 {
			rep.violate("part %s has %d RESERVED events", part, n)
		}
		if len(ended[part]) > 1 {
			rep.violate("part %s ended %d times: %v", part, len(ended[part]), ended[part])
		}
		if _, ok := toldParts[part]; !ok {
			for _, e := range ended[part] {
				if e == "COMMITTED" || e == "RELEASED" {
					rep.violate("part %s, of no hold any client was given, was %s", part, e)
				}
			}
		}
	}
	// A transfer between shards is one TRANSFER_OUT and one TRANSFER_IN of the same units
	// (every transfer is complete by now: nothing is held, the rebalancer has run).
	for id, evs := range moved {
		var out, in int64
		var types []string
		for _, ev := range evs {
			types = append(types, fmt.Sprintf("%s %+d on %d/%d", ev.Type, ev.Delta, ev.Partition, ev.Seq))
			if ev.Type == "TRANSFER_OUT" {
				out -= ev.Delta
			} else {
				in += ev.Delta
			}
		}
		if len(evs) != 2 || out != in {
			rep.violate("transfer %s moved units by %v", id, types)
		}
	}
	vendorDelta := map[string]int64{}
	for tx, c := range vendorTold {
		got, ok := made[Vendor+":"+tx]
		if !ok || got != c.delta {
			rep.violate("vendor change %s was told %+d on %s; its events make %+d", tx, c.delta, c.pool, got)
			continue
		}
		vendorDelta[c.pool] += c.delta
	}
	return vendorDelta
}

// checkFills checks that each backordered part was filled at most once, that nothing else
// was filled, and that each pool's fills came in the order its backorders were placed: a
// backorder passed over was given back (released, expired or voided) and never filled.
func checkFills(rep *Report, queued, filled map[string][]string, fills map[string]int, ended map[string][]string,
	placedAs map[string]string) {
	for part, n := range fills {
		if n > 1 || placedAs[part] != "BACKORDERED" {
			rep.violate("part %s (placed %q) was filled %d times", part, placedAs[part], n)
		}
	}
	gone := func(part string) bool {
		for _, e := range ended[part] {
			if e != "COMMITTED" {
				return true
			}
		}
		return false
	}
	for pool, order := range filled {
		q, i := queued[pool], 0
		for _, part := range order {
			for i < len(q) && q[i] != part {
				if fills[q[i]] > 0 || !gone(q[i]) {
					rep.violate("pool %s: backorder %s was passed over by the fill of %s", pool, q[i], part)
				}
				i++
			}
			if i == len(q) {
				rep.violate("pool %s: %s was filled out of the order the backorders were placed", pool, part)
				break
			}
			i++
		}
	}
}

// checkChanges checks the reductions and the sale of a hold against what its client was told:
// one REDUCED event for each reduction told (and none beyond those sent), and a COMMITTED
// event of the units the client was told it bought.
func checkChanges(rep *Report, id string, t *told, reduced map[string][]int64, sold map[string]int64) {
	parts := partsOf(id)
	if len(parts) != 1 {
		return // only a hold of one part can be changed
	}
	part := parts[0]
	evs := reduced[part]
	if len(evs) < len(t.reduced) || len(evs) > len(t.sent) {
		rep.violate("hold %s: %d REDUCED events; %d reductions sent, %d told done", id, len(evs), len(t.sent), len(t.reduced))
	}
	left := t.hold.Qty
	for _, n := range evs {
		left -= n
	}
	for k := range t.reduced {
		if k < left {
			rep.violate("hold %s was told reduced to %d; its events leave %d units", id, k, left)
		}
	}
	switch {
	case !t.committed:
	case t.sold > 0 && sold[part] != t.sold:
		rep.violate("hold %s was told %d units sold; its COMMITTED event sold %d", id, t.sold, sold[part])
	case t.sold == 0 && sold[part] != left:
		rep.violate("hold %s was told sold whole; its COMMITTED event sold %d of the %d its events leave", id, sold[part], left)
	case t.sold == 0 && len(t.reduced) == len(t.sent) && len(t.sent) > 0 && left != minKey(t.reduced):
		rep.violate("hold %s was told reduced to %d and sold whole; %d units were sold", id, minKey(t.reduced), left)
	}
}

func minKey(m map[int64]bool) int64 {
	var low int64 = -1
	for k := range m {
		if low < 0 || k < low {
			low = k
		}
	}
	return low
}

// partsOf names the parts of a hold id: <token>.<attempt>_<p>.<line>.<shard>...
func partsOf(id string) []string {
	f := strings.Split(id, "_")
	var out []string
	for _, p := range f[1:] {
		ls := strings.SplitN(p, ".", 2)
		if len(ls) == 2 {
			out = append(out, f[0]+"."+ls[1])
		}
	}
	return out
}

// checkPools checks each pool's counts (from the vendor's inventory listing): nothing held
// once every hold has expired, and its units where the vendors' changes told put them.
func checkPools(ctx context.Context, s *Service, rep *Report, pools []Pool, vendorDelta map[string]int64) {
	var page struct {
		Items []struct {
			Location  string `json:"location"`
			SKU       string `json:"sku"`
			Available int64  `json:"stock_quantity"`
			Held      int64  `json:"held"`
			Committed int64  `json:"committed"`
		} `json:"items"`
	}
	if status, body := get(ctx, s.URL+"/v1/vendors/"+Vendor+"/inventory?limit=1000", VendorKey, &page); status != http.StatusOK {
		rep.violate("the vendor's inventory answered %d: %s", status, body)
		return
	}
	for _, p := range pools {
		found := false
		for _, a := range page.Items {
			if a.Location != p.Location || a.SKU != p.SKU {
				continue
			}
			found = true
			if a.Held != 0 {
				rep.violate("%s: %d units held after every hold expired", p.SKU, a.Held)
			}
			if a.Available < 0 || a.Held < 0 || a.Committed < 0 {
				rep.violate("%s: negative counts %+v", p.SKU, a)
			}
			if want := p.Stock + vendorDelta[p.Location+"|"+p.SKU]; a.Available+a.Held+a.Committed != want {
				rep.violate("%s: %d available + %d held + %d sold = %d; the initial stock and the changes vendors were told add up to %d",
					p.SKU, a.Available, a.Held, a.Committed, a.Available+a.Held+a.Committed, want)
			}
		}
		if !found {
			rep.violate("%s at %s is not in the vendor's inventory", p.SKU, p.Location)
		}
	}
}

func get(ctx context.Context, url, key string, into any) (int, string) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		json.Unmarshal(body, into)
	}
	return resp.StatusCode, string(body)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Summary is a one-line account of a report.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d reserves (%d holds, %d parts backordered), %d refusals, %d commits (%d partial), %d reductions, %d releases, %d fills, %d vendor changes, %d events, %d unanswered, %d violations",
		r.Reserves, r.Holds, r.Backorders, r.Refusals, r.Commits, r.PartialCommits, r.Reductions, r.Releases, r.Fills, r.VendorChanges, r.Events, r.Unanswered, len(r.Violations))
}

// sorted returns the violations in order (for stable output).
func (r *Report) sorted() []string {
	v := append([]string(nil), r.Violations...)
	sort.Strings(v)
	return v
}
