package actors

// Order: one actor per order (identity = order id, stream "order/<id>"), the source of truth of the workflow. It
// keeps the kitchen status (the restaurant's side) and the delivery status (the dasher's side) apart, so that the
// food may be ready before a dasher is assigned and the order keeps both facts.
//
// Transition table (orderTransitions below is the same table in code; every cell is tested). Rows are steps,
// columns the order's stage; "→ X" moves to stage X, "=" is allowed and changes nothing, a code is a refusal.
// Cells marked "own" apply only to the order's dasher ("own X/Y": X for the order's dasher, Y for any other
// dasher). The dasher steps (ReleaseDasher, MarkDelivered) answer NF to a dasher that is not the order's dasher,
// in every column, as a restaurant command from another restaurant does (checkRestaurant): a foreign dasher cannot
// learn that an order exists; the order's own dasher gets FP for a step out of order. AssignDasher keeps OT for a
// taken order: only a dasher the order was offered to gets there, and it knows the order exists.
// Abbreviations: NF NOT_FOUND, AE ALREADY_EXISTS, FP FAILED_PRECONDITION, OT OFFER_TAKEN, OE OFFER_EXPIRED.
//
//	step \ stage      absent     pending     accepted   assigned       ready      ready+dasher   picked up     delivered    cancelled  rejected
//	Place             → pending  AE          AE         AE             AE         AE             AE            AE           AE         AE
//	Place (declined)  → rejected AE          AE         AE             AE         AE             AE            AE           AE         AE
//	Accept            NF         → accepted  FP         FP             FP         FP             FP            FP           FP         FP
//	Reject            NF         → rejected  FP         FP             FP         FP             FP            FP           FP         FP
//	MarkReady         NF         FP          → ready    → ready+d      FP         FP             FP            FP           FP         FP
//	MarkPickedUp      NF         FP          FP         FP             FP         → picked up    FP            FP           FP         FP
//	AssignDasher      NF         FP          → assigned own =/OT       → ready+d  own =/OT       own =/OT      own =/OT     OE         OE
//	ReleaseDasher     NF         NF          NF         own →acc./NF   NF         own →ready/NF  own FP/NF     own FP/NF    own =/NF   NF
//	MarkDelivered     NF         NF          NF         own FP/NF      NF         own FP/NF      own →deliv/NF own =/NF     own FP/NF  NF
//	accept timer      =          → cancelled =          =              =          =              =             =            =          =
//	dispatch timer    =          =           → cancelled =             → cancelled =             =             =            =          =
//	Cancel            see the cancellation matrix
//
// Statuses (API.md): pending = PENDING_ACCEPTANCE, accepted = ACCEPTED, assigned = DASHER_ASSIGNED, ready and
// ready+dasher = READY_FOR_PICKUP, then PICKED_UP, DELIVERED, CANCELLED, REJECTED.
//
// Cancellation matrix (cancellationMatrix below; every cell is tested). "full" refunds the total, "share" refunds
// WorkflowConfig.CancelRefundShare of it, "none" refunds nothing; NC is ORDER_NOT_CANCELLABLE. The system cancels
// only through the two timers (acceptance SLA, dispatch SLA). "placing": the customer whose PlaceOrder is waiting
// for the payment processor cancels it (authorize.go): with the authorisation call in flight, the cancel waits for
// its outcome and then runs in the stage the placement left (an authorised order is cancelled from pending with a
// full refund: the authorisation is voided); with no call in flight (the processor failed transiently, the
// customer's outbox retries), the Order records a tombstone, the order placed and cancelled at once with nothing
// authorised (decideCancelPlacement), so the placement is refused when it arrives. Anyone else, and a customer
// without a placement waiting, gets NF.
//
//	by \ stage   absent  pending  accepted  assigned  ready  ready+dasher  picked up  delivered  cancelled  rejected
//	customer     placing full     share     none      share  none          NC         NC         NC         NC
//	restaurant   NF      full     full      full      full   full          NC         NC         NC         NC
//	system       NF      full     full      NC        full   NC            NC         NC         NC         NC
//
// Refunds: the payment is authorised at Place and never captured before delivery, so a refund is the part of the
// authorisation that is not captured: a full refund voids it, a partial one captures total − refund, none
// captures the total. Restaurant rejection → full refund. Delivery → the total is captured.
//
// Who hears of each step (outbox messages; docs/workflow.md):
//
//	OrderPlaced     → Restaurant, Customer
//	OrderAccepted   → Area, Customer, Restaurant (its open-order list; the restaurant adds no feed entry)
//	DasherAssigned  → Customer, Restaurant, Dasher, Area (and FoodReady → Dasher when the food is ready already)
//	FoodReady       → Customer, Dasher (if assigned), Restaurant (open-order list)
//	OrderPickedUp   → Customer, Restaurant (open-order list)
//	OrderDelivered  → Restaurant, Customer, Dasher
//	DasherReleased  → Customer, Restaurant (their lists), Area (dispatches again), Dasher
//	OrderRejected   → Customer, Restaurant (a declined payment: Customer only)
//	OrderCancelled  → Customer, Restaurant, Area (once accepted), Dasher (if assigned)
//
// Timers (entity mailbox, durable reminders): "accept" (set at Place, due at accept_by), "dispatch" (set at
// Accept and at ReleaseDasher, cleared at AssignDasher), "payment" (the next attempt of a capture or void that
// failed transiently). Every command is validated first (INVALID_ARGUMENT whatever the stage); then an absent
// order answers NOT_FOUND, and a restaurant or customer that is not the order's answers NOT_FOUND too.

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Limits of order fields.
const (
	MaxOrderLines   = 100
	MaxLineQuantity = 99
	MaxPrepMinutes  = 240
	MaxIDLen        = 100
	MaxReasonLen    = 500
	MaxTokenLen     = 500
)

// Timer names of the Order.
const (
	timerAccept   = "accept"
	timerDispatch = "dispatch"
	timerPayment  = "payment"
)

// ReasonPaymentDeclined is the reason of an order rejected because its payment was declined.
const ReasonPaymentDeclined = "PAYMENT_DECLINED"

// ---- The grain ----

// Order is the Order grain: the handlers run the decisions below through the shared entity. Two side effects
// happen outside the journal, both at the payment gateway and both under idempotency keys derived from the order
// id, so that a repeat after a crash moves no money twice: the authorisation before PlaceOrder is decided
// (authorize.go), and the settlement (capture or void) when the payment timer fires (payment_settle.go). Both
// calls run off the message loop, so the order answers every other request meanwhile.
type Order struct {
	grain[*messages.OrderState]
	id string

	// authorising is the authorisation call in flight and the requests waiting for its outcome (nil: none).
	authorising *authorising
	// waiting is the last PlaceOrder whose authorisation failed transiently while the order is absent (the
	// customer's outbox redelivers it): its customer may cancel it (authorize.go). Nil: none known.
	waiting *messages.PlaceOrder
	// placeIndex, deliverIndex and cancelIndex are the method indexes of Place, Deliver and Cancel.
	placeIndex, deliverIndex, cancelIndex int32
	// settling holds the ids of the payment actions whose gateway call is in flight (payment_settle.go).
	settling map[string]bool
	// toStart are the payment actions the last payment timer firing decided to attempt; their calls start once
	// the firing is written.
	toStart []*messages.PaymentAction
}

var _ messages.Order = (*Order)(nil)

// orderActor is what the Order kind spawns: the generated dispatcher plus the node's Deps, and the grain once
// it is activated (it intercepts the requests that wait for a payment authorisation).
type orderActor struct {
	messages.OrderActor
	hosted
	order *Order
}

