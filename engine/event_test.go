package engine

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// TestParseEvent: a stream entry's canonical text parses back into the event it was made of,
// and a text with a field too few or too many, another version or a number that is not one
// is refused even with its own hash, as is a hash that is not exactly the lowercase SHA-1 of
// the text.
func TestParseEvent(t *testing.T) {
	t.Parallel()
	ev := Event{Version: EventVersion, Partition: 7, Seq: 42, Type: EventReserved, Location: "s1", SKU: "tee", Shard: 3, Delta: -2,
		After: 98, HeldDelta: 2, Hold: "0123456789abcdef0123.0.3", Qty: 2, Customer: "c9", Idem: "tok", Actor: "shop",
		ExpiresAt: 1790000060000, TS: 1790000000000, PrevHash: GenesisHash}
	ev.Hash = ev.ComputeHash()
	got, err := ParseEvent(ev.Canonical(), ev.Hash)
	if err != nil || got != ev {
		t.Fatalf("parsed %+v, %v\nwant %+v", got, err, ev)
	}
	own := func(s string) string {
		sum := sha1.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	canon := ev.Canonical()
	for name, text := range map[string]string{
		"a field too few":   canon[:strings.LastIndexByte(canon, '|')],
		"a field too many":  canon + "|x",
		"version 3":         "3" + canon[1:],
		"version 1 with 19": "1" + canon[1:],
		"seq not a number":  strings.Replace(canon, "|42|", "|4x|", 1),
		"empty":             "",
	} {
		if _, err := ParseEvent(text, own(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, hash := range map[string]string{"uppercase hash": strings.ToUpper(ev.Hash), "another hash": GenesisHash, "no hash": ""} {
		if _, err := ParseEvent(canon, hash); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestParseEventV1: an event written in version 1 (18 fields, no expires_at) still parses
// and verifies, and the expiry it kept in the reason of RESERVED and EXTENDED events is read
// into ExpiresAt; on other events the reason stays prose.
func TestParseEventV1(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		typ, reason string
		exp         int64
	}{{EventReserved, "1790000060000", 1790000060000}, {EventExtended, "1790000090000; carried over from forked seq 9", 1790000090000},
		{EventReleased, "customer left", 0}, {EventRestocked, "1790000060000", 0}} {
		ev := Event{Version: 1, Partition: 2, Seq: 9, Type: c.typ, Location: "s1", SKU: "tee", Delta: -1, After: 4, HeldDelta: 1,
			Hold: "h.0.0", Qty: 1, Reason: c.reason, TS: 1790000000000, PrevHash: GenesisHash}
		canon := ev.Canonical()
		if !strings.HasPrefix(canon, "1|2|9|") || strings.Count(canon, "|") != eventFieldsV1-1 {
			t.Fatalf("version 1 canonical %q", canon)
		}
		ev.Hash = ev.ComputeHash()
		got, err := ParseEvent(canon, ev.Hash)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if got.Version != 1 || got.ExpiresAt != c.exp || got.Reason != c.reason || got.ComputeHash() != ev.Hash {
			t.Fatalf("%s: parsed %+v", c.typ, got)
		}
	}
}

// TestEventsCarryExpiry: RESERVED and EXTENDED events as the scripts write them are of the
// current version and carry the part's expiry as a field, with no reason text; other events
// carry none.
func TestEventsCarryExpiry(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testredisStandalone(t), nil)
	ctx := context.Background()
	makePool(t, e, PoolConfig{Location: "s1", SKU: "tee", Shards: 1}, 10)
	h := mustReserve(t, e, ReserveRequest{Items: []Item{{Location: "s1", SKU: "tee", Qty: 2}}, IdempotencyKey: "k", Actor: "c1", TTL: time.Minute})
	to, err := e.Extend(ctx, h.ID, 10*time.Minute, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Release(ctx, h.ID, "c1"); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{EventReserved: h.ExpiresAt, EventExtended: to, EventReleased: 0, EventRestocked: 0}
	evs := checkInvariants(t, e)[e.PartitionOf("s1", "tee", 0)]
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for _, ev := range evs {
		if ev.Version != EventVersion || ev.ExpiresAt != want[ev.Type] || ev.Type != EventRestocked && ev.Reason != "" {
			t.Errorf("%s: version %d expires_at %d (want %d) reason %q", ev.Type, ev.Version, ev.ExpiresAt, want[ev.Type], ev.Reason)
		}
	}
}

// BenchmarkParseEvent parses a reserve's stream entry, as the persister does for every event.
func BenchmarkParseEvent(b *testing.B) {
	ev := Event{Partition: 7, Seq: 42, Type: EventReserved, Location: "bench", SKU: "flash", Shard: 3, Delta: -1,
		After: 98765, HeldDelta: 1, Hold: "0123456789abcdef0123456789abcdef.0.3", Qty: 1,
		Idem: "0123456789abcdef0123456789abcdef", Actor: "bench", TS: 1790000000000, PrevHash: GenesisHash}
	ev.Hash = ev.ComputeHash()
	canonical := ev.Canonical()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEvent(canonical, ev.Hash); err != nil {
			b.Fatal(err)
		}
	}
}
