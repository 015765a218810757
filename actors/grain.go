package actors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/messages"
)

// hosted is embedded, next to the generated grain actor, in the actor each kind's props produce. It carries the
// node's Deps to the grain (read in Init through ctx.Actor(), see Kinds) and, once the grain is activated, routes
// to it what the generated dispatcher cannot handle: PollFeed requests (which may be answered later), the
// activation's messages to itself (delivery outcomes, retries, timer wake-ups, poll deadlines) and its stop.
// Each kind's actor overrides Receive to go through it:
//
//	type orderActor struct {
//		messages.OrderActor
//		hosted
//	}
//
//	func (a *orderActor) Receive(ctx actor.Context) { a.receive(ctx, a.OrderActor.Receive) }
type hosted struct {
	deps      *Deps
	pollIndex int32 // method index of PollFeed in the kind's service; -1 when it has none
	grain     hostedGrain
}

func newHosted(deps *Deps, kind string) hosted {
	h := hosted{deps: deps, pollIndex: -1}
	if idx, err := methodIndex(kind, "PollFeed"); err == nil {
		h.pollIndex = idx
	}
	return h
}

func (h *hosted) nodeDeps() *Deps    { return h.deps }
func (h *hosted) bind(g hostedGrain) { h.grain = g }
func (h *hosted) receive(ctx actor.Context, next func(actor.Context)) {
	if h.grain != nil && h.grain.intercept(ctx, h.pollIndex) {
		return
	}
	next(ctx)
}

// depsCarrier is what grain.activate expects ctx.Actor() to be.
type depsCarrier interface {
	nodeDeps() *Deps
	bind(hostedGrain)
}

// hostedGrain is the non-generic face of a grain[S] for hosted.
type hostedGrain interface {
	intercept(ctx actor.Context, pollIndex int32) bool
}

// restaurantActor is what the Restaurant kind spawns: the generated dispatcher plus the node's Deps.
type restaurantActor struct {
	messages.RestaurantActor
	hosted
}

func (a *restaurantActor) Receive(ctx actor.Context) { a.receive(ctx, a.RestaurantActor.Receive) }

// streamOf names an identity's journal stream: "<kind in lower case>/<identity>", e.g. "restaurant/r_1".
func streamOf(kind, identity string) string {
	return strings.ToLower(kind) + "/" + identity
}

// grain is the protoactor side of every kind: it activates the entity in Init, turns errors into grain error
// responses, stops the activation once it may no longer write (it lost the write race, or a write failed), and
// runs the messaging machinery every kind shares: the Deliver and Wake rpcs (inbox, timers), outbox delivery
// (outbox.go), timers (timers.go) and parked feed polls (feed.go). A grain kind embeds grain[S] and implements the
// rest of the generated interface with short handlers:
//
//	func (r *Restaurant) Init(ctx pcluster.GrainContext) {
//		r.activate(ctx, KindRestaurant, &messages.RestaurantState{}, applyRestaurant, withDeliver(decideDeliverRestaurant))
//	}
//
//	func (r *Restaurant) UpdateMenu(req *messages.UpdateMenu, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
//		if err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
//			return decideUpdateMenu(s, req, now)
//		}); err != nil {
//			return nil, err
//		}
//		return restaurantView(ctx.Identity(), r.state()), nil
//	}
//
// grain[S] provides Deliver, Wake, PollFeed, Terminate and ReceiveDefault; a kind should not define them.
type grain[S proto.Message] struct {
	entity   *entity[S]
	log      *slog.Logger
	deps     *Deps
	failed   bool // Init could not load the stream
	stopping bool // Poison sent: requests still queued are refused

	onDeliver deliverFunc[S]
	onTimer   timerFunc[S]

	// Set by activate; used to send the activation messages from other goroutines and to call other grains.
	cluster *pcluster.Cluster
	system  *actor.ActorSystem
	self    *actor.PID

	courier courier
	timer   *time.Timer // in-memory wake-up for the earliest timer
	polls   map[uint64]*parkedPoll
	pollSeq uint64
}

// grainOption configures the messaging hooks of a grain at activation.
type grainOption[S proto.Message] func(*grain[S])

// withDeliver sets the kind's decision on delivered messages (without it, Deliver answers an error).
func withDeliver[S proto.Message](f deliverFunc[S]) grainOption[S] {
	return func(g *grain[S]) { g.onDeliver = f }
}