func (a *orderActor) Receive(ctx actor.Context) {
	if a.order != nil && (a.order.interceptPlacement(ctx) || a.order.interceptSettlement(ctx)) {
		return
	}
	a.receive(ctx, a.OrderActor.Receive)
	if a.order != nil {
		a.order.startSettlements()
	}
}

// Init loads the order's stream.
func (o *Order) Init(ctx pcluster.GrainContext) {
	o.id = ctx.Identity()
	o.placeIndex, o.deliverIndex = mustMethodIndex(KindOrder, "Place"), mustMethodIndex(KindOrder, "Deliver")
	o.cancelIndex = mustMethodIndex(KindOrder, "Cancel")
	o.settling = make(map[string]bool)
	o.activate(ctx, KindOrder, &messages.OrderState{}, applyOrder, withDeliver(o.decideDelivery(nil)), withTimers(o.fireTimer))
	if a, ok := ctx.Actor().(*orderActor); ok && o.entity != nil {
		a.order = o
	}
}

// Place places the order (see PlaceOrder). The payment is authorised first, off the message loop
// (interceptPlacement); a decline is recorded (the order is REJECTED) and answered PAYMENT_DECLINED, also to a
// retry of the same command. The generated dispatcher reaches Place only for requests that need no
// authorisation: a replay, or a command the decision refuses.
func (o *Order) Place(req *messages.PlaceOrder, _ pcluster.GrainContext) (*messages.OrderView, error) {
	return o.place(req, nil)
}

// place runs PlaceOrder with the outcome of its authorisation (nil: none was made).
func (o *Order) place(req *messages.PlaceOrder, auth *authorization) (*messages.OrderView, error) {
	if err := o.query(); err != nil {
		return nil, err
	}
	replayed, err := o.entity.replayed(req.GetCommandId(), req)
	if err != nil {
		return nil, o.answer(err, slog.String("command_id", req.GetCommandId()))
	}
	if !replayed {
		if checkPlaceOrder(o.state(), req) == nil && auth == nil {
			return nil, o.answer(errNotAuthorised, slog.String("command_id", req.GetCommandId()))
		}
		if err := o.command(nil, req.GetCommandId(), req, func(s *messages.OrderState, now time.Time) ([]proto.Message, error) {
			if auth == nil { // refused by the decision before any payment
				return decidePlaceOrder(s, o.id, req, authorization{}, o.deps.Workflow, now)
			}
			return decidePlaceOrder(s, o.id, req, *auth, o.deps.Workflow, now)
		}); err != nil {
			return nil, err
		}
	}
	if o.state().GetPayment().GetDeclined() {
		return nil, grainError(refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card was declined"))
	}
	return o.view(), nil
}

// Accept: the restaurant accepts the order.
func (o *Order) Accept(req *messages.AcceptOrder, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideAcceptOrder(s, req, cfg, now)
	})
}

// Reject: the restaurant refuses the order; full refund.
func (o *Order) Reject(req *messages.RejectOrder, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideRejectOrder(s, req, cfg, now)
	})
}

// MarkReady: the food is ready.
func (o *Order) MarkReady(req *messages.MarkOrderReady, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, _ WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideMarkReady(s, req, now)
	})
}

// MarkPickedUp: the dasher took the food.
func (o *Order) MarkPickedUp(req *messages.MarkOrderPickedUp, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, _ WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideMarkPickedUp(s, req, now)
	})
}

// AssignDasher: the first valid acceptance of the delivery wins.
func (o *Order) AssignDasher(req *messages.AssignDasher, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, _ WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideAssignDasher(s, req, now)
	})
}

// ReleaseDasher: the dasher gives the delivery back before pickup.
func (o *Order) ReleaseDasher(req *messages.ReleaseDasher, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideReleaseDasher(s, req, cfg, now)
	})
}

// MarkDelivered: the dasher handed the food over; the payment is captured.
func (o *Order) MarkDelivered(req *messages.MarkOrderDelivered, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideMarkDelivered(s, req, cfg, now)
	})
}

// Cancel: the customer or the restaurant cancels, by the cancellation matrix.
func (o *Order) Cancel(req *messages.CancelOrder, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	return o.run(ctx, req.GetCommandId(), req, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
		return decideCancelOrder(s, req, cfg, now)
	})
}

// Get answers the order with its timeline, or NOT_FOUND (and the activation stops, so reads of unknown ids leave
// nothing behind).
func (o *Order) Get(_ *messages.GetOrder, ctx pcluster.GrainContext) (*messages.OrderView, error) {
	if err := o.found(ctx); err != nil {
		return nil, err
	}
	return o.view(), nil
}

// Status answers the order's status with its parties (the edge's ownership check needs nothing else), or
// NOT_FOUND like Get. It is the small read of the order: GET /v1/orders/{id}/status is polled by every party.
func (o *Order) Status(_ *messages.GetOrderStatus, ctx pcluster.GrainContext) (*messages.OrderStatusView, error) {
	if err := o.found(ctx); err != nil {
		return nil, err
	}
	return orderStatusView(o.state()), nil
}

func (o *Order) found(ctx pcluster.GrainContext) error {
	if err := o.query(); err != nil {
		return err
	}
	if !o.state().GetCreated() {
		if len(o.entity.box.outbox) == 0 && len(o.entity.box.timers) == 0 && o.authorising == nil && o.waiting == nil {
			o.stop(ctx)
		}
		return grainError(refuse(messages.ErrorReason_NOT_FOUND, "the order does not exist"))
	}
	return nil
}

// run executes one command and answers the view.
func (o *Order) run(ctx pcluster.GrainContext, commandID string, cmd proto.Message, decide func(*messages.OrderState, WorkflowConfig, time.Time) ([]proto.Message, error)) (*messages.OrderView, error) {
	if err := o.command(ctx, commandID, cmd, func(s *messages.OrderState, now time.Time) ([]proto.Message, error) {
		return decide(s, o.deps.Workflow, now)
	}); err != nil {
		return nil, err
	}
	return o.view(), nil
}

func (o *Order) view() *messages.OrderView {
	return orderView(o.state(), o.entity.box.timers)
}

// decideDelivery returns the Order's decision on delivered messages: PlaceOrder from its customer's outbox (with
// auth, the outcome of the payment authorisation that interceptPlacement ran first; nil when none was made, which
// is right only for a PlaceOrder the decision refuses), and AssignDasher or CancelOrder sent by another actor.
func (o *Order) decideDelivery(auth *authorization) deliverFunc[*messages.OrderState] {
	return func(s *messages.OrderState, from string, payload proto.Message, now time.Time) ([]proto.Message, error) {
		cfg := o.deps.Workflow
		switch p := payload.(type) {
		case *messages.PlaceOrder:
			if want := streamOf(KindCustomer, p.GetCustomerId()); from != want {
				return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "PlaceOrder for %s came from %s", want, from)
			}
			if err := checkPlaceOrder(s, p); err != nil {
				return nil, err
			}
			if auth == nil {
				return nil, errNotAuthorised // not a refusal: the sender retries, and the retry is authorised first
			}
			return decidePlaceOrder(s, o.id, p, *auth, cfg, now)
		case *messages.AssignDasher:
			return decideAssignDasher(s, p, now)
		case *messages.CancelOrder:
			return decideCancelOrder(s, p, cfg, now)
		}
		return nil, unexpectedPayload(KindOrder, payload)
	}
}

