package http

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Response encoding of the actors' messages. protojson would write 64-bit integers as strings ("price_cents":
// "1200"), but the API's money is integer cents, so the edge encodes messages itself, in the shape protojson
// uses otherwise: proto (snake_case) names, every field present (an unset message is null, an empty list []),
// enums by name, timestamps in RFC 3339 UTC. A google.protobuf.Any (the data of a feed entry) is written as the
// message it holds; the entry's type names it.
//
// The bytes are those encoding/json writes for the same values held in maps (which the edge did before encoding
// directly): object keys in byte order, map keys too, strings escaped as encoding/json escapes them (HTML
// characters, U+2028 and U+2029, invalid UTF-8 as U+FFFD), floats in its ES6 number format.
// encode_bench_test.go checks every message type of messages/ against that reference.

// marshalProto encodes m as JSON for a response.
func marshalProto(m proto.Message) ([]byte, error) {
	return appendMessage(nil, m.ProtoReflect())
}

// encodeBuffers recycles the buffers writeProto encodes into (the response copies the bytes).
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBuffer is the largest buffer kept for reuse: a rare large answer does not pin its memory.
const maxPooledBuffer = 64 << 10

// encodedField is a field of a message type with its JSON key, in the order of the keys.
type encodedField struct {
	fd  protoreflect.FieldDescriptor
	key string // `"name":`
}

var messageFields sync.Map // protoreflect.FullName -> []encodedField

func fieldsOf(md protoreflect.MessageDescriptor) []encodedField {
	if v, ok := messageFields.Load(md.FullName()); ok {
		return v.([]encodedField)
	}
	fields := md.Fields()
	out := make([]encodedField, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		out[i] = encodedField{fd: fd, key: string(appendJSONString(nil, string(fd.Name()))) + ":"}
	}
	slices.SortFunc(out, func(a, b encodedField) int { return cmp.Compare(a.fd.Name(), b.fd.Name()) })
	messageFields.Store(md.FullName(), out)
	return out
}

func appendMessage(b []byte, m protoreflect.Message) ([]byte, error) {
	if !m.IsValid() {
		return append(b, "null"...), nil
	}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		ts, ok := m.Interface().(*timestamppb.Timestamp)
		if !ok {
			ts = &timestamppb.Timestamp{}
			proto.Merge(ts, m.Interface())
		}
		b = append(b, '"')
		b = ts.AsTime().UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case "google.protobuf.Any":
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			a = &anypb.Any{}
			proto.Merge(a, m.Interface())
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
		}
		return appendMessage(b, inner.ProtoReflect())
	}
	b = append(b, '{')
	for i, f := range fieldsOf(m.Descriptor()) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.key...)
		var err error
		if b, err = appendField(b, f.fd, m.Get(f.fd)); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendField(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	var err error
	switch {
	case fd.IsList():
		l := v.List()
		b = append(b, '[')
		for i := range l.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendSingular(b, fd, l.Get(i)); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case fd.IsMap():
		mp := v.Map()
		keys := make([]protoreflect.MapKey, 0, mp.Len())
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		// encoding/json sorts by the key as written (an integer key's decimal string).
		slices.SortFunc(keys, func(x, y protoreflect.MapKey) int { return cmp.Compare(x.String(), y.String()) })
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k.String())
			b = append(b, ':')
			if b, err = appendSingular(b, fd.MapValue(), mp.Get(k)); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return appendSingular(b, fd, v)
}

func appendSingular(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendMessage(b, v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendJSONString(b, string(ev.Name())), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.StringKind:
		return appendJSONString(b, v.String()), nil
	case protoreflect.BytesKind:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"'), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("encode %s: %v is not a JSON number", fd.FullName(), f)
		}
		return appendJSONFloat(b, f), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	default: // the signed integer kinds
		return strconv.AppendInt(b, v.Int(), 10), nil
	}
}

// appendJSONFloat writes f (finite) as encoding/json writes a float64: like ES6's number to string, decimal
// between 1e-6 and 1e21, otherwise exponent notation without a padded exponent.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s quoted as encoding/json writes it with HTML escaping (its default): ", \ and control
// characters escaped (\b \f \n \r \t short), <, > and & as \u003c \u003e \u0026, U+2028 and U+2029 escaped, and
// each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
