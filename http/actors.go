package http

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/platterhq/platter/messages"
)

// Actors is the port to the actor grains. Implementations must be safe for concurrent use and return an *Error
// (the actor's stable code, ErrNotReady, ErrUnavailable) for every failure a client should see; any other error
// is reported to the client as INTERNAL.
type Actors interface {
	// Call sends req to the rpc method of the grain kind ("Customer", "Restaurant", "Order", "Area", "Dasher":
	// the service names of messages/proto) with identity, and returns the rpc's answer. ctx's deadline bounds
	// the call (with retries while the identity moves).
	Call(ctx context.Context, kind, identity, method string, req proto.Message) (proto.Message, error)
	// PollFeed is the PollFeed rpc of kind: one attempt that may stay parked in the actor for req.WaitMs. It
	// answers an empty page when the wait ends, when the actor could not answer within the wait (it moved or
	// stopped; the client polls again from its cursor), or when ctx ends first.
	PollFeed(ctx context.Context, kind, identity string, req *messages.PollFeed) (*messages.FeedPage, error)
}

// The grain kinds the edge calls (the service names in messages/proto).
const (
	kindCustomer   = "Customer"
	kindRestaurant = "Restaurant"
	kindOrder      = "Order"
	kindArea       = "Area"
	kindDasher     = "Dasher"
)

// callActor calls an actor and checks the answer's type.
func callActor[T proto.Message](ctx context.Context, a Actors, kind, identity, method string, req proto.Message) (T, error) {
	var zero T
	res, err := a.Call(ctx, kind, identity, method, req)
	if err != nil {
		return zero, err
	}
	t, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("call %s.%s: answer is %T, want %T", kind, method, res, zero)
	}
	return t, nil
}

var grainMethods sync.Map // "Kind.Method" -> protoreflect.MethodDescriptor

// GrainMethod returns the descriptor of rpc method of the grain service kind, checking that req is its request
// type. Implementations of Actors use it to find the method index and the answer type.
func GrainMethod(kind, method string, req proto.Message) (protoreflect.MethodDescriptor, error) {
	key := kind + "." + method
	var md protoreflect.MethodDescriptor
	if v, ok := grainMethods.Load(key); ok {
		md = v.(protoreflect.MethodDescriptor)
	} else {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("platter." + kind))
		if err != nil {
			return nil, fmt.Errorf("grain %s: %w", kind, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("grain %s: not a service", kind)
		}
		md = sd.Methods().ByName(protoreflect.Name(method))
		if md == nil {
			return nil, fmt.Errorf("grain %s has no method %s", kind, method)
		}
		grainMethods.Store(key, md)
	}
	if got := req.ProtoReflect().Descriptor().FullName(); got != md.Input().FullName() {
		return nil, fmt.Errorf("grain %s.%s takes %s, not %s", kind, method, md.Input().FullName(), got)
	}
	return md, nil
}

// ensure the generated types are registered before GrainMethod looks them up.
var _ = messages.File_customer_proto