// fireTimer is the Order's timer decision: the SLA timers by decideOrderTimer; the payment timer by
// decidePaymentTimer, which moves the timer to the lease of the attempts it starts. The gateway calls start after
// the firing is written (startSettlements, payment_settle.go), off the message loop; their outcomes come back as
// messages and are recorded by decidePaymentOutcome.
func (o *Order) fireTimer(s *messages.OrderState, name string, now time.Time) ([]proto.Message, error) {
	if name != timerPayment {
		return decideOrderTimer(s, name, o.deps.Workflow, now)
	}
	events, start := decidePaymentTimer(s, o.settling, o.deps.Workflow, now)
	o.toStart = append(o.toStart, start...)
	return events, nil
}

// ---- The transition table ----

// orderStage is a column of the transition table: where an order is.
type orderStage int

const (
	stageAbsent orderStage = iota
	stagePending
	stageAccepted
	stageAssigned
	stageReady
	stageReadyAssigned
	stagePickedUp
	stageDelivered
	stageCancelled
	stageRejected
	numStages
)

var stageNames = [numStages]string{"absent", "pending", "accepted", "assigned", "ready", "ready+dasher",
	"picked up", "delivered", "cancelled", "rejected"}

func (s orderStage) String() string { return stageNames[s] }

// orderStep is a row of the transition table: what may happen to an order.
type orderStep int

const (
	stepPlace orderStep = iota
	stepPlaceDeclined
	stepAccept
	stepReject
	stepMarkReady
	stepMarkPickedUp
	stepAssignDasher
	stepReleaseDasher
	stepMarkDelivered
	stepAcceptTimeout
	stepDispatchTimeout
	numSteps
)

var stepNames = [numSteps]string{"place", "place (declined)", "accept", "reject", "mark ready", "mark picked up",
	"assign a dasher to", "release the dasher of", "mark delivered", "accept timer", "dispatch timer"}

func (s orderStep) String() string { return stepNames[s] }

// transition is one cell of the table: refused with code (when code is set and own is false), or allowed and
// moving to to. With own set, the cell is for the order's own dasher: allowed (→ to), or refused with ownCode
// when that is set; another dasher is refused with code.
type transition struct {
	to      orderStage
	code    messages.ErrorReason
	own     bool
	ownCode messages.ErrorReason
}

func to(s orderStage) transition              { return transition{to: s} }
func stay(s orderStage) transition            { return transition{to: s} }
func no(code messages.ErrorReason) transition { return transition{code: code} }
func own(s orderStage, other messages.ErrorReason) transition {
	return transition{to: s, code: other, own: true}
}
func ownNo(code, other messages.ErrorReason) transition {
	return transition{code: other, own: true, ownCode: code}
}

func (t transition) refused() bool { return t.code != 0 && !t.own }

// allows reports whether the cell lets dasher (the command's dasher, "" for commands without one) take the step
// on an order whose dasher is orderDasher.
func (t transition) allows(dasher, orderDasher string) bool {
	return !t.refused() && (!t.own || (dasher == orderDasher && t.ownCode == 0))
}

// refusal returns the code the cell answers dasher on an order whose dasher is orderDasher (0: allowed).
func (t transition) refusal(dasher, orderDasher string) messages.ErrorReason {
	switch {
	case t.refused():
		return t.code
	case !t.own:
		return 0
	case dasher != orderDasher:
		return t.code
	}
	return t.ownCode
}

// moves reports whether an allowed step changes the stage (from is the cell's column).
func (t transition) moves(from orderStage) bool {
	return !t.refused() && t.ownCode == 0 && t.to != from
}

const (
	nf = messages.ErrorReason_NOT_FOUND
	ae = messages.ErrorReason_ALREADY_EXISTS
	fp = messages.ErrorReason_FAILED_PRECONDITION
	ot = messages.ErrorReason_OFFER_TAKEN
	oe = messages.ErrorReason_OFFER_EXPIRED
	nc = messages.ErrorReason_ORDER_NOT_CANCELLABLE
)

// orderTransitions is the transition table at the top of this file.
var orderTransitions = [numSteps][numStages]transition{
	//                  absent                pending               accepted                assigned                    ready                   ready+dasher                   picked up                   delivered                  cancelled             rejected
	stepPlace:           {to(stagePending), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae)},
	stepPlaceDeclined:   {to(stageRejected), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae), no(ae)},
	stepAccept:          {no(nf), to(stageAccepted), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp)},
	stepReject:          {no(nf), to(stageRejected), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp)},
	stepMarkReady:       {no(nf), no(fp), to(stageReady), to(stageReadyAssigned), no(fp), no(fp), no(fp), no(fp), no(fp), no(fp)},
	stepMarkPickedUp:    {no(nf), no(fp), no(fp), no(fp), no(fp), to(stagePickedUp), no(fp), no(fp), no(fp), no(fp)},
	stepAssignDasher:    {no(nf), no(fp), to(stageAssigned), own(stageAssigned, ot), to(stageReadyAssigned), own(stageReadyAssigned, ot), own(stagePickedUp, ot), own(stageDelivered, ot), no(oe), no(oe)},
	stepReleaseDasher:   {no(nf), no(nf), no(nf), own(stageAccepted, nf), no(nf), own(stageReady, nf), ownNo(fp, nf), ownNo(fp, nf), own(stageCancelled, nf), no(nf)},
	stepMarkDelivered:   {no(nf), no(nf), no(nf), ownNo(fp, nf), no(nf), ownNo(fp, nf), own(stageDelivered, nf), own(stageDelivered, nf), ownNo(fp, nf), no(nf)},
	stepAcceptTimeout:   {stay(stageAbsent), to(stageCancelled), stay(stageAccepted), stay(stageAssigned), stay(stageReady), stay(stageReadyAssigned), stay(stagePickedUp), stay(stageDelivered), stay(stageCancelled), stay(stageRejected)},
	stepDispatchTimeout: {stay(stageAbsent), stay(stagePending), to(stageCancelled), stay(stageAssigned), to(stageCancelled), stay(stageReadyAssigned), stay(stagePickedUp), stay(stageDelivered), stay(stageCancelled), stay(stageRejected)},
}

// ---- The cancellation matrix ----

// refundPolicy is how much of the total a cancellation refunds.
type refundPolicy int

const (
	refundNone refundPolicy = iota
	refundShare
	refundFull
)

// cancelRule is one cell of the cancellation matrix: refused with code, or allowed with a refund policy. placing
// is the absent column's customer cell: allowed only with the customer's waiting PlaceOrder in hand
// (decideCancelPlacement); decideCancelOrder, which has none, answers NF.
type cancelRule struct {
	refund  refundPolicy
	code    messages.ErrorReason
	placing bool
}

var (
	full    = cancelRule{refund: refundFull}
	share   = cancelRule{refund: refundShare}
	none    = cancelRule{refund: refundNone}
	cnf     = cancelRule{code: nf}
	cnc     = cancelRule{code: nc}
	placing = cancelRule{refund: refundFull, placing: true}
)

// cancellationMatrix is the cancellation matrix at the top of this file: canceller × stage.
var cancellationMatrix = map[messages.CancelledBy][numStages]cancelRule{
	//                                     absent pending accepted assigned ready  ready+d picked delivered cancelled rejected
	messages.CancelledBy_CANCELLED_BY_CUSTOMER:   {placing, full, share, none, share, none, cnc, cnc, cnc, cnc},
	messages.CancelledBy_CANCELLED_BY_RESTAURANT: {cnf, full, full, full, full, full, cnc, cnc, cnc, cnc},
	messages.CancelledBy_CANCELLED_BY_SYSTEM:     {cnf, full, full, cnc, full, cnc, cnc, cnc, cnc, cnc},
}

