package actors

// Dasher: one actor per courier (identity = dasher id, stream "dasher/<id>"): online state, position, capacity,
// pending offers, assignments and its feed. While online it registers with the area of its cell and the
// neighbouring areas (DasherStatusChanged to each), which offer it orders.
//
// Transition table. Commands are validated first (INVALID_ARGUMENT in any state); every command and message but
// Create is refused NOT_FOUND (or ignored, for messages) before Create.
//
//	state     input                     decision                                             events (→ sends, feed)
//	--------  ------------------------  ---------------------------------------------------  ------------------------------------------
//	absent    Create                    create, capacity default 1                           DasherCreated
//	created   Create                    refuse ALREADY_EXISTS                                -
//	offline   SetStatus online          go online at position, register with the areas       DasherWentOnline (→ DasherStatusChanged)
//	online    SetStatus online          as UpdateLocation                                    DasherMoved …
//	online    SetStatus offline         unregister, return the pending offers                DasherWentOffline (→ DasherStatusChanged),
//	                                                                                          OfferSettled RETURNED (→ OfferDeclined
//	                                                                                          unavailable)
//	offline   SetStatus offline         nothing                                              -
//	offline   UpdateLocation            record the position                                  DasherMoved
//	online    UpdateLocation            record; tell the areas when the cell changed or the  DasherMoved (→ DasherStatusChanged to new
//	                                    dasher moved DasherReportDistanceM                   areas, offline to areas left behind)
//	online    AcceptOffer               pending, unexpired offer and free capacity → ask the  OfferSettled ACCEPTED, AssignmentAdded
//	                                    Order (AssignDasher); OK → assigned                  (→ DasherStatusChanged)
//	                                    the Order refuses → OFFER_TAKEN / OFFER_EXPIRED      OfferSettled TAKEN|EXPIRED
//	                                    offer expired here → OFFER_EXPIRED; offer gone →      -
//	                                    how it ended (OFFER_TAKEN, OFFER_EXPIRED, …);
//	                                    at capacity → FAILED_PRECONDITION
//	offline   AcceptOffer               refuse FAILED_PRECONDITION                           -
//	assigned  AcceptOffer (same order)  answer the view (already assigned)                   -
//	any       DeclineOffer (pending)    decline; the area offers the next dasher             OfferSettled DECLINED (→ OfferDeclined)
//	any       DeclineOffer (assigned)   give it back: the Order releases the dasher first     AssignmentEnded (→ DasherStatusChanged)
//	                                    (ReleaseDasher; refused after pickup), then the
//	                                    area dispatches the order again
//	online    DeliveryOffered           hold the offer (auto_assigned: the grain accepts it   OfferHeld, feed DELIVERY_OFFERED
//	                                    at once, see Dasher.autoAccept)
//	offline   DeliveryOffered           return it                                            → OfferDeclined unavailable
//	any       OfferExpired (pending)    count it; MaxConsecutiveExpiries in a row → offline  OfferSettled EXPIRED, feed OFFER_EXPIRED,
//	                                    and told so                                          [offline as above, feed DASHER_OFFLINE]
//	any       OfferWithdrawn (pending)  drop the offer                                       OfferSettled WITHDRAWN, feed OFFER_WITHDRAWN
//	any       DasherAssigned            record the assignment if not yet (auto-assign, or    AssignmentAdded (→ DasherStatusChanged),
//	                                    a lost reply)                                        feed DASHER_ASSIGNED
//	assigned  FoodReady                 tell                                                 feed FOOD_READY
//	assigned  OrderDelivered            end the assignment, capacity freed                   AssignmentEnded (→ DasherStatusChanged),
//	                                                                                          feed ORDER_DELIVERED
//	any       OrderCancelled            end the assignment / drop the offer                  AssignmentEnded | OfferSettled WITHDRAWN,
//	                                                                                          feed ORDER_CANCELLED
//	assigned  DasherReleased            end the assignment                                   AssignmentEnded, feed DASHER_RELEASED
//
// Consecutive expiries count OfferSettled EXPIRED; ACCEPTED, DECLINED and TAKEN (the dasher answered) and going
// online reset the count. Feed entries are the *messages.FeedItem values among a decision's output: the entity
// appends them to the dasher's feed in the same write as the events.

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Kind name of the Dasher grain.
const KindDasher = "Dasher"

// Dasher limits and defaults.
const (
	DefaultDasherCapacity = 1
	MaxDasherCapacity     = 10
	MaxVehicleLen         = 100
	MaxDeclineReasonLen   = 500
	// MaxSettledOffers is how many ended offers a dasher remembers, to answer a late accept with how it ended.
	MaxSettledOffers = 64
)

