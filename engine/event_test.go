package engine

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
)

// TestParseEvent: a stream entry's canonical text parses back into the event it was made of,
// and a text with a field too few or too many, another version or a number that is not one
// is refused even with its own hash, as is a hash that is not exactly the lowercase SHA-1 of
// the text.
func TestParseEvent(t *testing.T) {
	ev := Event{Partition: 7, Seq: 42, Type: EventReserved, Location: "s1", SKU: "tee", Shard: 3, Delta: -2,
		After: 98, HeldDelta: 2, Hold: "0123456789abcdef0123.0.3", Qty: 2, Customer: "c9", Idem: "tok", Actor: "shop",
		TS: 1790000000000, PrevHash: GenesisHash}
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
		"a field too few":  canon[:strings.LastIndexByte(canon, '|')],
		"a field too many": canon + "|x",
		"version 2":        "2" + canon[1:],
		"seq not a number": strings.Replace(canon, "|42|", "|4x|", 1),
		"empty":            "",
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
