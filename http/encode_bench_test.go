package http

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// The response encoder (encode.go) against the encoder it replaced, kept here as the reference: messages of every
// type in messages/, filled with random values, must encode to the same bytes. And benchmarks of both.

// referenceMarshal is the former marshalProto: each message to a map[string]any, then encoding/json.
func referenceMarshal(m proto.Message) ([]byte, error) {
	v, err := refMessage(m.ProtoReflect())
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func refMessage(m protoreflect.Message) (any, error) {
	if !m.IsValid() {
		return nil, nil
	}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		ts := &timestamppb.Timestamp{}
		proto.Merge(ts, m.Interface())
		return ts.AsTime().UTC().Format(time.RFC3339Nano), nil
	case "google.protobuf.Any":
		a := &anypb.Any{}
		proto.Merge(a, m.Interface())
		inner, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
		}
		return refMessage(inner.ProtoReflect())
	}
	fields := m.Descriptor().Fields()
	out := make(map[string]any, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		v, err := refField(fd, m.Get(fd))
		if err != nil {
			return nil, err
		}
		out[string(fd.Name())] = v
	}
	return out, nil
}

func refField(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, 0, l.Len())
		for i := range l.Len() {
			x, err := refSingular(fd, l.Get(i))
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case fd.IsMap():
		out := map[string]any{}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			var x any
			if x, err = refSingular(fd.MapValue(), mv); err != nil {
				return false
			}
			out[k.String()] = x
			return true
		})
		return out, err
	}
	return refSingular(fd, v)
}

func refSingular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return refMessage(v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return int32(v.Enum()), nil
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("encode %s: %v is not a JSON number", fd.FullName(), f)
		}
		return f, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint(), nil
	default:
		return v.Int(), nil
	}
}

// filler fills messages with random values, of the kinds that test the encoder: strings that need escaping
// (HTML, control characters, invalid UTF-8, U+2028), floats at the cutoffs of exponent notation, extreme
// integers, unknown enum numbers, empty and unset fields.
type filler struct{ r *rand.Rand }

var awkwardStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnewline\nreturn\rbell\a\b\f\x00\x1f",
	"caf\u00e9 \u6771\u4eac \U0001F355", "line\u2028para\u2029", "bad \xff\xfe utf8 \xe2\x82", "\x7f del", "trailing \xc3",
}

func (f filler) str() string {
	if f.r.IntN(3) == 0 {
		return awkwardStrings[f.r.IntN(len(awkwardStrings))]
	}
	b := make([]byte, f.r.IntN(24))
	for i := range b {
		b[i] = byte(f.r.IntN(256))
	}
	if f.r.IntN(2) == 0 {
		return strings.ToValidUTF8(string(b), "?")
	}
	return string(b)
}

var awkwardFloats = []float64{0, math.Copysign(0, -1), 1e-6, 9.99999e-7, 1e21, 9.999e20, 1e-7, 123456789012345678, 0.1, 37.7749, -122.4194, 5e-324, math.MaxFloat64}

func (f filler) float(fd protoreflect.FieldDescriptor) float64 {
	var x float64
	switch f.r.IntN(3) {
	case 0:
		x = awkwardFloats[f.r.IntN(len(awkwardFloats))]
	case 1:
		x = f.r.NormFloat64() * math.Pow(10, float64(f.r.IntN(60)-30))
	default:
		x = math.Float64frombits(f.r.Uint64())
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 1.5
		}
	}
	if fd.Kind() == protoreflect.FloatKind {
		x = float64(float32(x))
		if math.IsInf(x, 0) {
			x = 2.5
		}
	}
	return x
}

