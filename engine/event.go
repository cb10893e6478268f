package engine

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Event types.
const (
	EventReserved    = "RESERVED"
	EventCommitted   = "COMMITTED"
	EventReleased    = "RELEASED"
	EventExpired     = "EXPIRED"
	EventExtended    = "EXTENDED"
	EventRestocked   = "RESTOCKED"
	EventSpoiled     = "SPOILED"
	EventAdjusted    = "ADJUSTED"
	EventTransferOut = "TRANSFER_OUT"
	EventTransferIn  = "TRANSFER_IN"
	// EventVoided gives back a part that no caller was ever told of (a refused or abandoned
	// reservation's part): it pairs with the part's RESERVED, and consumers ignore both.
	EventVoided = "VOIDED"
	// EventBackordered places a part whose units the shard does not have (a pool that takes
	// backorders): nothing is taken (delta 0, held_delta 0); the part's units are owed until
	// its EventFilled.
	EventBackordered = "BACKORDERED"
	// EventFilled gives a backordered part its units (delta -qty): an open part is held from
	// then on (held_delta +qty), a part sold before its units came is committed (held_delta 0).
	EventFilled = "FILLED"
)

// OwedDelta is the change an event makes to its shard's units owed to backorders: a
// BACKORDERED adds its units, a FILLED takes them off, and so does a backordered part given
// back (RELEASED, EXPIRED or VOIDED with no change of available or held units).
func OwedDelta(ev *Event) int64 {
	switch ev.Type {
	case EventBackordered:
		return ev.Qty
	case EventFilled:
		return -ev.Qty
	case EventReleased, EventExpired, EventVoided:
		if ev.Delta == 0 && ev.HeldDelta == 0 {
			return -ev.Qty
		}
	}
	return 0
}

// GenesisHash is the prev_hash of a partition's first event.
const GenesisHash = "0000000000000000000000000000000000000000"

// EventVersion is the version of the canonical form the scripts write. Version 1 (18 fields)
// had no expiry field: a RESERVED or EXTENDED event carried the part's expiry as its reason
// text. Version 2 adds expires_at after the reason. Both verify and parse.
const EventVersion = 2

// Event is one change to one shard, as written by a script to its partition's stream.
type Event struct {
	// Version is the canonical form the event was written in (0 is taken as EventVersion).
	Version   int    `json:"version"`
	Partition int    `json:"partition"`
	Seq       int64  `json:"seq"`
	Type      string `json:"type"`
	Location  string `json:"location"`
	SKU       string `json:"sku"`
	Shard     int    `json:"shard"`
	// Delta is the signed change of the shard's available units; After is the count after it.
	Delta int64 `json:"delta"`
	After int64 `json:"available_after"`
	// HeldDelta is the signed change of the units held on the shard.
	HeldDelta int64  `json:"held_delta"`
	Hold      string `json:"hold,omitempty"`
	Qty       int64  `json:"qty"`
	Customer  string `json:"customer,omitempty"`
	// Idem is the idempotency token of a reservation, or the transaction or transfer id.
	Idem   string `json:"idem,omitempty"`
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
	// ExpiresAt is the part's expiry (ms) after a RESERVED or EXTENDED event, 0 on others.
	ExpiresAt int64  `json:"expires_at,omitempty"`
	TS        int64  `json:"ts"`
	PrevHash  string `json:"prev_hash"`
	Hash      string `json:"hash"`
}

// The number of fields of each version's canonical form.
const (
	eventFieldsV1 = 18
	eventFields   = 19
)

// version is the canonical form the event is written in.
func (ev *Event) version() int {
	if ev.Version == 1 {
		return 1
	}
	return EventVersion
}

// Canonical is the exact text the event's hash covers:
//
//	version|partition|seq|type|location|sku|shard|delta|after|held_delta|hold|qty|customer|idem|actor|reason|expires_at|ts|prev_hash
//
// (version 1 has no expires_at).
func (ev *Event) Canonical() string {
	f := make([]string, 0, eventFields)
	f = append(f, strconv.Itoa(ev.version()), strconv.Itoa(ev.Partition), strconv.FormatInt(ev.Seq, 10), ev.Type,
		ev.Location, ev.SKU, strconv.Itoa(ev.Shard), strconv.FormatInt(ev.Delta, 10),
		strconv.FormatInt(ev.After, 10), strconv.FormatInt(ev.HeldDelta, 10), ev.Hold,
		strconv.FormatInt(ev.Qty, 10), ev.Customer, ev.Idem, ev.Actor, ev.Reason)
	if ev.version() > 1 {
		f = append(f, strconv.FormatInt(ev.ExpiresAt, 10))
	}
	f = append(f, strconv.FormatInt(ev.TS, 10), ev.PrevHash)
	return strings.Join(f, "|")
}

// LiftV1Expiry sets ExpiresAt of a version-1 RESERVED or EXTENDED event from its reason,
// where that version kept the part's expiry (ms), leading the text. Readers of both versions
// (the stream parser, the ledger's scan) call it once, so that everything downstream reads
// the expiry from ExpiresAt alone.
func (ev *Event) LiftV1Expiry() {
	if ev.Version != 1 || ev.Type != EventReserved && ev.Type != EventExtended {
		return
	}
	n := strings.IndexFunc(ev.Reason, func(r rune) bool { return r < '0' || r > '9' })
	if n < 0 {
		n = len(ev.Reason)
	}
	ev.ExpiresAt, _ = strconv.ParseInt(ev.Reason[:n], 10, 64)
}

