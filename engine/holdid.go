package engine

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A hold id names every part of a hold, so commit, release and extend need no lookup:
//
//	<token>.<attempt>_<partition>.<line>.<shard>[_<partition>.<line>.<shard>...]
//
// token is 20 hex digits, a keyed hash of the caller and its idempotency key (see
// Engine.token): retries compute the same one, and nobody without the engine's secret can
// compute anyone's. attempt is "0" for a hold placed by the fast path (one call), else the
// 8 hex digits of the slow-path attempt that placed it; line is the cart line a part belongs
// to and shard the pool shard it was taken from. Within its partition a part is stored as
// "<token>.<attempt>.<line>.<shard>": a part id names one placement, never reused.
var holdIDPattern = regexp.MustCompile(`^[0-9a-f]{20}\.(0|[0-9a-f]{8})(_[0-9]{1,5}\.[0-9]{1,2}\.[0-9]{1,2}){1,64}$`)

const maxHoldParts = 64

// fastAttempt is the attempt of a hold placed by the fast path.
const fastAttempt = "0"

// partRef locates one part of a hold.
type partRef struct {
	Partition int
	Line      int
	Shard     int
}

// holdKey is a hold's token and attempt: what its parts' ids start with.
type holdKey struct {
	token, attempt string
}

func (k holdKey) String() string { return k.token + "." + k.attempt }

func (k holdKey) part(r partRef) string {
	return k.token + "." + k.attempt + "." + strconv.Itoa(r.Line) + "." + strconv.Itoa(r.Shard)
}

func formatHoldID(k holdKey, parts []partRef) string {
	var b strings.Builder
	b.WriteString(k.String())
	for _, p := range parts {
		b.WriteByte('_')
		b.WriteString(strconv.Itoa(p.Partition))
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(p.Shard))
	}
	return b.String()
}

// parseHoldID splits a hold id into its key and parts; partitions must exist.
func parseHoldID(id string, partitions int) (holdKey, []partRef, error) {
	if !holdIDPattern.MatchString(id) {
		return holdKey{}, nil, invalid("hold_id", "malformed hold id")
	}
	fields := strings.Split(id, "_")
	token, attempt, _ := strings.Cut(fields[0], ".")
	refs := make([]partRef, 0, len(fields)-1)
	for _, f := range fields[1:] {
		n := strings.Split(f, ".")
		p, _ := strconv.Atoi(n[0])
		l, _ := strconv.Atoi(n[1])
		s, _ := strconv.Atoi(n[2])
		if p >= partitions {
			return holdKey{}, nil, invalid("hold_id", "malformed hold id: partition %d does not exist", p)
		}
		refs = append(refs, partRef{Partition: p, Line: l, Shard: s})
	}
	return holdKey{token, attempt}, refs, nil
}

// PartID names one part of a hold: the partition it lives in and its id there (the hold
// field of its events).
type PartID struct {
	Partition int
	Part      string
}

// HoldParts splits a hold id into its parts.
func (e *Engine) HoldParts(id string) ([]PartID, error) {
	k, refs, err := parseHoldID(id, e.cfg.Partitions)
	if err != nil {
		return nil, err
	}
	out := make([]PartID, len(refs))
	for i, r := range refs {
		out[i] = PartID{Partition: r.Partition, Part: k.part(r)}
	}
	return out, nil
}

// token scopes an idempotency key to the caller that sent it: the same caller and key give
// the same token on every instance, and nobody can compute it without the engine's secret.
func (e *Engine) token(actor, key string) string {
	e.keyspace.mu.RLock()
	m := hmac.New(sha256.New, e.secret)
	e.keyspace.mu.RUnlock()
	m.Write([]byte(actor))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:10])
}

// keyPartition is the partition of a token's key record (and of its holds' end records).
func (e *Engine) keyPartition(token string) int {
	h := fnv.New32a()
	h.Write([]byte(token))
	return int(h.Sum32() % uint32(e.cfg.Partitions))
}

// newAttempt names a slow-path attempt: 8 random hex digits.
func newAttempt() string {
	b := make([]byte, 4)
	rand.Read(b)
	a := hex.EncodeToString(b)
	if a == "00000000" {
		return newAttempt()
	}
	return a
}