// withTimers sets the kind's decision on fired timers (without it, a fired timer is removed without effect).
func withTimers[S proto.Message](f timerFunc[S]) grainOption[S] {
	return func(g *grain[S]) { g.onTimer = f }
}

// activate loads the identity's stream into state. On failure it logs, stops the activation, and makes every
// request already queued answer UNAVAILABLE. On success it sends itself a wake-up that delivers a pending outbox
// and fires due timers.
func (g *grain[S]) activate(ctx pcluster.GrainContext, kind string, state S, apply func(S, proto.Message) error, opts ...grainOption[S]) {
	for _, o := range opts {
		o(g)
	}
	g.cluster, g.system, g.self = ctx.Cluster(), ctx.ActorSystem(), ctx.Self()
	g.courier = courier{dests: make(map[string]*destination)}
	g.polls = make(map[uint64]*parkedPoll)
	carrier, ok := ctx.Actor().(depsCarrier)
	if !ok {
		// Only possible if a kind was built without Kinds (e.g. the generated GetRestaurantKind): a wiring bug.
		ctx.Logger().Error("grain activated without node dependencies; build kinds with actors.Kinds",
			slog.String("kind", kind), slog.String("identity", ctx.Identity()))
		g.log = ctx.Logger()
		g.fail(ctx)
		return
	}
	deps := carrier.nodeDeps()
	g.deps = deps
	g.log = deps.Logger.With(slog.String("kind", kind), slog.String("identity", ctx.Identity()))
	e, err := loadEntity(context.Background(), deps, streamOf(kind, ctx.Identity()), state, apply)
	if err != nil {
		g.log.Error("activation failed", slog.Any("error", err))
		g.fail(ctx)
		return
	}
	g.entity = e
	carrier.bind(g)
	g.log.Debug("activated", slog.Uint64("seq", e.seq))
	if len(e.box.outbox) > 0 || len(e.box.timers) > 0 {
		ctx.Send(ctx.Self(), wakeSelf{})
	}
}

func (g *grain[S]) fail(ctx pcluster.GrainContext) {
	g.failed = true
	g.stop(ctx)
}

// stop asks the activation to stop after the requests already queued (which are refused).
func (g *grain[S]) stop(ctx interface{ Poison(*actor.PID) }) {
	if !g.stopping {
		g.stopping = true
		ctx.Poison(g.self)
	}
}

// state is the current state; only valid after a successful activate (callers check query or command first).
func (g *grain[S]) state() S {
	return g.entity.state
}

func (g *grain[S]) bg() context.Context { return context.Background() }

// command runs one command through the entity and returns the error to hand to the generated code (nil or a
// *GrainErrorResponse).
func (g *grain[S]) command(ctx pcluster.GrainContext, commandID string, cmd proto.Message, decide func(S, time.Time) ([]proto.Message, error)) error {
	if err := g.query(); err != nil {
		return err
	}
	before := g.entity.seq
	err := g.entity.execute(g.bg(), commandID, cmd, decide)
	g.afterWrite(g.feedAdded(before))
	return g.answer(err, slog.String("command_id", commandID))
}

// feedAdded reports 1 when the entity appended since seq `before` (it may have added feed entries), else 0; the
// parked polls re-read the feed only then.
func (g *grain[S]) feedAdded(before uint64) int {
	if g.entity.seq != before {
		return 1
	}
	return 0
}

// answer converts an entity error to what the generated code hands back, logging infrastructure errors.
func (g *grain[S]) answer(err error, attrs ...any) error {
	if err == nil {
		return nil
	}
	var refusal *Error
	switch {
	case errors.As(err, &refusal):
		return grainError(refusal)
	case errors.Is(err, errStale):
		return grainError(errMoved)
	case errors.Is(err, errUnexpectedPayload):
		g.log.Error("unexpected message", append(attrs, slog.Any("error", err))...)
		return grainError(&Error{Code: messages.ErrorReason_INTERNAL, Message: "unexpected message"})
	default:
		g.log.Error("request failed", append(attrs, slog.Any("error", err))...)
		return grainError(errUnavailable)
	}
}

// afterWrite runs after every write attempt: it stops a broken activation, answers parked polls when feed entries
// were added, starts deliveries of new outbox entries and re-arms the timer wake-up.
func (g *grain[S]) afterWrite(feed int) {
	if g.entity == nil {
		return
	}
	if g.entity.broken {
		if !g.stopping {
			g.stopping = true
			g.system.Root.Poison(g.self)
		}
		return
	}
	if feed > 0 && len(g.polls) > 0 {
		g.wakePolls()
	}
	g.pump()
	g.scheduleTimer()
}

