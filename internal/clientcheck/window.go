package clientcheck

import (
	"fmt"
	"net/http"
	"time"
)

// Window is the span of refusals around a fault: the sends answered 503 or not at all
// (connection refused, reset, timed out) from the fault on, measured from the fault.
type Window struct {
	Refused     int            // sends answered 503 or not at all
	Sends       int            // every send from the fault on
	First, Last time.Duration  // the first refused send, and the end of the last one
	Codes       map[string]int // refused sends by the error code of their answer ("no answer")
}

// RefusalWindow measures the Window of ops from the fault at from.
func RefusalWindow(ops []*Op, from time.Time) Window { return refusals(ops, from, true) }

// ServiceWindow is RefusalWindow counting only 503 answers: what a live instance refused,
// leaving out sends to a dead one.
func ServiceWindow(ops []*Op, from time.Time) Window { return refusals(ops, from, false) }

func refusals(ops []*Op, from time.Time, noAnswer bool) Window {
	w := Window{Codes: map[string]int{}}
	first := true
	for _, op := range ops {
		for _, s := range op.Sends {
			if s.At.Before(from) {
				continue
			}
			w.Sends++
			if s.Status != http.StatusServiceUnavailable && (s.Status != 0 || !noAnswer) {
				continue
			}
			w.Refused++
			if s.Status == 0 {
				w.Codes["no answer"]++
			} else {
				w.Codes[s.code()]++
			}
			at, end := s.At.Sub(from), s.At.Add(s.Took).Sub(from)
			if s.Status == 0 {
				end = at // no answer: the client's own timeout says nothing of the service
			}
			if first || at < w.First {
				w.First = at
			}
			if first || end > w.Last {
				w.Last = end
			}
			first = false
		}
	}
	return w
}

func (w Window) String() string {
	if w.Refused == 0 {
		return fmt.Sprintf("no send refused of %d", w.Sends)
	}
	return fmt.Sprintf("%d of %d sends refused (503 or no answer), from +%s to +%s: a window of %s; %v",
		w.Refused, w.Sends, w.First.Round(time.Millisecond), w.Last.Round(time.Millisecond),
		(w.Last - w.First).Round(time.Millisecond), w.Codes)
}