// fingerprint identifies a request's content, so a reused key with another body is refused.
func fingerprint(parts ...string) string {
	sum := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// HoldOfParts is the hold id whose parts are parts (all of one hold), in the order the engine
// lists them (line, then shard), with each part's index in that order.
func HoldOfParts(parts []PartID) (string, []int, error) {
	if len(parts) == 0 {
		return "", nil, errors.New("no parts")
	}
	var hk holdKey
	refs := make([]partRef, len(parts))
	for i, p := range parts {
		f := strings.Split(p.Part, ".")
		if len(f) != 4 {
			return "", nil, fmt.Errorf("part id %q: want token.attempt.line.shard", p.Part)
		}
		k := holdKey{f[0], f[1]}
		if i > 0 && k != hk {
			return "", nil, fmt.Errorf("part %s is not of hold %s", p.Part, hk)
		}
		hk = k
		line, err1 := strconv.Atoi(f[2])
		shard, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return "", nil, fmt.Errorf("part id %q: bad line or shard", p.Part)
		}
		refs[i] = partRef{Partition: p.Partition, Line: line, Shard: shard}
	}
	order := partOrder(refs)
	sorted := make([]partRef, len(refs))
	for i, j := range order {
		sorted[i] = refs[j]
	}
	id := formatHoldID(hk, sorted)
	if _, _, err := parseHoldID(id, 1<<30); err != nil {
		return "", nil, err
	}
	return id, order, nil
}

// PartOf splits a part id into its hold's token and attempt ("0": the fast path); ok is
// false for what is not a part id.
func PartOf(part string) (token, attempt string, ok bool) {
	f := strings.Split(part, ".")
	if len(f) != 4 {
		return "", "", false
	}
	return f[0], f[1], true
}

// partOrder is the order a hold lists its parts in (line, then shard), as indexes into refs:
// the same hold id whoever lists the parts (the ledger's restore of a lost answer too).
func partOrder(refs []partRef) []int {
	order := make([]int, len(refs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		ra, rb := refs[order[a]], refs[order[b]]
		return ra.Line < rb.Line || ra.Line == rb.Line && ra.Shard < rb.Shard
	})
	return order
}

// LostHold is a hold part a client was given that is gone: Redis lost the write that placed
// it, went on without it (a fork), and the part could not be carried over onto what the
// ledger holds (its units had been taken meanwhile, or it was a backorder).
type LostHold struct {
	Partition int
	Part      string
	// HoldID is the hold's id when the part alone makes it (a hold of one part placed by the
	// fast path); HoldKey is what the hold's id starts with, whatever its parts.
	HoldID, HoldKey string
	// Owner is the API key the hold was placed with.
	Owner, Customer, Location, SKU string
	Qty                            int64
	Backordered                    bool
	// Sold: the client was told it was sold, and the sale is gone with it.
	Sold bool
	// PlacedAt (unix ms, 0: not known) is when the fork placed it; Why says why it could not
	// be kept.
	PlacedAt int64
	Why      string
	// EventHash names the forked event that placed it: one notice per lost part.
	EventHash string
}

// LostHoldOf describes the hold part of a forked event: the RESERVED or BACKORDERED that
// placed it (or the COMMITTED that sold it).
func LostHoldOf(ev *Event, why string) LostHold {
	l := LostHold{Partition: ev.Partition, Part: ev.Hold, Owner: ev.Actor, Customer: ev.Customer, Location: ev.Location, SKU: ev.SKU,
		Qty: ev.Qty, Backordered: ev.Type == EventBackordered, PlacedAt: ev.TS, Why: why, EventHash: ev.Hash}
	if token, attempt, ok := PartOf(ev.Hold); ok {
		l.HoldKey = token + "." + attempt
		if attempt == fastAttempt {
			if id, _, err := HoldOfParts([]PartID{{Partition: ev.Partition, Part: ev.Hold}}); err == nil {
				l.HoldID = id
			}
		}
	}
	if l.Owner == "-" {
		l.Owner = "" // placed without an API key
	}
	return l
}