// refundFor returns the refund of a cancellation under rule for an order of total cents.
func refundFor(rule cancelRule, total int64, cfg WorkflowConfig) int64 {
	switch rule.refund {
	case refundFull:
		return total
	case refundShare:
		r := int64(math.Round(float64(total) * cfg.CancelRefundShare))
		return min(max(r, 0), total)
	}
	return 0
}

// ---- Stage and status ----

// stageOf returns the column of the transition table the order is in.
func stageOf(s *messages.OrderState) orderStage {
	if !s.GetCreated() {
		return stageAbsent
	}
	switch s.GetStatus() {
	case messages.OrderStatus_ORDER_STATUS_PENDING_ACCEPTANCE:
		return stagePending
	case messages.OrderStatus_ORDER_STATUS_ACCEPTED:
		return stageAccepted
	case messages.OrderStatus_ORDER_STATUS_DASHER_ASSIGNED:
		return stageAssigned
	case messages.OrderStatus_ORDER_STATUS_READY_FOR_PICKUP:
		if s.GetDasherId() != "" {
			return stageReadyAssigned
		}
		return stageReady
	case messages.OrderStatus_ORDER_STATUS_PICKED_UP:
		return stagePickedUp
	case messages.OrderStatus_ORDER_STATUS_DELIVERED:
		return stageDelivered
	case messages.OrderStatus_ORDER_STATUS_CANCELLED:
		return stageCancelled
	case messages.OrderStatus_ORDER_STATUS_REJECTED:
		return stageRejected
	}
	return stageAbsent // a created order always has a status; unreachable
}

// deriveStatus is the API status of an open order from its two sides.
func deriveStatus(kitchen messages.KitchenStatus, delivery messages.DeliveryStatus) messages.OrderStatus {
	switch {
	case delivery == messages.DeliveryStatus_DELIVERY_DELIVERED:
		return messages.OrderStatus_ORDER_STATUS_DELIVERED
	case kitchen == messages.KitchenStatus_KITCHEN_HANDED_OVER:
		return messages.OrderStatus_ORDER_STATUS_PICKED_UP
	case kitchen == messages.KitchenStatus_KITCHEN_READY:
		return messages.OrderStatus_ORDER_STATUS_READY_FOR_PICKUP
	case delivery == messages.DeliveryStatus_DELIVERY_ASSIGNED:
		return messages.OrderStatus_ORDER_STATUS_DASHER_ASSIGNED
	case kitchen == messages.KitchenStatus_KITCHEN_PREPARING:
		return messages.OrderStatus_ORDER_STATUS_ACCEPTED
	}
	return messages.OrderStatus_ORDER_STATUS_PENDING_ACCEPTANCE
}

// StatusName is the API name of an order status ("PENDING_ACCEPTANCE", ...; "" for unspecified).
func StatusName(s messages.OrderStatus) string {
	if s == messages.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(s.String(), "ORDER_STATUS_")
}

// ---- Decisions: pure functions of state, command, configuration and time ----

// authorization is the outcome of the payment authorisation the grain ran before decidePlaceOrder (the one side
// effect of placing an order): an authorisation id, or a decline with the gateway's message.
type authorization struct {
	authID   string
	declined string
}

// checkPlaceOrder is what the grain checks before it authorises the payment: a valid command for an absent
// order. It returns nil when decidePlaceOrder would place (or decline) the order.
func checkPlaceOrder(s *messages.OrderState, c *messages.PlaceOrder) error {
	if err := validatePlaceOrder(c); err != nil {
		return err
	}
	return stepRefusal(s, stepPlace, "")
}

// orderTotal is the sum of the lines (validated: no overflow within the limits).
func orderTotal(lines []*messages.OrderLine) int64 {
	var total int64
	for _, l := range lines {
		total += int64(l.GetQuantity()) * l.GetPriceCents()
	}
	return total
}

func decidePlaceOrder(s *messages.OrderState, id string, c *messages.PlaceOrder, auth authorization, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkPlaceOrder(s, c); err != nil {
		return nil, err
	}
	lines := make([]*messages.OrderLine, len(c.GetLines()))
	for i, l := range c.GetLines() {
		lines[i] = proto.Clone(l).(*messages.OrderLine)
	}
	placed := &messages.OrderPlaced{
		OrderId:      id,
		CustomerId:   c.GetCustomerId(),
		RestaurantId: c.GetRestaurantId(),
		Lines:        lines,
		TotalCents:   orderTotal(lines),
		Pickup:       clonePosition(c.GetPickup()),
		Dropoff:      clonePosition(c.GetDropoff()),
		PlacedAt:     timestamppb.New(now),
	}
	if auth.declined != "" {
		return withSends([]proto.Message{&messages.OrderDeclined{Placed: placed, Reason: auth.declined}},
			send{KindCustomer, placed.GetCustomerId(), &messages.OrderRejected{
				OrderId: id, Reason: ReasonPaymentDeclined, RejectedAt: timestamppb.New(now)}})
	}
	acceptBy := now.Add(cfg.AcceptSLA)
	placed.AcceptBy = timestamppb.New(acceptBy)
	return withSends([]proto.Message{
		&messages.OrderCreated{Placed: placed, Area: AreaOf(placed.GetPickup()), PaymentToken: c.GetPaymentToken(), AuthId: auth.authID},
		setTimer(timerAccept, acceptBy),
	},
		send{KindRestaurant, placed.GetRestaurantId(), placed},
		send{KindCustomer, placed.GetCustomerId(), placed})
}

func decideAcceptOrder(s *messages.OrderState, c *messages.AcceptOrder, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if p := c.GetPrepMinutes(); p < 1 || p > MaxPrepMinutes {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "prep_minutes must be 1-%d", MaxPrepMinutes)
	}
	if err := checkRestaurant(s, c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := stepRefusal(s, stepAccept, ""); err != nil {
		return nil, err
	}
	accepted := &messages.OrderAccepted{
		OrderId:      s.GetOrderId(),
		RestaurantId: s.GetRestaurantId(),
		CustomerId:   s.GetCustomerId(),
		PrepMinutes:  c.GetPrepMinutes(),
		Pickup:       clonePosition(s.GetPickup()),
		Dropoff:      clonePosition(s.GetDropoff()),
		AcceptedAt:   timestamppb.New(now),
	}
	return withSends([]proto.Message{accepted, clearTimer(timerAccept), setTimer(timerDispatch, now.Add(cfg.DispatchSLA))},
		send{KindArea, s.GetArea(), accepted},
		send{KindCustomer, s.GetCustomerId(), accepted},
		send{KindRestaurant, s.GetRestaurantId(), accepted})
}

func decideRejectOrder(s *messages.OrderState, c *messages.RejectOrder, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", c.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	if err := checkRestaurant(s, c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := stepRefusal(s, stepReject, ""); err != nil {
		return nil, err
	}
	rejected := &messages.OrderRejected{
		OrderId:     s.GetOrderId(),
		Reason:      strings.TrimSpace(c.GetReason()),
		RefundCents: s.GetTotalCents(),
		RejectedAt:  timestamppb.New(now),
	}
	events := append([]proto.Message{rejected, clearTimer(timerAccept)}, settlement(s, s.GetTotalCents(), cfg, now)...)
	return withSends(events,
		send{KindCustomer, s.GetCustomerId(), rejected},
		send{KindRestaurant, s.GetRestaurantId(), rejected})
}

