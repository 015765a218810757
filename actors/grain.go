package actors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/messages"
)

// hosted is embedded, next to the generated grain actor, in the actor each kind's props produce: it carries the
// node's Deps to the grain, which reads them in Init through ctx.Actor() (see Kinds).
type hosted struct{ deps *Deps }

func (h hosted) nodeDeps() *Deps { return h.deps }

type depsCarrier interface{ nodeDeps() *Deps }

// restaurantActor is what the Restaurant kind spawns: the generated dispatcher plus the node's Deps.
type restaurantActor struct {
	messages.RestaurantActor
	hosted
}

// streamOf names an identity's journal stream: "<kind in lower case>/<identity>", e.g. "restaurant/r_1".
func streamOf(kind, identity string) string {
	return strings.ToLower(kind) + "/" + identity
}

// grain is the protoactor side of every kind: it activates the entity in Init, turns errors into grain error
// responses, and stops the activation once it may no longer write (it lost the write race, or a write failed).
// A grain kind embeds grain[S] and implements the generated interface with short handlers:
//
//	func (r *Restaurant) UpdateMenu(req *messages.UpdateMenu, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
//		if err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
//			return decideUpdateMenu(s, req, now)
//		}); err != nil {
//			return nil, err
//		}
//		return restaurantView(ctx.Identity(), r.state()), nil
//	}
type grain[S proto.Message] struct {
	entity   *entity[S]
	log      *slog.Logger
	failed   bool // Init could not load the stream
	stopping bool // Poison sent: requests still queued are refused
}

// activate loads the identity's stream into state. On failure it logs, stops the activation, and makes every
// request already queued answer UNAVAILABLE.
func (g *grain[S]) activate(ctx pcluster.GrainContext, kind string, state S, apply func(S, proto.Message) error) {
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
	g.log = deps.Logger.With(slog.String("kind", kind), slog.String("identity", ctx.Identity()))
	e, err := loadEntity(context.Background(), deps, streamOf(kind, ctx.Identity()), state, apply)
	if err != nil {
		g.log.Error("activation failed", slog.Any("error", err))
		g.fail(ctx)
		return
	}
	g.entity = e
	g.log.Debug("activated", slog.Uint64("seq", e.seq))
}

func (g *grain[S]) fail(ctx pcluster.GrainContext) {
	g.failed = true
	g.stop(ctx)
}

// stop asks the activation to stop after the requests already queued (which are refused).
func (g *grain[S]) stop(ctx pcluster.GrainContext) {
	if !g.stopping {
		g.stopping = true
		ctx.Poison(ctx.Self())
	}
}

// state is the current state; only valid after a successful activate (callers check query or command first).
func (g *grain[S]) state() S {
	return g.entity.state
}

// command runs one command through the entity and returns the error to hand to the generated code (nil or a
// *GrainErrorResponse).
func (g *grain[S]) command(ctx pcluster.GrainContext, commandID string, cmd proto.Message, decide func(S, time.Time) ([]proto.Message, error)) error {
	if err := g.query(); err != nil {
		return err
	}
	err := g.entity.execute(context.Background(), commandID, cmd, decide)
	if g.entity.broken {
		g.stop(ctx)
	}
	if err == nil {
		return nil
	}
	var refusal *Error
	switch {
	case errors.As(err, &refusal):
		return grainError(refusal)
	case errors.Is(err, errStale):
		return grainError(errMoved)
	default:
		g.log.Error("command failed", slog.String("command_id", commandID), slog.Any("error", err))
		return grainError(errUnavailable)
	}
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
