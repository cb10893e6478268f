package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/flashhold/flashhold/engine"
)

// EventQuery asks for one page of events in (partition, seq) order.
type EventQuery struct {
	Vendor string // "" for every vendor (admins only)
	// After is the cursor of the last event already seen: "partition:seq" ("" from the start).
	AfterPartition int
	AfterSeq       int64
	Limit          int
	// Hold, when set, asks for one hold's events (its parts'), all on one page.
	Hold []engine.PartID
	// Follow asks for partition AfterPartition alone, after AfterSeq, never past a seq not
	// yet there: a consumer that keeps Next misses no event that arrives late. Next is then
	// always the cursor to continue from.
	Follow bool
}

// EventPage is one page of events and the cursor to continue from ("" when nothing more is
// there now; poll again later with the last cursor).
type EventPage struct {
	Events []engine.Event
	Next   string
	Source string
}

// EventSource serves the events API: the Redis streams, or the Postgres ledger.
type EventSource interface {
	Events(ctx context.Context, q EventQuery) (EventPage, error)
}

// streamEvents reads events from the partitions' Redis streams (what they still hold).
type streamEvents struct {
	eng *engine.Engine
}

// maxScan bounds how many events one page may look at, so a vendor with few events among
// many does not make one request read the whole keyspace; the cursor carries on from there.
const maxScan = 20_000

func (s *streamEvents) Events(ctx context.Context, q EventQuery) (EventPage, error) {
	page := EventPage{Source: "redis"}
	if len(q.Hold) > 0 {
		return s.holdEvents(ctx, q)
	}
	if q.Follow {
		return s.follow(ctx, q)
	}
	scanned := 0
	p, after := q.AfterPartition, q.AfterSeq
	for p < s.eng.Partitions() {
		batch, err := s.eng.ReadEvents(ctx, p, after, int64(q.Limit))
		if err != nil {
			return page, err
		}
		for _, ev := range batch {
			scanned++
			after = ev.Seq
			if !s.vendorOwns(ctx, q.Vendor, ev) {
				continue
			}
			page.Events = append(page.Events, ev)
			if len(page.Events) == q.Limit {
				page.Next = fmt.Sprintf("%d:%d", p, after)
				return page, nil
			}
		}
		if scanned >= maxScan {
			page.Next = fmt.Sprintf("%d:%d", p, after)
			return page, nil
		}
		if len(batch) < q.Limit {
			p, after = p+1, 0
		}
	}
	return page, nil
}

// follow reads one partition's stream after the cursor (a stream has no missing seqs; what
// was trimmed from it, below what the consumer groups acknowledged, is no longer there).
func (s *streamEvents) follow(ctx context.Context, q EventQuery) (EventPage, error) {
	page := EventPage{Source: "redis"}
	after := q.AfterSeq
	for scanned := 0; scanned < maxScan; {
		batch, err := s.eng.ReadEvents(ctx, q.AfterPartition, after, int64(q.Limit))
		if err != nil {
			return page, err
		}
		for _, ev := range batch {
			after = ev.Seq
			if s.vendorOwns(ctx, q.Vendor, ev) {
				page.Events = append(page.Events, ev)
				if len(page.Events) == q.Limit {
					break
				}
			}
		}
		scanned += len(batch)
		if len(batch) < q.Limit || len(page.Events) == q.Limit {
			break
		}
	}
	page.Next = fmt.Sprintf("%d:%d", q.AfterPartition, after)
	return page, nil
}