func decideMarkReady(s *messages.OrderState, c *messages.MarkOrderReady, now time.Time) ([]proto.Message, error) {
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := checkRestaurant(s, c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := stepRefusal(s, stepMarkReady, ""); err != nil {
		return nil, err
	}
	ready := &messages.FoodReady{OrderId: s.GetOrderId(), ReadyAt: timestamppb.New(now)}
	sends := []send{{KindCustomer, s.GetCustomerId(), ready}}
	if d := s.GetDasherId(); d != "" {
		sends = append(sends, send{KindDasher, d, ready})
	}
	sends = append(sends, send{KindRestaurant, s.GetRestaurantId(), ready})
	return withSends([]proto.Message{ready}, sends...)
}

func decideMarkPickedUp(s *messages.OrderState, c *messages.MarkOrderPickedUp, now time.Time) ([]proto.Message, error) {
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := checkRestaurant(s, c.GetRestaurantId()); err != nil {
		return nil, err
	}
	if err := stepRefusal(s, stepMarkPickedUp, ""); err != nil {
		return nil, err
	}
	picked := &messages.OrderPickedUp{OrderId: s.GetOrderId(), DasherId: s.GetDasherId(), PickedUpAt: timestamppb.New(now)}
	return withSends([]proto.Message{picked},
		send{KindCustomer, s.GetCustomerId(), picked},
		send{KindRestaurant, s.GetRestaurantId(), picked})
}

func decideAssignDasher(s *messages.OrderState, c *messages.AssignDasher, now time.Time) ([]proto.Message, error) {
	if err := checkID("dasher_id", c.GetDasherId()); err != nil {
		return nil, err
	}
	from := stageOf(s)
	if err := stepRefusal(s, stepAssignDasher, c.GetDasherId()); err != nil || !orderTransitions[stepAssignDasher][from].moves(from) {
		return nil, err // refused, or the same dasher again: nothing changes
	}
	assigned := &messages.DasherAssigned{OrderId: s.GetOrderId(), DasherId: c.GetDasherId(), AssignedAt: timestamppb.New(now)}
	sends := []send{
		{KindCustomer, s.GetCustomerId(), assigned},
		{KindRestaurant, s.GetRestaurantId(), assigned},
		{KindDasher, c.GetDasherId(), assigned},
		{KindArea, s.GetArea(), assigned},
	}
	if from == stageReady {
		sends = append(sends, send{KindDasher, c.GetDasherId(), &messages.FoodReady{OrderId: s.GetOrderId(), ReadyAt: readyAt(s)}})
	}
	return withSends([]proto.Message{assigned, clearTimer(timerDispatch)}, sends...)
}

func decideReleaseDasher(s *messages.OrderState, c *messages.ReleaseDasher, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkID("dasher_id", c.GetDasherId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", c.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	from := stageOf(s)
	if err := stepRefusal(s, stepReleaseDasher, c.GetDasherId()); err != nil || !orderTransitions[stepReleaseDasher][from].moves(from) {
		return nil, err // refused, or no dasher to release: nothing changes
	}
	released := &messages.DasherReleased{OrderId: s.GetOrderId(), DasherId: c.GetDasherId(), Reason: strings.TrimSpace(c.GetReason()),
		ReleasedAt: timestamppb.New(now)}
	return withSends([]proto.Message{released, setTimer(timerDispatch, now.Add(cfg.DispatchSLA))},
		send{KindCustomer, s.GetCustomerId(), released},
		send{KindRestaurant, s.GetRestaurantId(), released},
		send{KindArea, s.GetArea(), released},
		send{KindDasher, c.GetDasherId(), released})
}

func decideMarkDelivered(s *messages.OrderState, c *messages.MarkOrderDelivered, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if err := checkID("dasher_id", c.GetDasherId()); err != nil {
		return nil, err
	}
	from := stageOf(s)
	if err := stepRefusal(s, stepMarkDelivered, c.GetDasherId()); err != nil || !orderTransitions[stepMarkDelivered][from].moves(from) {
		return nil, err // refused, or delivered already: nothing changes
	}
	delivered := &messages.OrderDelivered{
		OrderId:       s.GetOrderId(),
		DasherId:      s.GetDasherId(),
		CapturedCents: s.GetTotalCents(),
		DeliveredAt:   timestamppb.New(now),
	}
	events := append([]proto.Message{delivered}, settlement(s, 0, cfg, now)...)
	return withSends(events,
		send{KindRestaurant, s.GetRestaurantId(), delivered},
		send{KindCustomer, s.GetCustomerId(), delivered},
		send{KindDasher, s.GetDasherId(), delivered})
}

func decideCancelOrder(s *messages.OrderState, c *messages.CancelOrder, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	by := c.GetBy()
	if by != messages.CancelledBy_CANCELLED_BY_CUSTOMER && by != messages.CancelledBy_CANCELLED_BY_RESTAURANT {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "by must be CANCELLED_BY_CUSTOMER or CANCELLED_BY_RESTAURANT")
	}
	if err := checkID("requester_id", c.GetRequesterId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", c.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	if s.GetCreated() {
		owner := s.GetCustomerId()
		if by == messages.CancelledBy_CANCELLED_BY_RESTAURANT {
			owner = s.GetRestaurantId()
		}
		if c.GetRequesterId() != owner {
			return nil, refuse(messages.ErrorReason_NOT_FOUND, "the order does not exist")
		}
	}
	return cancel(s, by, strings.TrimSpace(c.GetReason()), cfg, now)
}

// decideCancelPlacement is the customer's cancel of an absent order whose PlaceOrder p (from that customer) is
// waiting for the payment processor with no authorisation call in flight: the tombstone. The order is recorded as
// placed without an authorisation (OrderCreated with no auth id: nothing held, nothing to settle) and cancelled by
// its customer from pending in the same append (the matrix's full refund of nothing charged); only the customer is
// told (the restaurant never heard of the order). The placement, when it arrives again, finds the order and is
// refused (ALREADY_EXISTS: the customer's outbox stops retrying it).
func decideCancelPlacement(s *messages.OrderState, id string, p *messages.PlaceOrder, c *messages.CancelOrder, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if c.GetBy() != messages.CancelledBy_CANCELLED_BY_CUSTOMER || c.GetRequesterId() != p.GetCustomerId() {
		return nil, refuse(nf, "the order does not exist")
	}
	if err := checkText("reason", c.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	if err := checkPlaceOrder(s, p); err != nil {
		return nil, refuse(nf, "the order does not exist")
	}
	placed, err := decidePlaceOrder(s, id, p, authorization{}, cfg, now)
	if err != nil {
		return nil, err
	}
	var events []proto.Message
	for _, ev := range placed {
		if created, ok := ev.(*messages.OrderCreated); ok {
			events = append(events, created) // no accept timer, no OrderPlaced sends: it is cancelled at once
		}
	}
	scratch := proto.Clone(s).(*messages.OrderState)
	for _, ev := range events {
		if err := applyOrder(scratch, ev); err != nil {
			return nil, err
		}
	}
	rule := cancellationMatrix[messages.CancelledBy_CANCELLED_BY_CUSTOMER][stageOf(scratch)]
	cancelled := &messages.OrderCancelled{
		OrderId:     id,
		By:          messages.CancelledBy_CANCELLED_BY_CUSTOMER,
		Reason:      strings.TrimSpace(c.GetReason()),
		RefundCents: refundFor(rule, scratch.GetTotalCents(), cfg),
		CancelledAt: timestamppb.New(now),
	}
	events = append(events, cancelled)
	events = append(events, settlement(scratch, cancelled.GetRefundCents(), cfg, now)...) // none: nothing authorised
	// The failed call may have placed a hold the order never heard of (a timeout at the client after the
	// processor authorised): resolve it by its idempotency key and void it (resolveAuthorisation).
	events = append(events, resolveAuthorisation(id, orderTotal(p.GetLines()), now)...)
	return withSends(events, send{KindCustomer, p.GetCustomerId(), cancelled})
}

// resolveAuthorisation queues the void of an authorisation whose outcome is unknown: the order gave up on a
// placement whose Authorize call failed transiently, which may mean the processor placed the hold and the answer
// was lost. The action is a VOID of an order with no auth_id; amount_cents is the amount of the Authorize request.
// Settlement (startSettlements, payment_settle.go) replays Authorize with the placement's token, that amount and
// its idempotency key (<order>/authorize): an idempotent gateway answers the original outcome. If it is
// authorised, the hold is voided under <order>/void; if it is declined, nothing is held and the action is settled;
// a transient failure is retried by the payment timer, durably, like any settlement.
func resolveAuthorisation(id string, amountCents int64, now time.Time) []proto.Message {
	action := &messages.PaymentAction{Id: id + "/void", Kind: messages.PaymentActionKind_PAYMENT_ACTION_VOID,
		AmountCents: amountCents, NextAttemptAt: timestamppb.New(now)}
	return []proto.Message{&messages.PaymentQueued{Action: action}, setTimer(timerPayment, now)}
}

// decideOrderTimer is the Order's timerFunc: the acceptance and dispatch SLAs cancel the order (system, full
// refund) when it is still where the timer was set for; a stale firing changes nothing. The payment timer is
// decidePaymentTimer's (Order.fireTimer); here it changes nothing.
func decideOrderTimer(s *messages.OrderState, name string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	var step orderStep
	var reason string
	switch name {
	case timerAccept:
		step, reason = stepAcceptTimeout, "the restaurant did not accept the order in time"
	case timerDispatch:
		step, reason = stepDispatchTimeout, "no dasher was found in time"
	case timerPayment:
		return nil, nil
	default:
		return nil, fmt.Errorf("order: unknown timer %q", name)
	}
	from := stageOf(s)
	if !orderTransitions[step][from].moves(from) {
		return nil, nil
	}
	return cancel(s, messages.CancelledBy_CANCELLED_BY_SYSTEM, reason, cfg, now)
}

// cancel is the cancellation of an order by `by`, by the cancellation matrix.
func cancel(s *messages.OrderState, by messages.CancelledBy, reason string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	from := stageOf(s)
	rule := cancellationMatrix[by][from]
	switch {
	case rule.placing:
		return nil, refuse(nf, "the order does not exist") // no placement in hand: see decideCancelPlacement
	case rule.code == 0:
	case rule.code == nf:
		return nil, refuse(nf, "the order does not exist")
	default:
		return nil, refuse(rule.code, "the order can no longer be cancelled: it is %s", StatusName(s.GetStatus()))
	}
	refund := refundFor(rule, s.GetTotalCents(), cfg)
	cancelled := &messages.OrderCancelled{
		OrderId:     s.GetOrderId(),
		By:          by,
		Reason:      reason,
		RefundCents: refund,
		CancelledAt: timestamppb.New(now),
	}
	events := []proto.Message{cancelled}
	switch from {
	case stagePending:
		events = append(events, clearTimer(timerAccept))
	case stageAccepted, stageReady:
		events = append(events, clearTimer(timerDispatch))
	}
	events = append(events, settlement(s, refund, cfg, now)...)
	sends := []send{{KindCustomer, s.GetCustomerId(), cancelled}, {KindRestaurant, s.GetRestaurantId(), cancelled}}
	if from != stagePending {
		sends = append(sends, send{KindArea, s.GetArea(), cancelled})
	}
	if d := s.GetDasherId(); d != "" {
		sends = append(sends, send{KindDasher, d, cancelled})
	}
	return withSends(events, sends...)
}

// settlement returns the payment action that ends an order's payment with refund cents returned to the
// customer: a void for a full refund, else a capture of the rest; nothing for an order without an authorisation.
// The payment timer, due at once, makes the grain attempt it right after the append (decidePaymentTimer); the
// timer stays in the journal, at the attempt's lease, until the attempt's outcome is recorded, so a crash in
// between only repeats the gateway call under the same idempotency key.
func settlement(s *messages.OrderState, refund int64, cfg WorkflowConfig, now time.Time) []proto.Message {
	p := s.GetPayment()
	if p.GetAuthId() == "" {
		return nil
	}
	action := &messages.PaymentAction{Id: s.GetOrderId() + "/capture", Kind: messages.PaymentActionKind_PAYMENT_ACTION_CAPTURE,
		AmountCents: p.GetAuthorizedCents() - refund, NextAttemptAt: timestamppb.New(now)}
	if action.GetAmountCents() <= 0 {
		action = &messages.PaymentAction{Id: s.GetOrderId() + "/void", Kind: messages.PaymentActionKind_PAYMENT_ACTION_VOID,
			NextAttemptAt: timestamppb.New(now)}
	}
	return []proto.Message{&messages.PaymentQueued{Action: action}, setTimer(timerPayment, now)}
}

// decidePaymentOutcome records the outcome of one attempt of the queued payment action id: settled (err nil),
// refused for good (a *Error: recorded as failed, an operator must look), or failed transiently (tried again
// after a back-off, by the payment timer).
func decidePaymentOutcome(s *messages.OrderState, id string, err error, cfg WorkflowConfig, now time.Time) []proto.Message {
	var action *messages.PaymentAction
	for _, a := range s.GetPayment().GetPending() {
		if a.GetId() == id {
			action = a
		}
	}
	if action == nil {
		return nil
	}
	var events []proto.Message
	switch {
	case err == nil:
		events = append(events, &messages.PaymentSettled{Id: id, At: timestamppb.New(now)})
	case !IsTransient(err):
		events = append(events, &messages.PaymentSettled{Id: id, Failed: true, Error: err.Error(), At: timestamppb.New(now)})
	default:
		attempts := action.GetAttempts() + 1
		next := now.Add(paymentBackoff(cfg, int(attempts)))
		return []proto.Message{
			&messages.PaymentAttemptFailed{Id: id, Attempts: attempts, Error: err.Error(), NextAttemptAt: timestamppb.New(next)},
			setTimer(timerPayment, nextPaymentDue(s, id, next)),
		}
	}
	if due := nextPaymentDue(s, id, time.Time{}); due.IsZero() {
		events = append(events, clearTimer(timerPayment))
	} else {
		events = append(events, setTimer(timerPayment, due))
	}
	return events
}

// decidePaymentTimer is the decision when the payment timer fires: every pending action that is due and has no
// gateway call in flight (settling: the ids of those that have, in this activation) is to be attempted now
// (start). The timer moves to the lease of the calls in flight, now + PaymentTimeout + PaymentRetryMin, or to the
// next attempt of an action not due yet, whichever is earlier. The lease is what makes the attempt durable: if the
// activation dies while a call is in flight, its outcome is lost, the timer fires in the next activation and the
// action is attempted again under the same idempotency key. An action still in flight when its lease runs out (a
// gateway slower than PaymentTimeout) is not attempted twice: the lease moves on.
func decidePaymentTimer(s *messages.OrderState, settling map[string]bool, cfg WorkflowConfig, now time.Time) (events []proto.Message, start []*messages.PaymentAction) {
	var due time.Time
	later := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	lease := now.Add(cfg.PaymentTimeout + cfg.PaymentRetryMin)
	for _, a := range s.GetPayment().GetPending() {
		switch next := a.GetNextAttemptAt(); {
		case settling[a.GetId()]:
			later(lease)
		case next == nil || !next.AsTime().After(now):
			start = append(start, proto.Clone(a).(*messages.PaymentAction))
			later(lease)
		default:
			later(next.AsTime())
		}
	}
	if due.IsZero() {
		return nil, nil
	}
	return []proto.Message{setTimer(timerPayment, due)}, start
}

// nextPaymentDue is the earliest next attempt among the pending actions once action id's next attempt is at next
// (zero: id is settled).
func nextPaymentDue(s *messages.OrderState, id string, next time.Time) time.Time {
	due := next
	for _, a := range s.GetPayment().GetPending() {
		if a.GetId() == id {
			continue
		}
		t := a.GetNextAttemptAt().AsTime()
		if a.GetNextAttemptAt() == nil {
			t = time.Unix(0, 0).UTC()
		}
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	return due
}

// paymentBackoff is the delay before payment attempt number attempts+1: PaymentRetryMin doubled per failed
// attempt, capped at PaymentRetryMax.
func paymentBackoff(cfg WorkflowConfig, attempts int) time.Duration {
	d := cfg.PaymentRetryMin
	for i := 1; i < attempts && d < cfg.PaymentRetryMax; i++ {
		d *= 2
	}
	return min(d, cfg.PaymentRetryMax)
}

// duePayments returns the pending payment actions whose next attempt is due at now.
func duePayments(s *messages.OrderState, now time.Time) []*messages.PaymentAction {
	var out []*messages.PaymentAction
	for _, a := range s.GetPayment().GetPending() {
		if a.GetNextAttemptAt() == nil || !a.GetNextAttemptAt().AsTime().After(now) {
			out = append(out, a)
		}
	}
	return out
}

// stepRefusal returns the table's refusal of step for the order (dasher: the dasher the command names), or nil
// when the table allows it.
func stepRefusal(s *messages.OrderState, step orderStep, dasher string) error {
	from := stageOf(s)
	code := orderTransitions[step][from].refusal(dasher, s.GetDasherId())
	switch code {
	case 0:
		return nil
	case nf:
		return refuse(nf, "the order does not exist")
	case ae:
		return refuse(ae, "the order exists already")
	case ot:
		return refuse(ot, "another dasher took the order")
	case oe:
		return refuse(oe, "the order no longer needs a dasher: it is %s", StatusName(s.GetStatus()))
	}
	return refuse(code, "cannot %s the order: it is %s (%s)", step, StatusName(s.GetStatus()), from)
}

// checkRestaurant refuses a restaurant command from another restaurant as if the order did not exist.
func checkRestaurant(s *messages.OrderState, restaurantID string) error {
	if s.GetCreated() && s.GetRestaurantId() != restaurantID {
		return refuse(nf, "the order does not exist")
	}
	return nil
}

// ---- Validation ----

func validatePlaceOrder(c *messages.PlaceOrder) *Error {
	if err := checkID("customer_id", c.GetCustomerId()); err != nil {
		return err
	}
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil {
		return err
	}
	if n := len(c.GetLines()); n < 1 || n > MaxOrderLines {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "an order has 1-%d lines", MaxOrderLines)
	}
	seen := make(map[string]bool, len(c.GetLines()))
	for i, l := range c.GetLines() {
		field := fmt.Sprintf("lines[%d]", i)
		if err := checkID(field+".menu_item_id", l.GetMenuItemId()); err != nil {
			return err
		}
		if seen[l.GetMenuItemId()] {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.menu_item_id %q is used twice", field, l.GetMenuItemId())
		}
		seen[l.GetMenuItemId()] = true
		if err := checkText(field+".name", l.GetName(), MaxNameLen, true); err != nil {
			return err
		}
		if q := l.GetQuantity(); q < 1 || q > MaxLineQuantity {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.quantity must be 1-%d", field, MaxLineQuantity)
		}
		if p := l.GetPriceCents(); p <= 0 || p > MaxPriceCents {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.price_cents must be 1-%d", field, MaxPriceCents)
		}
	}
	if c.GetPickup() == nil {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "pickup is required")
	}
	if err := checkPosition(c.GetPickup()); err != nil {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "pickup: %s", err.Message)
	}
	if c.GetDropoff() == nil {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "dropoff is required")
	}
	if err := checkPosition(c.GetDropoff()); err != nil {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "dropoff: %s", err.Message)
	}
	return checkText("payment_token", c.GetPaymentToken(), MaxTokenLen, true)
}