// Feed entry types of the dasher's feed (the API's names).
const (
	FeedDeliveryOffered = "DELIVERY_OFFERED"
	FeedOfferExpired    = "OFFER_EXPIRED"
	FeedOfferWithdrawn  = "OFFER_WITHDRAWN"
	FeedDasherAssigned  = "DASHER_ASSIGNED"
	FeedFoodReady       = "FOOD_READY"
	FeedOrderDelivered  = "ORDER_DELIVERED"
	FeedOrderCancelled  = "ORDER_CANCELLED"
	FeedDasherReleased  = "DASHER_RELEASED"
	FeedDasherOffline   = "DASHER_OFFLINE"
)

// Dasher is the Dasher grain.
type Dasher struct {
	grain[*messages.DasherState]
}

var _ messages.Dasher = (*Dasher)(nil)

// dasherActor is what the Dasher kind spawns: the generated dispatcher plus the node's Deps (see hosted).
type dasherActor struct {
	messages.DasherActor
	hosted
}

func (a *dasherActor) Receive(ctx actor.Context) { a.receive(ctx, a.DasherActor.Receive) }

// acceptAuto is the message a Dasher activation sends itself to accept the auto-assigned offers it holds, after
// the delivery that brought them is acknowledged.
type acceptAuto struct{}

// Init loads the dasher's stream and installs its decision on delivered messages.
func (d *Dasher) Init(ctx pcluster.GrainContext) {
	id := ctx.Identity()
	d.activate(ctx, KindDasher, &messages.DasherState{}, applyDasher,
		withDeliver(func(s *messages.DasherState, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
			return decideDeliverDasher(id, s, payload, d.deps.Workflow, now)
		}))
	if d.entity != nil && len(autoAcceptable(d.state())) > 0 {
		ctx.Send(ctx.Self(), acceptAuto{})
	}
}

// Deliver applies a message (grain.Deliver), then accepts any auto-assigned offer it brought.
func (d *Dasher) Deliver(env *messages.Envelope, ctx pcluster.GrainContext) (*messages.Ack, error) {
	ack, err := d.grain.Deliver(env, ctx)
	if err == nil && !d.entity.broken && len(autoAcceptable(d.state())) > 0 {
		ctx.Send(ctx.Self(), acceptAuto{})
	}
	return ack, err
}

// ReceiveDefault handles the activation's acceptAuto message: each auto-assigned offer is accepted as if the
// dasher had (capacity and offer checked, then the Order asked); one the dasher cannot take is declined, so that
// the area assigns the next dasher.
func (d *Dasher) ReceiveDefault(ctx pcluster.GrainContext) {
	if _, ok := ctx.Message().(acceptAuto); !ok || d.query() != nil {
		return
	}
	for _, orderID := range autoAcceptable(d.state()) {
		req := &messages.AcceptOffer{CommandId: "auto-accept/" + orderID, OrderId: orderID}
		err := d.accept(ctx, req)
		if err == nil || d.entity.broken {
			continue
		}
		refusal := AsError(err)
		if refusal.Code == messages.ErrorReason_UNAVAILABLE {
			// The Order did not answer: the offer stays held; the area's expiry moves the order on.
			d.log.Warn("auto-assignment not confirmed", slog.String("order_id", orderID), slog.String("reason", refusal.Message))
			continue
		}
		if _, held := d.state().GetOffers()[orderID]; !held {
			continue // settled by the refusal (taken, expired)
		}
		reason := "auto-assignment refused: " + refusal.Message
		if err := d.command(ctx, "auto-return/"+orderID, req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
			return decideReturnOffer(ctx.Identity(), s, orderID, reason, d.deps.Workflow, now)
		}); err != nil {
			d.log.Warn("auto-assignment decline failed", slog.String("order_id", orderID), slog.Any("error", err))
		}
	}
}

// Create creates the dasher.
func (d *Dasher) Create(req *messages.CreateDasher, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	err := d.command(ctx, req.GetCommandId(), req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
		return decideCreateDasher(s, req, now)
	})
	if err != nil {
		return nil, err
	}
	return dasherView(ctx.Identity(), d.state()), nil
}

// Get answers the view, or NOT_FOUND for a dasher never created (that activation then stops at once).
func (d *Dasher) Get(_ *messages.GetDasher, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	if err := d.query(); err != nil {
		return nil, err
	}
	if !d.state().GetCreated() {
		d.stop(ctx)
		return nil, grainError(errNoDasher)
	}
	return dasherView(ctx.Identity(), d.state()), nil
}