// TransferPeer is the other side of a transfer event, which transfer events carry as their
// reason, "<partition>/<shard>": where a TRANSFER_OUT's units go, where a TRANSFER_IN's came
// from. ok is false for other events.
func (ev *Event) TransferPeer() (partition, shard int, ok bool) {
	if ev.Type != EventTransferOut && ev.Type != EventTransferIn {
		return 0, 0, false
	}
	p, s, found := strings.Cut(ev.Reason, "/")
	partition, err1 := strconv.Atoi(p)
	shard, err2 := strconv.Atoi(s)
	return partition, shard, found && err1 == nil && err2 == nil
}

// ComputeHash returns sha1 of the canonical form, as the scripts compute it.
func (ev *Event) ComputeHash() string {
	sum := sha1.Sum([]byte(ev.Canonical()))
	return hex.EncodeToString(sum[:])
}

// ParseEvent decodes a stream entry's canonical text (either version) and checks it against
// its hash.
func ParseEvent(canonical, hash string) (Event, error) {
	// The fields are cut into an array, not split into a new slice: the persister parses
	// every event, and this is one allocation fewer per event.
	var f [eventFields]string
	rest, n := canonical, 0
	for ; n < eventFields-1; n++ {
		i := strings.IndexByte(rest, '|')
		if i < 0 {
			break
		}
		f[n], rest = rest[:i], rest[i+1:]
	}
	f[n] = rest
	n++
	if strings.IndexByte(rest, '|') >= 0 || !(f[0] == "2" && n == eventFields || f[0] == "1" && n == eventFieldsV1) {
		return Event{}, fmt.Errorf("event: want %d fields of version 2 or %d of version 1, got %d", eventFields, eventFieldsV1,
			strings.Count(canonical, "|")+1)
	}
	var ev Event
	var err error
	num := func(s string) int64 {
		if err != nil {
			return 0
		}
		var n int64
		n, err = strconv.ParseInt(s, 10, 64)
		return n
	}
	ev.Version = int(f[0][0] - '0')
	ev.Partition = int(num(f[1]))
	ev.Seq = num(f[2])
	ev.Type, ev.Location, ev.SKU = f[3], f[4], f[5]
	ev.Shard = int(num(f[6]))
	ev.Delta, ev.After, ev.HeldDelta = num(f[7]), num(f[8]), num(f[9])
	ev.Hold = f[10]
	ev.Qty = num(f[11])
	ev.Customer, ev.Idem, ev.Actor, ev.Reason = f[12], f[13], f[14], f[15]
	tail := f[16:n]
	if ev.Version > 1 {
		ev.ExpiresAt, tail = num(tail[0]), tail[1:]
	}
	ev.TS = num(tail[0])
	ev.PrevHash = tail[1]
	if err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	ev.Hash = hash
	ev.LiftV1Expiry()
	// The text as written is what the script hashed; hashing it directly (rather than a text
	// rebuilt from the fields) is as strict and avoids rebuilding it.
	sum := sha1.Sum([]byte(canonical))
	var got [2 * sha1.Size]byte
	hex.Encode(got[:], sum[:])
	if string(got[:]) != hash {
		return Event{}, fmt.Errorf("event %d/%d: hash %s does not match its content (%s)", ev.Partition, ev.Seq, hash, got[:])
	}
	return ev, nil
}

// ReadEvents returns up to count events of partition p with seq > after, oldest first,
// from the partition's stream (only what the stream still holds).
func (e *Engine) ReadEvents(ctx context.Context, p int, after int64, count int64) ([]Event, error) {
	if p < 0 || p >= e.cfg.Partitions {
		return nil, invalid("partition", "must be 0..%d", e.cfg.Partitions-1)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	msgs, err := e.rdb.XRangeN(ctx, e.ks.logKey(p), strconv.FormatInt(after+1, 10)+"-0", "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("read events of partition %d: %w", p, redisErr(err))
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		c, _ := m.Values["e"].(string)
		h, _ := m.Values["h"].(string)
		ev, err := ParseEvent(c, h)
		if err != nil {
			return nil, fmt.Errorf("stream entry %s: %w", m.ID, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// ChainError describes the first place where a run of events stops being a gap-free chain.
type ChainError struct {
	Partition int
	Seq       int64
	Reason    string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("partition %d at seq %d: %s", e.Partition, e.Seq, e.Reason)
}

// VerifyChain checks that events (one partition, oldest first) continue from (prevSeq,
// prevHash): seq gap-free, each prev_hash the previous hash, each hash its content's, and each
// shard's available_after equal to its previous available_after plus delta. lastAfter holds
// the last known available count per shard and is updated; pass an empty map to start.
func VerifyChain(events []Event, prevSeq int64, prevHash string, lastAfter map[ShardKey]int64) error {
	for i := range events {
		ev := &events[i]
		if ev.Seq != prevSeq+1 {
			return &ChainError{ev.Partition, ev.Seq, fmt.Sprintf("gap: expected seq %d", prevSeq+1)}
		}
		if ev.PrevHash != prevHash {
			return &ChainError{ev.Partition, ev.Seq, "prev_hash does not match the previous event's hash"}
		}
		if ev.ComputeHash() != ev.Hash {
			return &ChainError{ev.Partition, ev.Seq, "hash does not match the event's content"}
		}
		f := KeyOf(ev)
		if before, ok := lastAfter[f]; ok && before+ev.Delta != ev.After {
			return &ChainError{ev.Partition, ev.Seq, fmt.Sprintf("shard %s: %d%+d != available_after %d", f, before, ev.Delta, ev.After)}
		}
		lastAfter[f] = ev.After
		prevSeq, prevHash = ev.Seq, ev.Hash
	}
	return nil
}