// query returns nil when the activation may answer reads, or the error to answer with.
func (g *grain[S]) query() error {
	switch {
	case g.failed:
		return grainError(errUnavailable)
	case g.entity.broken:
		return grainError(errMoved) // another activation has newer state
	}
	return nil
}

// Deliver applies a message another actor sent (see outbox.go) with the kind's decision (withDeliver) and
// acknowledges it; a duplicate is acknowledged without effect. An error answer makes the sender retry. The decision
// runs only for a message not applied yet, so a side effect it needs first (the Order authorising a payment for a
// delivered PlaceOrder) runs once per message, or again only when the append that follows fails; such a side
// effect must be idempotent (keyed by the message).
func (g *grain[S]) Deliver(env *messages.Envelope, _ pcluster.GrainContext) (*messages.Ack, error) {
	if err := g.query(); err != nil {
		return nil, err
	}
	feed, err := g.entity.receive(g.bg(), env, g.onDeliver)
	g.afterWrite(feed)
	if err := g.answer(err, slog.String("from", env.GetFromStream()), slog.Uint64("out_seq", env.GetOutSeq())); err != nil {
		return nil, err
	}
	return &messages.Ack{}, nil
}

// Wake fires the due timers, resumes the outbox delivery and moves the reminder (the reminder scanner calls it).
func (g *grain[S]) Wake(_ *messages.Wake, _ pcluster.GrainContext) (*messages.Ack, error) {
	if err := g.query(); err != nil {
		return nil, err
	}
	if err := g.answer(g.wake()); err != nil {
		return nil, err
	}
	return &messages.Ack{}, nil
}

// wake fires due timers, delivers, and writes the reminder the stream needs now.
func (g *grain[S]) wake() error {
	if g.entity == nil || g.entity.broken {
		return errStale
	}
	_, feed, err := g.entity.fireDue(g.bg(), g.onTimer)
	g.afterWrite(feed)
	if err != nil {
		return err
	}
	if !g.delivering() {
		err = g.entity.syncReminder(g.bg())
		g.afterWrite(0)
	}
	return err
}

// PollFeed answers without waiting. Requests through the cluster never reach it (hosted intercepts them to park
// them); it serves in-process callers of the grain interface.
func (g *grain[S]) PollFeed(req *messages.PollFeed, _ pcluster.GrainContext) (*messages.FeedPage, error) {
	if err := g.query(); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > g.deps.Workflow.FeedPageLimit {
		limit = g.deps.Workflow.FeedPageLimit
	}
	page, err := g.readPage(req.GetAfter(), limit)
	if err != nil {
		return nil, grainError(errUnavailable)
	}
	return page, nil
}

// Terminate runs when the activation stops (passivation, fence, shutdown); the state is already durable.
func (g *grain[S]) Terminate(pcluster.GrainContext) {
	if g.log != nil {
		g.log.Debug("deactivated")
	}
}

// ReceiveDefault handles the activation's messages to itself when the kind's actor does not route them through
// hosted.receive first (then only PollFeed cannot park), and ignores every other message.
func (g *grain[S]) ReceiveDefault(ctx pcluster.GrainContext) {
	if g.entity != nil {
		g.intercept(ctx, -1)
	}
}

// intercept handles, before the generated dispatcher, what it cannot: PollFeed requests, the activation's
// messages to itself, and its stop (timers cancelled, parked polls answered). It reports whether it consumed the
// message.
func (g *grain[S]) intercept(ctx actor.Context, pollIndex int32) bool {
	switch m := ctx.Message().(type) {
	case *pcluster.GrainRequest:
		if pollIndex >= 0 && m.MethodIndex == pollIndex {
			g.pollFeed(ctx, m)
			return true
		}
	case wakeSelf:
		if err := g.wake(); err != nil && !errors.Is(err, errStale) {
			g.log.Error("wake failed", slog.Any("error", err))
		}
		return true
	case deliveryDone:
		g.delivered(m)
		return true
	case retryDestination:
		g.retried(m)
		return true
	case pollExpired:
		g.pollEnded(m)
		return true
	case *actor.Stopping:
		g.stopping = true
		if g.timer != nil {
			g.timer.Stop()
		}
		g.courier.stop()
		g.releasePolls()
	}
	return false
}