// checkID refuses an empty, over-long or space-padded identifier.
func checkID(field, id string) *Error {
	if err := checkText(field, id, MaxIDLen, true); err != nil {
		return err
	}
	if id != strings.TrimSpace(id) {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s has leading or trailing spaces", field)
	}
	return nil
}

// ---- Sends ----

// send is one outbox message of a decision.
type send struct {
	kind, identity string
	payload        proto.Message
}

// withSends appends the OutboxAdded events of sends to events.
func withSends(events []proto.Message, sends ...send) ([]proto.Message, error) {
	for _, s := range sends {
		added, err := sendTo(s.kind, s.identity, s.payload)
		if err != nil {
			return nil, err
		}
		events = append(events, added)
	}
	return events, nil
}

func clonePosition(p *messages.Position) *messages.Position {
	return &messages.Position{Lat: p.GetLat(), Lng: p.GetLng()}
}

func readyAt(s *messages.OrderState) *timestamppb.Timestamp {
	for _, e := range s.GetTimeline() {
		if e.GetType() == feedFoodReady {
			return e.GetAt()
		}
	}
	return s.GetUpdatedAt()
}

// ---- Fold ----

// Timeline (and feed) types of the workflow messages, as the API names them.
const (
	feedOrderPlaced    = "ORDER_PLACED"
	feedOrderAccepted  = "ORDER_ACCEPTED"
	feedOrderRejected  = "ORDER_REJECTED"
	feedDasherAssigned = "DASHER_ASSIGNED"
	feedDasherReleased = "DASHER_RELEASED"
	feedFoodReady      = "FOOD_READY"
	feedOrderPickedUp  = "ORDER_PICKED_UP"
	feedOrderDelivered = "ORDER_DELIVERED"
	feedOrderCancelled = "ORDER_CANCELLED"
)

