package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flashhold/flashhold/engine"
)

// copyEvents sends events to inventory_events with COPY in PostgreSQL's binary format, encoded
// here: every column is a fixed integer width or text, so rows are appended straight into one
// buffer, with no per-value encoding plan and no row of boxed values as pgx's generic CopyFrom
// builds. The buffer holds the whole batch (a reserve's event takes about 300 bytes: some
// 15 MB at the default FLASHHOLD_PERSIST_MAX_ROWS of 50,000). It returns the rows copied.
func copyEvents(ctx context.Context, tx pgx.Tx, events []engine.Event) (int64, error) {
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(encodeCopy(events)), copyEventsSQL)
	if err != nil {
		return 0, fmt.Errorf("ledger: copy: %w", err)
	}
	return tag.RowsAffected(), nil
}

var copyEventsSQL = "COPY inventory_events (" + strings.Join(eventColumns, ", ") + ") FROM STDIN (FORMAT binary)"

// copySignature opens a binary COPY stream: the signature, then 32-bit flags and the length of
// the header extension, both 0.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// encodeCopy encodes events as a binary COPY stream of eventColumns, in their order and types
// (migrations/00001_events.sql): integer columns as int4, bigint ones as int8, the rest text.
func encodeCopy(events []engine.Event) []byte {
	size := len(copySignature) + 2
	for i := range events {
		ev := &events[i]
		size += 2 + len(eventColumns)*4 + 3*4 + 7*8 + len(ev.Type) + len(ev.Location) + len(ev.SKU) + len(ev.Hold) +
			len(ev.Customer) + len(ev.Idem) + len(ev.Actor) + len(ev.Reason) + len(ev.PrevHash) + len(ev.Hash)
	}
	b := make([]byte, 0, size)
	b = append(b, copySignature...)
	i4 := func(v int) {
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(int32(v)))
	}
	i8 := func(v int64) {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	txt := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	for i := range events {
		ev := &events[i]
		b = binary.BigEndian.AppendUint16(b, uint16(len(eventColumns)))
		i4(ev.Partition)
		i8(ev.Seq)
		txt(ev.Type)
		txt(ev.Location)
		txt(ev.SKU)
		i4(ev.Shard)
		i8(ev.Delta)
		i8(ev.After)
		i8(ev.HeldDelta)
		txt(ev.Hold)
		i8(ev.Qty)
		txt(ev.Customer)
		txt(ev.Idem)
		txt(ev.Actor)
		txt(ev.Reason)
		i8(ev.TS)
		txt(ev.PrevHash)
		txt(ev.Hash)
		i4(eventVersion(ev))
		i8(ev.ExpiresAt)
	}
	return binary.BigEndian.AppendUint16(b, 0xffff) // the trailer: a field count of -1
}