func (f filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(f.r.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if f.r.IntN(4) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(1000 + f.r.IntN(10)))
		}
		return protoreflect.ValueOfEnum(vals.Get(f.r.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(f.r.Uint32()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(f.r.Uint64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(f.r.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(f.r.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(f.float(fd)))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(f.float(fd))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.str())
	case protoreflect.BytesKind:
		b := make([]byte, f.r.IntN(20))
		for i := range b {
			b[i] = byte(f.r.IntN(256))
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic(fmt.Sprintf("kind %v", fd.Kind()))
}

// fill sets random values on m's fields, depth levels of messages deep.
func (f filler) fill(m protoreflect.Message, depth int) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		ts := timestamppb.New(time.Unix(f.r.Int64N(4e9), f.r.Int64N(1e9)*int64(f.r.IntN(2))))
		m.Set(m.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(ts.Seconds))
		m.Set(m.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(ts.Nanos))
		return
	case "google.protobuf.Any":
		inner := &messages.OrderStatusView{Id: strings.ToValidUTF8(f.str(), "?"), Status: "ACCEPTED", UpdatedAt: timestamppb.New(time.Unix(f.r.Int64N(4e9), 0))}
		a, err := anypb.New(inner)
		if err != nil {
			panic(err)
		}
		proto.Merge(m.Interface(), a)
		return
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if f.r.IntN(5) == 0 {
			continue // unset
		}
		isMsg := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		switch {
		case fd.IsMap():
			if depth <= 0 && fd.MapValue().Message() != nil {
				continue
			}
			mp := m.Mutable(fd).Map()
			for range f.r.IntN(4) {
				k := f.scalar(fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					f.fill(v.Message(), depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, f.scalar(fd.MapValue()))
				}
			}
		case fd.IsList():
			if depth <= 0 && isMsg {
				continue
			}
			l := m.Mutable(fd).List()
			for range f.r.IntN(4) {
				if isMsg {
					v := l.NewElement()
					f.fill(v.Message(), depth-1)
					l.Append(v)
				} else {
					l.Append(f.scalar(fd))
				}
			}
		case isMsg:
			if depth > 0 {
				f.fill(m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
}

func TestMarshalProtoMatchesReference(t *testing.T) {
	var types []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if mt.Descriptor().ParentFile().Package() == "platter" {
			types = append(types, mt)
		}
		return true
	})
	if len(types) < 50 {
		t.Fatalf("only %d message types of package platter", len(types))
	}
	f := filler{rand.New(rand.NewPCG(1, 2))}
	for _, mt := range types {
		for i := range 30 {
			m := mt.New()
			if i > 0 {
				f.fill(m, 3)
			}
			want, werr := referenceMarshal(m.Interface())
			got, gerr := marshalProto(m.Interface())
			if (werr != nil) != (gerr != nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("%s #%d: error %v, reference error %v", mt.Descriptor().FullName(), i, gerr, werr)
			}
			if string(got) != string(want) {
				t.Fatalf("%s #%d:\n got %s\nwant %s", mt.Descriptor().FullName(), i, got, want)
			}
		}
	}
	// Values the encoder cannot write fail alike.
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		m := &messages.Position{Lat: x}
		_, werr := referenceMarshal(m)
		_, gerr := marshalProto(m)
		if werr == nil || gerr == nil || werr.Error() != gerr.Error() {
			t.Fatalf("lat %v: error %v, reference error %v", x, gerr, werr)
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
	for _, s := range awkwardStrings {
		check(s)
	}
	for c := range rune(0x3000) {
		check(string(c))
		check("a" + string(c) + "b")
	}
	check(string(utf8.RuneError))
	for range 20000 {
		b := make([]byte, r.IntN(16))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		check(string(b))
	}
}

func TestAppendJSONFloatMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	check := func(x float64) {
		if math.IsInf(x, 0) {
			return
		}
		want, _ := json.Marshal(x)
		if got := appendJSONFloat(nil, x); string(got) != string(want) {
			t.Fatalf("%v: got %s, want %s", x, got, want)
		}
	}
	for _, x := range awkwardFloats {
		check(x)
		check(-x)
	}
	for range 100000 {
		x := math.Float64frombits(r.Uint64())
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		check(x)
		check(float64(float32(x)))
		check(r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30)))
	}
}

// benchOrder is an order as GET /v1/orders/{id} answers it.
func benchOrder() *messages.OrderView {
	at := timestamppb.New(time.Date(2026, 11, 25, 12, 0, 0, 123000000, time.UTC))
	o := &messages.OrderView{
		Id: "o_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e0f", CustomerId: "c_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e10",
		RestaurantId: "r_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e11", TotalCents: 3750, Status: "DASHER_ASSIGNED",
		KitchenStatus: "PREPARING", DeliveryStatus: "ASSIGNED", DasherId: "d_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e12",
		PrepMinutes: 15, Pickup: &messages.Position{Lat: 37.7749, Lng: -122.4194}, Dropoff: &messages.Position{Lat: 37.7849, Lng: -122.4094},
		Area: "8928308280fffff", PlacedAt: at, UpdatedAt: at,
	}
	for i := range 3 {
		o.Items = append(o.Items, &messages.OrderLine{MenuItemId: fmt.Sprintf("item-%d", i), Name: "Pad Thai", Quantity: 1, PriceCents: 1250})
		o.Timeline = append(o.Timeline, &messages.TimelineEntry{At: at, Type: "ORDER_ACCEPTED"})
	}
	return o
}

func BenchmarkMarshalProto(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    proto.Message
	}{
		{"Status", &messages.OrderStatusView{Id: "o_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e0f", Status: "ACCEPTED", UpdatedAt: timestamppb.Now()}},
		{"Order", benchOrder()},
	} {
		for _, enc := range []struct {
			name string
			f    func(proto.Message) ([]byte, error)
		}{{"Reference", referenceMarshal}, {"Direct", marshalProto}} {
			b.Run(tc.name+"/"+enc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := enc.f(tc.m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
