package journal

import (
	"encoding/binary"
	"errors"
	"time"
)

// Records (events, feed entries) are stored as uvarint(len(type)) ‖ type ‖ data; snapshots as
// seq (8 bytes) ‖ record. Integers in keys are 8-byte big endian so that byte order is numeric order.

var errCorrupt = errors.New("corrupt record")

func encodeRecord(typ string, data []byte) []byte {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(typ)+len(data))
	buf = binary.AppendUvarint(buf, uint64(len(typ)))
	buf = append(buf, typ...)
	return append(buf, data...)
}

// decodeRecord copies out of v (bbolt memory is only valid inside its transaction).
func decodeRecord(v []byte) (string, []byte, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return "", nil, errCorrupt
	}
	typ := string(v[w : w+int(n)])
	data := append([]byte(nil), v[w+int(n):]...)
	return typ, data, nil
}

func encodeSnapshot(s Snapshot) []byte {
	return append(encodeUint(s.Seq), encodeRecord(s.Type, s.Data)...)
}

func decodeSnapshot(v []byte) (Snapshot, error) {
	if len(v) < 8 {
		return Snapshot{}, errCorrupt
	}
	typ, data, err := decodeRecord(v[8:])
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Seq: decodeUint(v[:8]), Type: typ, Data: data}, nil
}

// snapshotSeq is the sequence number of an encoded snapshot, without decoding (or copying) the rest.
func snapshotSeq(v []byte) (uint64, error) {
	if len(v) < 8 {
		return 0, errCorrupt
	}
	return decodeUint(v[:8]), nil
}

func encodeUint(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}

func decodeUint(k []byte) uint64 {
	return binary.BigEndian.Uint64(k)
}

// encodeTime maps a time to 8 bytes whose byte order is time order (nanoseconds since 1970, sign bit flipped).
func encodeTime(t time.Time) []byte {
	return encodeUint(uint64(t.UnixNano()) ^ 1<<63)
}

func decodeTime(k []byte) time.Time {
	return time.Unix(0, int64(decodeUint(k)^1<<63)).UTC()
}

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