// applyOrder folds one event into the state. It never fails for the kind's own events.
func applyOrder(s *messages.OrderState, event proto.Message) error {
	switch e := event.(type) {
	case *messages.OrderCreated:
		placeFields(s, e.GetPlaced())
		s.Area = e.GetArea()
		s.AcceptBy = e.GetPlaced().GetAcceptBy()
		s.Payment = &messages.OrderPayment{Token: e.GetPaymentToken(), AuthId: e.GetAuthId()}
		if e.GetAuthId() != "" { // none for an order cancelled before its placement was authorised
			s.Payment.AuthorizedCents = e.GetPlaced().GetTotalCents()
		}
		s.Status = messages.OrderStatus_ORDER_STATUS_PENDING_ACCEPTANCE
		s.Kitchen = messages.KitchenStatus_KITCHEN_PENDING
		s.Delivery = messages.DeliveryStatus_DELIVERY_WAITING
	case *messages.OrderDeclined:
		placeFields(s, e.GetPlaced())
		s.Payment = &messages.OrderPayment{Declined: true}
		s.Status = messages.OrderStatus_ORDER_STATUS_REJECTED
		s.Kitchen = messages.KitchenStatus_KITCHEN_CLOSED
		s.Delivery = messages.DeliveryStatus_DELIVERY_CLOSED
		s.Reason = ReasonPaymentDeclined
		record(s, feedOrderRejected, e.GetPlaced().GetPlacedAt())
	case *messages.OrderAccepted:
		s.PrepMinutes = e.GetPrepMinutes()
		s.AcceptBy = nil
		s.Kitchen = messages.KitchenStatus_KITCHEN_PREPARING
		s.Delivery = messages.DeliveryStatus_DELIVERY_DISPATCHING
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedOrderAccepted, e.GetAcceptedAt())
	case *messages.OrderRejected:
		closeOrder(s, messages.OrderStatus_ORDER_STATUS_REJECTED, e.GetReason(), e.GetRefundCents())
		s.AcceptBy = nil
		record(s, feedOrderRejected, e.GetRejectedAt())
	case *messages.DasherAssigned:
		s.DasherId = e.GetDasherId()
		s.Delivery = messages.DeliveryStatus_DELIVERY_ASSIGNED
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedDasherAssigned, e.GetAssignedAt())
	case *messages.DasherReleased:
		s.DasherId = ""
		s.Delivery = messages.DeliveryStatus_DELIVERY_DISPATCHING
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedDasherReleased, e.GetReleasedAt())
	case *messages.FoodReady:
		s.Kitchen = messages.KitchenStatus_KITCHEN_READY
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedFoodReady, e.GetReadyAt())
	case *messages.OrderPickedUp:
		s.Kitchen = messages.KitchenStatus_KITCHEN_HANDED_OVER
		s.Delivery = messages.DeliveryStatus_DELIVERY_IN_TRANSIT
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedOrderPickedUp, e.GetPickedUpAt())
	case *messages.OrderDelivered:
		s.Delivery = messages.DeliveryStatus_DELIVERY_DELIVERED
		s.Status = deriveStatus(s.Kitchen, s.Delivery)
		record(s, feedOrderDelivered, e.GetDeliveredAt())
	case *messages.OrderCancelled:
		closeOrder(s, messages.OrderStatus_ORDER_STATUS_CANCELLED, e.GetReason(), e.GetRefundCents())
		s.CancelledBy = e.GetBy()
		s.AcceptBy = nil
		record(s, feedOrderCancelled, e.GetCancelledAt())
	case *messages.PaymentQueued:
		if s.Payment == nil {
			s.Payment = &messages.OrderPayment{}
		}
		s.Payment.Pending = append(s.Payment.Pending, e.GetAction())
	case *messages.PaymentAttemptFailed:
		for _, a := range s.GetPayment().GetPending() {
			if a.GetId() == e.GetId() {
				a.Attempts = e.GetAttempts()
				a.LastError = e.GetError()
				a.NextAttemptAt = e.GetNextAttemptAt()
			}
		}
	case *messages.PaymentSettled:
		settled(s, e)
	default:
		return fmt.Errorf("order: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

func placeFields(s *messages.OrderState, p *messages.OrderPlaced) {
	s.Created = true
	s.OrderId = p.GetOrderId()
	s.CustomerId = p.GetCustomerId()
	s.RestaurantId = p.GetRestaurantId()
	s.Lines = p.GetLines()
	s.TotalCents = p.GetTotalCents()
	s.Pickup = p.GetPickup()
	s.Dropoff = p.GetDropoff()
	s.PlacedAt = p.GetPlacedAt()
	record(s, feedOrderPlaced, p.GetPlacedAt())
}

// closeOrder ends an order without delivery.
func closeOrder(s *messages.OrderState, status messages.OrderStatus, reason string, refund int64) {
	s.Status = status
	s.Reason = reason
	s.RefundCents = refund
	s.Kitchen = messages.KitchenStatus_KITCHEN_CLOSED
	s.Delivery = messages.DeliveryStatus_DELIVERY_CLOSED
}

// record adds a timeline entry and moves the time of the last change.
func record(s *messages.OrderState, typ string, at *timestamppb.Timestamp) {
	s.Timeline = append(s.Timeline, &messages.TimelineEntry{Type: typ, At: at})
	if at != nil {
		s.UpdatedAt = at
	}
}

func settled(s *messages.OrderState, e *messages.PaymentSettled) {
	p := s.GetPayment()
	for i, a := range p.GetPending() {
		if a.GetId() != e.GetId() {
			continue
		}
		p.Pending = append(p.Pending[:i:i], p.Pending[i+1:]...)
		if e.GetFailed() {
			a.LastError = e.GetError()
			p.Failed = append(p.Failed, a)
			return
		}
		switch a.GetKind() {
		case messages.PaymentActionKind_PAYMENT_ACTION_CAPTURE:
			p.CapturedCents = a.GetAmountCents()
			p.ReleasedCents = p.GetAuthorizedCents() - a.GetAmountCents()
		case messages.PaymentActionKind_PAYMENT_ACTION_VOID:
			p.ReleasedCents = p.GetAuthorizedCents()
		}
		return
	}
}

// ---- Views ----

// orderView answers a copy of the state as the API shows it. timers are the entity's timers (deadlines).
func orderView(s *messages.OrderState, timers map[string]time.Time) *messages.OrderView {
	v := &messages.OrderView{
		Id:             s.GetOrderId(),
		CustomerId:     s.GetCustomerId(),
		RestaurantId:   s.GetRestaurantId(),
		Items:          s.GetLines(),
		TotalCents:     s.GetTotalCents(),
		Status:         StatusName(s.GetStatus()),
		KitchenStatus:  strings.TrimPrefix(s.GetKitchen().String(), "KITCHEN_"),
		DeliveryStatus: strings.TrimPrefix(s.GetDelivery().String(), "DELIVERY_"),
		DasherId:       s.GetDasherId(),
		PrepMinutes:    s.GetPrepMinutes(),
		Pickup:         s.GetPickup(),
		Dropoff:        s.GetDropoff(),
		Area:           s.GetArea(),
		PlacedAt:       s.GetPlacedAt(),
		UpdatedAt:      s.GetUpdatedAt(),
		CancelledBy:    s.GetCancelledBy(),
		Reason:         s.GetReason(),
		RefundCents:    s.GetRefundCents(),
		Payment:        paymentView(s.GetPayment()),
		Timeline:       s.GetTimeline(),
	}
	if t, ok := timers[timerAccept]; ok {
		v.AcceptBy = timestamppb.New(t)
	}
	if t, ok := timers[timerDispatch]; ok {
		v.DispatchBy = timestamppb.New(t)
	}
	return proto.Clone(v).(*messages.OrderView)
}

func paymentView(p *messages.OrderPayment) *messages.OrderPaymentView {
	v := &messages.OrderPaymentView{AuthorizedCents: p.GetAuthorizedCents(), CapturedCents: p.GetCapturedCents(), RefundCents: p.GetReleasedCents()}
	switch {
	case p.GetDeclined():
		v.Status = "DECLINED"
	case p.GetAuthId() == "" && len(p.GetPending())+len(p.GetFailed()) == 0:
		v.Status = "NONE" // nothing was authorised (cancelled while the placement waited for the processor)
	case len(p.GetFailed()) > 0:
		v.Status = "FAILED"
	case len(p.GetPending()) > 0:
		v.Status = "SETTLING"
	case p.GetCapturedCents() > 0:
		v.Status = "CAPTURED"
	case p.GetReleasedCents() > 0:
		v.Status = "VOIDED"
	default:
		v.Status = "AUTHORIZED"
	}
	return v
}

// orderStatusView answers the status and the parties: the same facts orderView holds under the same names.
func orderStatusView(s *messages.OrderState) *messages.OrderStatusView {
	v := &messages.OrderStatusView{Id: s.GetOrderId(), Status: StatusName(s.GetStatus()),
		CustomerId: s.GetCustomerId(), RestaurantId: s.GetRestaurantId(), DasherId: s.GetDasherId()}
	if t := s.GetUpdatedAt(); t != nil {
		v.UpdatedAt = &timestamppb.Timestamp{Seconds: t.GetSeconds(), Nanos: t.GetNanos()}
	}
	return v
}
