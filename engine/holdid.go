package engine

import (
	"crypto/sha1"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// A hold id names every part of a hold, so commit, release and extend need no lookup:
//
//	<token>_<partition>.<line>.<shard>[_<partition>.<line>.<shard>...]
//
// token is 20 hex digits derived from the caller's idempotency key; line is the cart line
// the part belongs to; shard is the pool shard it was taken from. Within its partition a
// part is stored as "<token>.<line>.<shard>".
var holdIDPattern = regexp.MustCompile(`^[0-9a-f]{20}(_[0-9]{1,5}\.[0-9]{1,2}\.[0-9]{1,2}){1,64}$`)

const maxHoldParts = 64

// partRef locates one part of a hold.
type partRef struct {
	Partition int
	Line      int
	Shard     int
}

func (r partRef) id(token string) string {
	return token + "." + strconv.Itoa(r.Line) + "." + strconv.Itoa(r.Shard)
}

func formatHoldID(token string, parts []partRef) string {
	var b strings.Builder
	b.WriteString(token)
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

// parseHoldID splits a hold id into its token and parts; partitions must exist.
func parseHoldID(id string, partitions int) (string, []partRef, error) {
	if !holdIDPattern.MatchString(id) {
		return "", nil, invalid("hold_id", "malformed hold id")
	}
	fields := strings.Split(id, "_")
	refs := make([]partRef, 0, len(fields)-1)
	for _, f := range fields[1:] {
		n := strings.Split(f, ".")
		p, _ := strconv.Atoi(n[0])
		l, _ := strconv.Atoi(n[1])
		s, _ := strconv.Atoi(n[2])
		if p >= partitions {
			return "", nil, invalid("hold_id", "malformed hold id: partition %d does not exist", p)
		}
		refs = append(refs, partRef{Partition: p, Line: l, Shard: s})
	}
	return fields[0], refs, nil
}

// PartID names one part of a hold: the partition it lives in and its id there (the hold
// field of its events).
type PartID struct {
	Partition int
	Part      string
}

// HoldParts splits a hold id into its parts.
func (e *Engine) HoldParts(id string) ([]PartID, error) {
	token, refs, err := parseHoldID(id, e.cfg.Partitions)
	if err != nil {
		return nil, err
	}
	out := make([]PartID, len(refs))
	for i, r := range refs {
		out[i] = PartID{Partition: r.Partition, Part: r.id(token)}
	}
	return out, nil
}

// idemToken scopes an idempotency key to the caller that sent it.
func idemToken(actor, key string) string {
	sum := sha1.Sum([]byte(actor + "\x00" + key))
	return hex.EncodeToString(sum[:10])
}

// fingerprint identifies a request's content, so a reused key with another body is refused.
func fingerprint(parts ...string) string {
	sum := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:8])
}
