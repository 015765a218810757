package http

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"

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

// marshalProto encodes m as JSON for a response.
func marshalProto(m proto.Message) ([]byte, error) {
	v, err := messageValue(m.ProtoReflect())
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func messageValue(m protoreflect.Message) (any, error) {
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
		return messageValue(inner.ProtoReflect())
	}
	fields := m.Descriptor().Fields()
	out := make(map[string]any, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		v, err := fieldValue(fd, m.Get(fd))
		if err != nil {
			return nil, err
		}
		out[string(fd.Name())] = v
	}
	return out, nil
}

func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, 0, l.Len())
		for i := range l.Len() {
			x, err := singular(fd, l.Get(i))
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
			if x, err = singular(fd.MapValue(), mv); err != nil {
				return false
			}
			out[k.String()] = x
			return true
		})
		return out, err
	}
	return singular(fd, v)
}

func singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageValue(v.Message())
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
	default: // the signed integer kinds
		return v.Int(), nil
	}
}