// SetStatus goes online at a position, or offline.
func (d *Dasher) SetStatus(req *messages.SetDasherStatus, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	err := d.command(ctx, req.GetCommandId(), req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
		return decideSetDasherStatus(ctx.Identity(), s, req, d.deps.Workflow, now)
	})
	if err != nil {
		return nil, err
	}
	return dasherView(ctx.Identity(), d.state()), nil
}

// UpdateLocation records the dasher's position.
func (d *Dasher) UpdateLocation(req *messages.UpdateDasherLocation, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	err := d.command(ctx, req.GetCommandId(), req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
		return decideUpdateDasherLocation(ctx.Identity(), s, req, d.deps.Workflow, now)
	})
	if err != nil {
		return nil, err
	}
	return dasherView(ctx.Identity(), d.state()), nil
}

// AcceptOffer accepts a pending offer: OK when the Order assigned this dasher, OFFER_TAKEN when another dasher was
// first, OFFER_EXPIRED when the offer or the order's need for a dasher ended.
func (d *Dasher) AcceptOffer(req *messages.AcceptOffer, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	if err := d.accept(ctx, req); err != nil {
		return nil, err
	}
	return dasherView(ctx.Identity(), d.state()), nil
}

// accept runs an acceptance: the checks of the dasher, then the one synchronous call between actors, Dasher →
// Order (the Order never calls back synchronously, so no cycle of waiting actors can form), then the record of
// the outcome. The Order de-duplicates the call by its command id, derived from req's, so a retried accept is
// safe at every step.
func (d *Dasher) accept(ctx pcluster.GrainContext, req *messages.AcceptOffer) error {
	if err := d.query(); err != nil {
		return err
	}
	if replayed, err := d.entity.replayed(req.GetCommandId(), req); replayed || err != nil {
		return d.answer(err)
	}
	assigned, refusal := checkAcceptOffer(d.state(), req, d.deps.Now())
	if refusal != nil {
		return grainError(refusal)
	}
	if assigned {
		return nil
	}
	id, orderID := ctx.Identity(), req.GetOrderId()
	_, err := messages.GetOrderGrainClient(ctx.Cluster(), orderID).AssignDasher(
		&messages.AssignDasher{CommandId: "dasher/" + id + "/" + req.GetCommandId(), DasherId: id},
		pcluster.WithTimeout(d.deps.Workflow.OrderCallTimeout))
	if err == nil {
		return d.command(ctx, req.GetCommandId(), req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
			return decideOfferAccepted(id, s, orderID, d.deps.Workflow, now)
		})
	}
	lost := AsError(err)
	switch lost.Code {
	case messages.ErrorReason_OFFER_TAKEN, messages.ErrorReason_OFFER_EXPIRED, messages.ErrorReason_NOT_FOUND:
		if lost.Code == messages.ErrorReason_NOT_FOUND {
			lost = refuse(messages.ErrorReason_OFFER_EXPIRED, "the order no longer exists")
		}
		// Recorded under a derived id: a retry of this accept finds the offer settled and gets the same answer.
		if err := d.command(ctx, req.GetCommandId()+"/lost", req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
			return decideOfferLost(id, s, orderID, lost.Code, d.deps.Workflow, now)
		}); err != nil {
			return err
		}
		return grainError(lost)
	default:
		d.log.Warn("order did not confirm the acceptance", slog.String("order_id", orderID), slog.String("code", lost.Code.String()))
		return grainError(&Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the order did not answer; retry"})
	}
}

// DeclineOffer declines a pending offer (the area offers the next dasher), or gives back an assignment before
// pickup: the Order releases the dasher (ReleaseDasher, a synchronous call like AssignDasher) and the area
// dispatches the order again.
func (d *Dasher) DeclineOffer(req *messages.DeclineOffer, ctx pcluster.GrainContext) (*messages.DasherView, error) {
	if err := d.query(); err != nil {
		return nil, err
	}
	id := ctx.Identity()
	if replayed, err := d.entity.replayed(req.GetCommandId(), req); !replayed && err == nil && hasAssignment(d.state(), req.GetOrderId()) {
		_, err := messages.GetOrderGrainClient(ctx.Cluster(), req.GetOrderId()).ReleaseDasher(
			&messages.ReleaseDasher{CommandId: "dasher/" + id + "/" + req.GetCommandId(), DasherId: id, Reason: req.GetReason()},
			pcluster.WithTimeout(d.deps.Workflow.OrderCallTimeout))
		if err != nil {
			refusal := AsError(err)
			if refusal.Code == messages.ErrorReason_UNAVAILABLE {
				return nil, grainError(refusal)
			}
			return nil, grainError(&Error{Code: refusal.Code, Message: "the order keeps the dasher: " + refusal.Message})
		}
	}
	err := d.command(ctx, req.GetCommandId(), req, func(s *messages.DasherState, now time.Time) ([]proto.Message, error) {
		return decideDeclineOffer(id, s, req, d.deps.Workflow, now)
	})
	if err != nil {
		return nil, err
	}
	return dasherView(id, d.state()), nil
}