// holdEvents finds a hold's events in its parts' streams (what they still hold, up to
// maxScan events per partition).
func (s *streamEvents) holdEvents(ctx context.Context, q EventQuery) (EventPage, error) {
	page := EventPage{Source: "redis"}
	want := map[int]map[string]bool{}
	for _, hp := range q.Hold {
		if want[hp.Partition] == nil {
			want[hp.Partition] = map[string]bool{}
		}
		want[hp.Partition][hp.Part] = true
	}
	for p := range s.eng.Partitions() {
		if want[p] == nil {
			continue
		}
		for after, scanned := int64(0), 0; scanned < maxScan; {
			batch, err := s.eng.ReadEvents(ctx, p, after, 1000)
			if err != nil || len(batch) == 0 {
				if err != nil {
					return page, err
				}
				break
			}
			for _, ev := range batch {
				if want[p][ev.Hold] && s.vendorOwns(ctx, q.Vendor, ev) {
					page.Events = append(page.Events, ev)
				}
			}
			scanned += len(batch)
			after = batch[len(batch)-1].Seq
		}
	}
	return page, nil
}

// vendorOwns says whether ev is about a pool of vendor ("" owns everything).
func (s *streamEvents) vendorOwns(ctx context.Context, vendor string, ev engine.Event) bool {
	if vendor == "" {
		return true
	}
	pc, err := s.eng.Pool(ctx, ev.Location, ev.SKU)
	return err == nil && pc.Vendor == vendor
}

func parseCursor(s string) (int, int64, error) {
	if s == "" {
		return 0, 0, nil
	}
	ps, ss, ok := strings.Cut(s, ":")
	p, err1 := strconv.Atoi(ps)
	seq, err2 := strconv.ParseInt(ss, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || seq < 0 {
		return 0, 0, errorf(http.StatusBadRequest, "bad_request", "after must be a cursor \"partition:seq\" from next_after")
	}
	return p, seq, nil
}

type eventJSON struct {
	EventID string `json:"event_id"`
	ItemID  string `json:"item_id"`
	engine.Event
}

func (s *Server) inventoryEvents(c *call) error {
	vendor := c.query("vendor_id")
	if c.key.Role == RoleVendor {
		if vendor == "" {
			vendor = c.key.Vendor
		}
		if err := c.vendorScope(vendor); err != nil {
			return err
		}
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	switch c.query("kind") {
	case "", "inventory":
	case "alerts":
		return s.alertEvents(c, vendor, limit)
	default:
		return errorf(http.StatusUnprocessableEntity, "invalid", "kind must be inventory or alerts")
	}
	p, seq, err := parseCursor(c.query("after"))
	if err != nil {
		return err
	}
	q := EventQuery{Vendor: vendor, AfterPartition: p, AfterSeq: seq, Limit: limit}
	if ps := c.query("partition"); ps != "" {
		// Following one partition: after is that partition's cursor ("partition:seq", or
		// nothing from its start); not with hold_id.
		n, err := strconv.Atoi(ps)
		if err != nil || n < 0 || n >= s.eng.Partitions() {
			return errorf(http.StatusUnprocessableEntity, "invalid", "partition must be 0..%d", s.eng.Partitions()-1)
		}
		if c.query("hold_id") != "" {
			return errorf(http.StatusUnprocessableEntity, "invalid", "give partition or hold_id, not both")
		}
		if c.query("after") != "" && p != n {
			return errorf(http.StatusUnprocessableEntity, "invalid", "after %q is a cursor of partition %d, not %d", c.query("after"), p, n)
		}
		q.AfterPartition, q.Follow = n, true
	}
	if id := c.query("hold_id"); id != "" {
		if q.Hold, err = s.eng.HoldParts(id); err != nil {
			return err
		}
	}
	page, err := s.events.Events(c.ctx, q)
	if err != nil {
		return err
	}
	out := make([]eventJSON, len(page.Events))
	for i, ev := range page.Events {
		out[i] = eventJSON{EventID: fmt.Sprintf("%d-%d", ev.Partition, ev.Seq), ItemID: ev.SKU, Event: ev}
	}
	body := map[string]any{"events": out, "source": page.Source}
	if vendor != "" {
		body["vendor_id"] = vendor
	}
	if page.Next != "" {
		body["next_after"] = page.Next
	}
	return c.json(http.StatusOK, body)
}
