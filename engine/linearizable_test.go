package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

// The hot pool as a linearizable counter: reserve(q) takes q units if there are as many and
// is refused otherwise; release(q) gives q back. A history of one counter cannot be split
// into independent keys, and porcupine does not finish on a long one, so the workload runs
// in rounds with every client stopped in between: each round starts from the count read
// then, and is checked alone.

// dumpRound prints the first round found wrong, request by request, and stops the test.
const dumpRound = true

type counterInput struct {
	release bool
	qty     int64
}

var counterModel = porcupine.Model{
	Step: func(state, input, output any) (bool, any) {
		avail, in := state.(int64), input.(counterInput)
		if in.release {
			return true, avail + in.qty
		}
		if output.(bool) {
			return avail >= in.qty, avail - in.qty
		}
		return avail < in.qty, avail
	},
	DescribeOperation: func(input, output any) string {
		in := input.(counterInput)
		if in.release {
			return fmt.Sprintf("release(%d)", in.qty)
		}
		return fmt.Sprintf("reserve(%d) -> %v", in.qty, output)
	},
}

// roundResult is one checked round.
type roundResult struct {
	result   porcupine.CheckResult
	refusals int
	// falseSoldOut counts refusals certainly false: throughout the request, a lower bound of
	// the available units (the round's start, less every reserve that was sent and granted,
	// plus every release that had returned) was at least what it asked for.
	falseSoldOut int
}

func checkRound(start int64, ops []porcupine.Operation) roundResult {
	m := counterModel
	m.Init = func() any { return start }
	m.Hash = func(state any) uint64 { return uint64(state.(int64)) }
	res := roundResult{result: porcupine.CheckOperationsTimeout(m, ops, 20*time.Second)}
	for _, r := range ops {
		in := r.Input.(counterInput)
		if in.release || r.Output.(bool) {
			continue
		}
		res.refusals++
		// The lower bound at t: start - Σ granted reserves called by t + Σ releases returned
		// before t. Its least value over [Call, Return] is at one of the instants it drops.
		bound := func(t int64) int64 {
			b := start
			for _, o := range ops {
				oi := o.Input.(counterInput)
				switch {
				case oi.release && o.Return < t:
					b += oi.qty
				case !oi.release && o.Output.(bool) && o.Call <= t:
					b -= oi.qty
				}
			}
			return b
		}
		least := bound(r.Call)
		for _, o := range ops {
			if !o.Input.(counterInput).release && o.Call > r.Call && o.Call <= r.Return {
				least = min(least, bound(o.Call))
			}
		}
		if least >= in.qty {
			res.falseSoldOut++
		}
	}
	return res
}

// TestLinearizableHotPool: 32 clients reserve one to three units of a 40-unit pool and
// release about half of what they hold every round, with the sold-out memory on; every
// round's history is linearizable and no refusal is given while units were free.
func TestLinearizableHotPool(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		for _, shards := range []int{1, 8} {
			t.Run(fmt.Sprintf("%d-shards", shards), func(t *testing.T) {
				e := newEngine(t, rdb, nil)
				if e.Config().SoldOutMemory <= 0 {
					t.Fatal("the sold-out memory must be on for this test")
				}
				makePool(t, e, PoolConfig{Location: "s1", SKU: "hot", Shards: shards}, 40)
				ctx := context.Background()
				base := time.Now()
				now := func() int64 { return int64(time.Since(base)) }
				// 32 clients, 12 of them (another 12 each round) sending at once: porcupine
				// checks a round of 12 overlapping requests in milliseconds, and gives up on
				// some rounds of 32.
				const clients, active, rounds = 32, 12, 600
				held := make([][]*Hold, clients)
				var total roundResult
				var checking time.Duration
				fromMemory := e.Stats().SoldOutFast.Load()
				for round := range rounds {
					a, err := e.Availability(ctx, "s1", "hot")
					if err != nil {
						t.Fatal(err)
					}
					var mu sync.Mutex
					var ops []porcupine.Operation
					record := func(c int, in counterInput, call int64, out bool) {
						mu.Lock()
						ops = append(ops, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: now()})
						mu.Unlock()
					}
					var wg sync.WaitGroup
					for _, c := range rand.New(rand.NewPCG(uint64(round), 0)).Perm(clients)[:active] {
						wg.Go(func() {
							rng := rand.New(rand.NewPCG(uint64(round), uint64(c)))
							keep := held[c]
							defer func() { held[c] = keep }()
							// One request per client per round: a release of one of its holds
							// (half the time, when it has any), else a reserve.
							if len(keep) > 0 && rng.IntN(2) == 0 {
								i := rng.IntN(len(keep))
								h := keep[i]
								keep = append(keep[:i:i], keep[i+1:]...)
								call := now()
								if err := e.Release(ctx, h.ID, "shop"); err != nil {
									t.Errorf("release: %v", err)
									return
								}
								var q int64
								for _, p := range h.Parts {
									q += p.Qty
								}
								record(c, counterInput{release: true, qty: q}, call, true)
								return
							}
							q := int64(1 + rng.IntN(3))
							call := now()
							h, err := e.Reserve(ctx, ReserveRequest{Items: []Item{{Location: "s1", SKU: "hot", Qty: q}}, TTL: 30 * time.Minute,
								IdempotencyKey: fmt.Sprintf("r%d-c%d", round, c), Actor: "shop"})
							var ie *InsufficientError
							switch {
							case err == nil:
								keep = append(keep, h)
								record(c, counterInput{qty: q}, call, true)
							case errors.As(err, &ie):
								record(c, counterInput{qty: q}, call, false)
							default:
								t.Errorf("reserve: %v", err)
							}
						})
					}
					wg.Wait()
					checkStart := time.Now()
					res := checkRound(a.Available, ops)
					checking += time.Since(checkStart)
					if res.result != porcupine.Ok {
						t.Errorf("round %d (start %d available): %s", round, a.Available, res.result)
						if dumpRound {
							sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
							for _, o := range ops {
								t.Logf("  c%02d %8d..%8d µs %s", o.ClientId, o.Call/1000, o.Return/1000, counterModel.DescribeOperation(o.Input, o.Output))
							}
							a2, _ := e.Availability(ctx, "s1", "hot")
							t.Logf("  end: %d available", a2.Available)
							t.FailNow()
						}
					}
					total.refusals += res.refusals
					total.falseSoldOut += res.falseSoldOut
				}
				fromMemory = e.Stats().SoldOutFast.Load() - fromMemory
				t.Logf("%d refusals, %d from the sold-out memory, %d certainly false; checking took %s", total.refusals, fromMemory, total.falseSoldOut, checking)
				if total.falseSoldOut > 0 {
					t.Errorf("%d refusals were given while the units asked for were free", total.falseSoldOut)
				}
				if total.refusals == 0 {
					t.Error("nothing was refused: the test proves nothing about sold out")
				}
			})
		}
	})
}