// ---- Decisions ----

// dasherDecision accumulates the events of one decision over a scratch copy of the state (a dasher's state is
// small), so that later steps see earlier ones.
type dasherDecision struct {
	id     string
	cfg    WorkflowConfig
	now    time.Time
	s      *messages.DasherState
	events []proto.Message
}

func newDasherDecision(id string, s *messages.DasherState, cfg WorkflowConfig, now time.Time) *dasherDecision {
	return &dasherDecision{id: id, cfg: cfg, now: now, s: proto.Clone(s).(*messages.DasherState)}
}

func (d *dasherDecision) emit(ev proto.Message) error {
	if err := applyDasher(d.s, ev); err != nil {
		return err
	}
	d.events = append(d.events, ev)
	return nil
}

func (d *dasherDecision) send(kind, id string, payload proto.Message) error {
	ev, err := sendTo(kind, id, payload)
	if err != nil {
		return err
	}
	d.events = append(d.events, ev)
	return nil
}

// feed adds an entry to the dasher's feed: type, order, and the message that caused it.
func (d *dasherDecision) feed(typ, orderID string, data proto.Message) error {
	packed, err := anypb.New(data)
	if err != nil {
		return fmt.Errorf("pack feed entry %s: %w", typ, err)
	}
	d.events = append(d.events, &messages.FeedItem{Type: typ, OrderId: orderID, At: timestamppb.New(d.now), Data: packed})
	return nil
}

// status is what the areas hear of the dasher now.
func (d *dasherDecision) status(online bool) *messages.DasherStatusChanged {
	st := &messages.DasherStatusChanged{DasherId: d.id, Online: online, At: timestamppb.New(d.now)}
	if online {
		st.Position = d.s.GetPosition()
		st.Cell = d.s.GetCell()
		st.FreeCapacity = freeCapacity(d.s)
	}
	return st
}

// report tells every area the dasher is registered with its current status.
func (d *dasherDecision) report() error {
	if !d.s.GetOnline() {
		return nil
	}
	for _, area := range d.s.GetAreas() {
		if err := d.send(KindArea, area, d.status(true)); err != nil {
			return err
		}
	}
	return nil
}

func decideCreateDasher(s *messages.DasherState, c *messages.CreateDasher, now time.Time) ([]proto.Message, error) {
	if err := checkText("name", c.GetName(), MaxNameLen, true); err != nil {
		return nil, err
	}
	if err := checkText("vehicle", c.GetVehicle(), MaxVehicleLen, false); err != nil {
		return nil, err
	}
	if c.GetCapacity() < 0 || c.GetCapacity() > MaxDasherCapacity {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "capacity must be 1-%d (0: %d)", MaxDasherCapacity, DefaultDasherCapacity)
	}
	if s.GetCreated() {
		return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the dasher exists already")
	}
	capacity := c.GetCapacity()
	if capacity == 0 {
		capacity = DefaultDasherCapacity
	}
	return []proto.Message{&messages.DasherCreated{
		Name: strings.TrimSpace(c.GetName()), Vehicle: strings.TrimSpace(c.GetVehicle()), Capacity: capacity, CreatedAt: timestamppb.New(now),
	}}, nil
}

func decideSetDasherStatus(id string, s *messages.DasherState, c *messages.SetDasherStatus, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if c.GetOnline() || c.GetPosition() != nil {
		if err := checkPosition(c.GetPosition()); err != nil {
			return nil, err
		}
	}
	if !s.GetCreated() {
		return nil, errNoDasher
	}
	d := newDasherDecision(id, s, cfg, now)
	var err error
	switch {
	case c.GetOnline() && s.GetOnline():
		err = d.move(c.GetPosition())
	case c.GetOnline():
		err = d.goOnline(c.GetPosition())
	case s.GetOnline():
		err = d.goOffline(false, "by the dasher")
	}
	if err != nil {
		return nil, err
	}
	return d.events, nil
}

func decideUpdateDasherLocation(id string, s *messages.DasherState, c *messages.UpdateDasherLocation, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkPosition(c.GetPosition()); err != nil {
		return nil, err
	}
	if !s.GetCreated() {
		return nil, errNoDasher
	}
	d := newDasherDecision(id, s, cfg, now)
	if err := d.move(c.GetPosition()); err != nil {
		return nil, err
	}
	return d.events, nil
}

