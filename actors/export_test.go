package actors

// Test-only exports for the component tests (package actors_test).

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Probe types of the feed entries a probe records.
const (
	ProbeReceived = "PROBE_RECEIVED" // a delivered message (FeedItem.data holds it)
	ProbeFired    = "PROBE_FIRED"    // a fired timer (FeedItem.order_id holds its name)
)

// ProbeSwitch turns the Deliver of a probe kind's identities down (they answer UNAVAILABLE without looking at the
// envelope, as an actor whose store is down would) and up again. Safe for concurrent use.
type ProbeSwitch struct {
	mu      sync.Mutex
	down    map[string]bool // by identity; "*": all
	refused atomic.Int64    // deliveries refused while down
}

// SetDown turns identity's Deliver down or up ("*": every identity without its own setting).
func (p *ProbeSwitch) SetDown(identity string, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down == nil {
		p.down = map[string]bool{}
	}
	p.down[identity] = down
}

func (p *ProbeSwitch) isDown(identity string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.down[identity]; ok {
		return d
	}
	return p.down["*"]
}

// Refused returns how many deliveries were refused while down.
func (p *ProbeSwitch) Refused() int64 { return p.refused.Load() }

// ProbeKind returns a test kind named kind (which must have a grain service with Deliver and Wake, e.g. "Order")
// whose activations run the shared grain machinery (entity, inbox, outbox, timers, feed) with a probe decision:
//   - every delivered message is recorded as a feed entry ProbeReceived (order_id: the message's order_id);
//   - a delivered *messages.TimerSet sets that timer; a fired timer is recorded as ProbeFired;
//   - a probe whose identity starts with "relay" also sends every delivered FoodReady, twice (order ids "<id>-a"
//     and "<id>-b"), to the probe "sink-<identity>" of the same kind: an outbox with two entries to one
//     destination.
func ProbeKind(deps Deps, kind string, sw *ProbeSwitch) *pcluster.Kind {
	return probeKind(deps, kind, sw, false)
}

// ProbeKindUnrouted is ProbeKind with an actor that does not route its messages through hosted.receive (as a kind
// that forgot its Receive override): the activation's messages to itself reach the grain's ReceiveDefault.
func ProbeKindUnrouted(deps Deps, kind string, sw *ProbeSwitch) *pcluster.Kind {
	return probeKind(deps, kind, sw, true)
}

func probeKind(deps Deps, kind string, sw *ProbeSwitch, unrouted bool) *pcluster.Kind {
	d := deps.withDefaults()
	deliverIdx, err := methodIndex(kind, "Deliver")
	if err != nil {
		panic(err)
	}
	wakeIdx, err := methodIndex(kind, "Wake")
	if err != nil {
		panic(err)
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &probeActor{hosted: newHosted(&d, kind), kind: kind, sw: sw, deliverIdx: deliverIdx, wakeIdx: wakeIdx, unrouted: unrouted}
	})
	return pcluster.NewKind(kind, props)
}

type probeGrain struct {
	grain[*emptypb.Empty]
}

type probeActor struct {
	hosted
	kind                string
	sw                  *ProbeSwitch
	deliverIdx, wakeIdx int32
	unrouted            bool
	gctx                pcluster.GrainContext
	g                   *probeGrain
}

func (a *probeActor) Receive(ctx actor.Context) {
	if a.unrouted {
		a.dispatch(ctx)
		return
	}
	a.receive(ctx, a.dispatch)
}

// dispatch is what the generated grain actor does, for Deliver and Wake only.
func (a *probeActor) dispatch(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		a.gctx = pcluster.NewGrainContext(ctx, m.Identity, m.Cluster)
		a.g = &probeGrain{}
		id, kind := m.Identity.GetIdentity(), a.kind
		a.g.activate(a.gctx, a.kind, &emptypb.Empty{}, func(_ *emptypb.Empty, ev proto.Message) error { return unexpectedEvent("probe", ev) },
			withDeliver(func(_ *emptypb.Empty, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
				return decideProbe(kind, id, payload, now)
			}),
			withTimers(func(_ *emptypb.Empty, name string, now time.Time) ([]proto.Message, error) {
				return []proto.Message{&messages.FeedItem{Type: ProbeFired, OrderId: name, At: timestamppb.New(now)}}, nil
			}))
	case *pcluster.GrainRequest:
		var (
			resp proto.Message
			err  error
		)
		switch m.MethodIndex {
		case a.deliverIdx:
			if a.sw != nil && a.sw.isDown(a.gctx.Identity()) {
				a.sw.refused.Add(1)
				ctx.Respond(grainError(errUnavailable))
				return
			}
			env := &messages.Envelope{}
			if err := proto.Unmarshal(m.MessageData, env); err != nil {
				ctx.Respond(grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "bad envelope")))
				return
			}
			resp, err = a.g.Deliver(env, a.gctx)
		case a.wakeIdx:
			resp, err = a.g.Wake(&messages.Wake{}, a.gctx)
		default:
			err = grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "the probe serves Deliver and Wake only"))
		}
		if err != nil {
			ctx.Respond(pcluster.FromError(err))
			return
		}
		ctx.Respond(resp)
	case *actor.Stopped:
		a.g.Terminate(a.gctx)
	case actor.AutoReceiveMessage, actor.SystemMessage, *actor.Started:
	default:
		if a.g != nil {
			a.g.ReceiveDefault(a.gctx)
		}
	}
}

func decideProbe(kind, id string, payload proto.Message, now time.Time) ([]proto.Message, error) {
	data, err := anypb.New(payload)
	if err != nil {
		return nil, err
	}
	var orderID string
	if fd := payload.ProtoReflect().Descriptor().Fields().ByName("order_id"); fd != nil {
		orderID = payload.ProtoReflect().Get(fd).String()
	}
	out := []proto.Message{&messages.FeedItem{Type: ProbeReceived, OrderId: orderID, At: timestamppb.New(now), Data: data}}
	switch p := payload.(type) {
	case *messages.TimerSet:
		out = append(out, p)
	case *messages.FoodReady:
		if len(id) >= 5 && id[:5] == "relay" {
			for _, suffix := range []string{"-a", "-b"} {
				send, err := sendTo(kind, "sink-"+id, &messages.FoodReady{OrderId: p.GetOrderId() + suffix, ReadyAt: p.GetReadyAt()})
				if err != nil {
					return nil, err
				}
				out = append(out, send)
			}
		}
	}
	return out, nil
}

// OrderIDFor exposes orderIDFor.
func OrderIDFor(customer, commandID string) string { return orderIDFor(customer, commandID) }