func (d *dasherDecision) goOnline(p *messages.Position) error {
	cell := AreaOf(p)
	if err := d.emit(&messages.DasherWentOnline{Position: copyPosition(p), Cell: cell, Areas: areasAround(cell), At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	return d.report()
}

// goOffline unregisters from the areas, then returns the pending offers (unavailable: the areas, which heard
// first that the dasher is offline, offer them to others and may offer them to it again later).
func (d *dasherDecision) goOffline(auto bool, reason string) error {
	areas := d.s.GetAreas()
	off := &messages.DasherWentOffline{Auto: auto, Reason: reason, At: timestamppb.New(d.now)}
	if err := d.emit(off); err != nil {
		return err
	}
	for _, area := range areas {
		if err := d.send(KindArea, area, d.status(false)); err != nil {
			return err
		}
	}
	for _, o := range sortedOffers(d.s) {
		if err := d.returnOffer(o, "the dasher went offline"); err != nil {
			return err
		}
	}
	if auto {
		return d.feed(FeedDasherOffline, "", off)
	}
	return nil
}

// move records a new position; online, it re-registers when the cell changed and reports a move of
// DasherReportDistanceM or more.
func (d *dasherDecision) move(p *messages.Position) error {
	if proto.Equal(p, d.s.GetPosition()) {
		return nil
	}
	if !d.s.GetOnline() {
		return d.emit(&messages.DasherMoved{Position: copyPosition(p), At: timestamppb.New(d.now)})
	}
	cell := AreaOf(p)
	if cell == d.s.GetCell() && distanceM(p, d.s.GetReportedPosition()) < d.cfg.DasherReportDistanceM {
		return d.emit(&messages.DasherMoved{Position: copyPosition(p), Cell: cell, Areas: d.s.GetAreas(), At: timestamppb.New(d.now)})
	}
	left := d.s.GetAreas()
	areas := areasAround(cell)
	if err := d.emit(&messages.DasherMoved{Position: copyPosition(p), Cell: cell, Areas: areas, Reported: true, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	stay := make(map[string]bool, len(areas))
	for _, a := range areas {
		stay[a] = true
	}
	for _, a := range left {
		if !stay[a] {
			if err := d.send(KindArea, a, d.status(false)); err != nil {
				return err
			}
		}
	}
	return d.report()
}

// errNoDasher refuses every command but Create before the dasher exists.
var errNoDasher = refuse(messages.ErrorReason_NOT_FOUND, "the dasher does not exist")

// checkAcceptOffer decides whether the dasher may ask the Order for order_id. assigned reports that the order is
// the dasher's already (a retried accept): answer without asking again.
func checkAcceptOffer(s *messages.DasherState, c *messages.AcceptOffer, now time.Time) (assigned bool, err *Error) {
	if c.GetOrderId() == "" {
		return false, refuse(messages.ErrorReason_INVALID_ARGUMENT, "order_id is required")
	}
	if !s.GetCreated() {
		return false, errNoDasher
	}
	if hasAssignment(s, c.GetOrderId()) {
		return true, nil
	}
	offer, ok := s.GetOffers()[c.GetOrderId()]
	if !ok {
		return false, settledRefusal(s, c.GetOrderId())
	}
	switch {
	case !s.GetOnline():
		return false, refuse(messages.ErrorReason_FAILED_PRECONDITION, "go online to accept offers")
	case !offer.GetExpiresAt().AsTime().After(now):
		return false, refuse(messages.ErrorReason_OFFER_EXPIRED, "the offer expired")
	case freeCapacity(s) <= 0:
		return false, refuse(messages.ErrorReason_FAILED_PRECONDITION, "the dasher carries %d orders, its capacity", s.GetCapacity())
	}
	return false, nil
}

// settledRefusal answers an accept of an offer the dasher no longer holds, by how it ended.
func settledRefusal(s *messages.DasherState, orderID string) *Error {
	for _, so := range s.GetSettled() {
		if so.GetOrderId() != orderID {
			continue
		}
		switch so.GetOutcome() {
		case messages.OfferOutcome_OFFER_OUTCOME_EXPIRED:
			return refuse(messages.ErrorReason_OFFER_EXPIRED, "the offer expired")
		case messages.OfferOutcome_OFFER_OUTCOME_TAKEN, messages.OfferOutcome_OFFER_OUTCOME_WITHDRAWN:
			return refuse(messages.ErrorReason_OFFER_TAKEN, "another dasher took the order, or it was cancelled")
		case messages.OfferOutcome_OFFER_OUTCOME_DECLINED, messages.OfferOutcome_OFFER_OUTCOME_RETURNED:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the offer was declined")
		case messages.OfferOutcome_OFFER_OUTCOME_ACCEPTED:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the order is no longer assigned to this dasher")
		}
	}
	return refuse(messages.ErrorReason_NOT_FOUND, "no offer of order %s", orderID)
}

// decideOfferAccepted records what the Order answered OK to: the dasher is assigned the order.
func decideOfferAccepted(id string, s *messages.DasherState, orderID string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	d := newDasherDecision(id, s, cfg, now)
	if err := d.assign(orderID); err != nil {
		return nil, err
	}
	return d.events, nil
}

// decideOfferLost records that the Order refused the dasher (code OFFER_TAKEN or OFFER_EXPIRED).
func decideOfferLost(id string, s *messages.DasherState, orderID string, code messages.ErrorReason, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if _, ok := s.GetOffers()[orderID]; !ok {
		return nil, nil
	}
	outcome := messages.OfferOutcome_OFFER_OUTCOME_TAKEN
	if code == messages.ErrorReason_OFFER_EXPIRED {
		outcome = messages.OfferOutcome_OFFER_OUTCOME_EXPIRED
	}
	return []proto.Message{&messages.OfferSettled{OrderId: orderID, Outcome: outcome, At: timestamppb.New(now)}}, nil
}

// assign records the assignment of orderID (settling its offer) and reports the smaller free capacity.
func (d *dasherDecision) assign(orderID string) error {
	if hasAssignment(d.s, orderID) {
		return nil
	}
	if _, ok := d.s.GetOffers()[orderID]; ok {
		if err := d.emit(&messages.OfferSettled{OrderId: orderID, Outcome: messages.OfferOutcome_OFFER_OUTCOME_ACCEPTED, At: timestamppb.New(d.now)}); err != nil {
			return err
		}
	}
	if err := d.emit(&messages.AssignmentAdded{OrderId: orderID, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	return d.report()
}

func decideDeclineOffer(id string, s *messages.DasherState, c *messages.DeclineOffer, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if c.GetOrderId() == "" {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "order_id is required")
	}
	if err := checkText("reason", c.GetReason(), MaxDeclineReasonLen, false); err != nil {
		return nil, err
	}
	if !s.GetCreated() {
		return nil, errNoDasher
	}
	d := newDasherDecision(id, s, cfg, now)
	offer, ok := s.GetOffers()[c.GetOrderId()]
	switch {
	case ok:
		if err := d.decline(offer, c.GetReason()); err != nil {
			return nil, err
		}
	case hasAssignment(s, c.GetOrderId()):
		// The grain had the Order release the dasher first (ReleaseDasher); its DasherReleased finds nothing left.
		if err := d.emit(&messages.AssignmentEnded{OrderId: c.GetOrderId(), Reason: "given back: " + c.GetReason(), At: timestamppb.New(now)}); err != nil {
			return nil, err
		}
		if err := d.report(); err != nil {
			return nil, err
		}
	default:
		return nil, settledRefusal(s, c.GetOrderId())
	}
	return d.events, nil
}

// decideReturnOffer gives back a held offer the dasher cannot take (an auto-assignment it is too full for, or
// that the Order refused): the area offers it to others, and may offer it to this dasher again later.
func decideReturnOffer(id string, s *messages.DasherState, orderID, reason string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	offer, ok := s.GetOffers()[orderID]
	if !ok {
		return nil, nil
	}
	d := newDasherDecision(id, s, cfg, now)
	if err := d.returnOffer(offer, reason); err != nil {
		return nil, err
	}
	return d.events, nil
}

func (d *dasherDecision) returnOffer(offer *messages.PendingOffer, reason string) error {
	if err := d.emit(&messages.OfferSettled{OrderId: offer.GetOrderId(), Outcome: messages.OfferOutcome_OFFER_OUTCOME_RETURNED, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	return d.send(KindArea, offer.GetArea(), &messages.OfferDeclined{OrderId: offer.GetOrderId(), DasherId: d.id, Reason: reason, DeclinedAt: timestamppb.New(d.now), Unavailable: true})
}

func (d *dasherDecision) decline(offer *messages.PendingOffer, reason string) error {
	if err := d.emit(&messages.OfferSettled{OrderId: offer.GetOrderId(), Outcome: messages.OfferOutcome_OFFER_OUTCOME_DECLINED, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	return d.send(KindArea, offer.GetArea(), &messages.OfferDeclined{OrderId: offer.GetOrderId(), DasherId: d.id, Reason: reason, DeclinedAt: timestamppb.New(d.now)})
}

// decideDeliverDasher decides on a message another actor sent to the dasher.
func decideDeliverDasher(id string, s *messages.DasherState, payload proto.Message, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if !s.GetCreated() {
		return nil, nil // nobody offers or assigns a dasher that was never created; nothing to record
	}
	d := newDasherDecision(id, s, cfg, now)
	var err error
	switch p := payload.(type) {
	case *messages.DeliveryOffered:
		err = d.offered(p)
	case *messages.OfferExpired:
		err = d.expired(p)
	case *messages.OfferWithdrawn:
		if _, ok := d.s.GetOffers()[p.GetOrderId()]; ok {
			if err = d.emit(&messages.OfferSettled{OrderId: p.GetOrderId(), Outcome: messages.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, At: timestamppb.New(now)}); err == nil {
				err = d.feed(FeedOfferWithdrawn, p.GetOrderId(), p)
			}
		}
	case *messages.DasherAssigned:
		if p.GetDasherId() != id {
			return nil, nil
		}
		if err = d.assign(p.GetOrderId()); err == nil {
			err = d.feed(FeedDasherAssigned, p.GetOrderId(), p)
		}
	case *messages.FoodReady:
		if hasAssignment(d.s, p.GetOrderId()) {
			err = d.feed(FeedFoodReady, p.GetOrderId(), p)
		}
	case *messages.OrderDelivered:
		err = d.endAssignment(p.GetOrderId(), "delivered", FeedOrderDelivered, p)
	case *messages.DasherReleased:
		err = d.endAssignment(p.GetOrderId(), "released: "+p.GetReason(), FeedDasherReleased, p)
	case *messages.OrderCancelled:
		if _, ok := d.s.GetOffers()[p.GetOrderId()]; ok {
			if err = d.emit(&messages.OfferSettled{OrderId: p.GetOrderId(), Outcome: messages.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, At: timestamppb.New(now)}); err == nil {
				err = d.feed(FeedOrderCancelled, p.GetOrderId(), p)
			}
		} else {
			err = d.endAssignment(p.GetOrderId(), "cancelled", FeedOrderCancelled, p)
		}
	default:
		return nil, unexpectedPayload(KindDasher, payload)
	}
	if err != nil {
		return nil, err
	}
	return d.events, nil
}

func (d *dasherDecision) offered(p *messages.DeliveryOffered) error {
	orderID := p.GetOrderId()
	if _, held := d.s.GetOffers()[orderID]; held || hasAssignment(d.s, orderID) {
		return nil
	}
	if !d.s.GetOnline() {
		return d.send(KindArea, p.GetArea(), &messages.OfferDeclined{OrderId: orderID, DasherId: d.id, Reason: "the dasher is offline", DeclinedAt: timestamppb.New(d.now), Unavailable: true})
	}
	if err := d.emit(&messages.OfferHeld{Offer: &messages.PendingOffer{
		OrderId: orderID, Area: p.GetArea(), Pickup: p.GetPickup(), Dropoff: p.GetDropoff(), DistanceM: p.GetDistanceM(),
		ExpiresAt: p.GetExpiresAt(), AutoAssigned: p.GetAutoAssigned(),
	}}); err != nil {
		return err
	}
	return d.feed(FeedDeliveryOffered, orderID, p)
}

func (d *dasherDecision) expired(p *messages.OfferExpired) error {
	if _, ok := d.s.GetOffers()[p.GetOrderId()]; !ok {
		return nil // answered before the area's expiry reached the dasher
	}
	if err := d.emit(&messages.OfferSettled{OrderId: p.GetOrderId(), Outcome: messages.OfferOutcome_OFFER_OUTCOME_EXPIRED, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	if err := d.feed(FeedOfferExpired, p.GetOrderId(), p); err != nil {
		return err
	}
	if d.s.GetOnline() && d.s.GetConsecutiveExpiries() >= int32(d.cfg.MaxConsecutiveExpiries) {
		return d.goOffline(true, fmt.Sprintf("%d offers in a row expired", d.s.GetConsecutiveExpiries()))
	}
	return nil
}

func (d *dasherDecision) endAssignment(orderID, reason, feedType string, p proto.Message) error {
	if !hasAssignment(d.s, orderID) {
		return nil
	}
	if err := d.emit(&messages.AssignmentEnded{OrderId: orderID, Reason: reason, At: timestamppb.New(d.now)}); err != nil {
		return err
	}
	if err := d.report(); err != nil {
		return err
	}
	return d.feed(feedType, orderID, p)
}

// autoAcceptable lists the auto-assigned offers the dasher holds, by order id: the grain accepts them at once.
func autoAcceptable(s *messages.DasherState) []string {
	var ids []string
	for _, o := range sortedOffers(s) {
		if o.GetAutoAssigned() {
			ids = append(ids, o.GetOrderId())
		}
	}
	return ids
}

func freeCapacity(s *messages.DasherState) int32 {
	return s.GetCapacity() - int32(len(s.GetAssignments()))
}

func hasAssignment(s *messages.DasherState, orderID string) bool {
	for _, a := range s.GetAssignments() {
		if a == orderID {
			return true
		}
	}
	return false
}

func sortedOffers(s *messages.DasherState) []*messages.PendingOffer {
	out := make([]*messages.PendingOffer, 0, len(s.GetOffers()))
	for _, o := range s.GetOffers() {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetOrderId() < out[j].GetOrderId() })
	return out
}

func copyPosition(p *messages.Position) *messages.Position {
	return &messages.Position{Lat: p.GetLat(), Lng: p.GetLng()}
}

// ---- Fold ----

// applyDasher folds one event into the state. Outbox events and feed entries are not the kind's: it refuses them
// like any unknown event.
func applyDasher(s *messages.DasherState, event proto.Message) error {
	switch e := event.(type) {
	case *messages.DasherCreated:
		s.Created = true
		s.Name = e.GetName()
		s.Vehicle = e.GetVehicle()
		s.Capacity = e.GetCapacity()
		s.CreatedAt = e.GetCreatedAt()
	case *messages.DasherWentOnline:
		s.Online = true
		s.Position = e.GetPosition()
		s.ReportedPosition = e.GetPosition()
		s.Cell = e.GetCell()
		s.Areas = e.GetAreas()
		s.ConsecutiveExpiries = 0
	case *messages.DasherWentOffline:
		s.Online = false
		s.Areas = nil
		s.Cell = ""
		s.ReportedPosition = nil
	case *messages.DasherMoved:
		s.Position = e.GetPosition()
		if s.GetOnline() {
			s.Cell = e.GetCell()
			s.Areas = e.GetAreas()
			if e.GetReported() {
				s.ReportedPosition = e.GetPosition()
			}
		}
	case *messages.OfferHeld:
		if s.Offers == nil {
			s.Offers = make(map[string]*messages.PendingOffer)
		}
		s.Offers[e.GetOffer().GetOrderId()] = e.GetOffer()
	case *messages.OfferSettled:
		if _, ok := s.GetOffers()[e.GetOrderId()]; !ok {
			return fmt.Errorf("dasher: offer of %q settled but not held", e.GetOrderId())
		}
		delete(s.Offers, e.GetOrderId())
		s.Settled = append(s.Settled, &messages.SettledOffer{OrderId: e.GetOrderId(), Outcome: e.GetOutcome()})
		if len(s.Settled) > MaxSettledOffers {
			s.Settled = s.Settled[len(s.Settled)-MaxSettledOffers:]
		}
		switch e.GetOutcome() {
		case messages.OfferOutcome_OFFER_OUTCOME_EXPIRED:
			s.ConsecutiveExpiries++
		case messages.OfferOutcome_OFFER_OUTCOME_ACCEPTED, messages.OfferOutcome_OFFER_OUTCOME_DECLINED, messages.OfferOutcome_OFFER_OUTCOME_TAKEN:
			s.ConsecutiveExpiries = 0
		}
	case *messages.AssignmentAdded:
		s.Assignments = append(s.Assignments, e.GetOrderId())
	case *messages.AssignmentEnded:
		for i, a := range s.Assignments {
			if a == e.GetOrderId() {
				s.Assignments = append(s.Assignments[:i:i], s.Assignments[i+1:]...)
				break
			}
		}
	default:
		return fmt.Errorf("dasher: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

// dasherView answers a copy of the state's public part.
func dasherView(id string, s *messages.DasherState) *messages.DasherView {
	v := &messages.DasherView{
		Id: id, Name: s.GetName(), Vehicle: s.GetVehicle(), Capacity: s.GetCapacity(), Online: s.GetOnline(),
		Position: s.GetPosition(), Cell: s.GetCell(), ConsecutiveExpiries: s.GetConsecutiveExpiries(), CreatedAt: s.GetCreatedAt(),
	}
	v.Offers = sortedOffers(s)
	v.Assignments = append([]string(nil), s.GetAssignments()...)
	sort.Strings(v.Assignments)
	return proto.Clone(v).(*messages.DasherView)
}
