package actors

// Payment authorisation of a PlaceOrder, off the Order's message loop.
//
// A PlaceOrder that the decision would accept (a valid command for an absent order, not a replay, not a duplicate
// delivery) needs the payment authorised first. The gateway call may take up to PaymentTimeout, so the Order does
// not make it in its receive loop: interceptPlacement takes the request (a Place rpc, or a Deliver of PlaceOrder
// from the customer's outbox) before the generated dispatcher, starts one Authorize call on a goroutine and parks
// the request. The call's outcome comes back to the activation as a message (authorised); then every parked
// request runs through the decision with that outcome and is answered. Meanwhile the order answers everything
// else: Get and Status answer NOT_FOUND (the order does not exist until PlaceOrder is decided), Wake, poison and
// shutdown proceed.
//
// Cancel of a placement that waits (the "placing" cell of the cancellation matrix): the customer of the PlaceOrder
// in flight may cancel it. The Cancel is parked with the call and runs after the parked placements: an authorised
// order is then cancelled from pending (full refund: the authorisation is voided by the settlement), a declined
// one is REJECTED (NC). When the call failed transiently, or when no call is in flight but the last PlaceOrder
// this activation saw failed transiently (waiting: the customer's outbox will redeliver it), the Cancel records
// the tombstone (decideCancelPlacement): the order is placed and cancelled at once with nothing authorised, and
// the redelivered PlaceOrder is refused. A transient failure may hide an authorisation (the processor placed the
// hold, its answer was lost), so the tombstone also queues a durable void of the unknown authorisation
// (resolveAuthorisation, order.go), settled by the payment timer: Authorize replayed under the same idempotency
// key answers the original outcome, and an authorisation is voided. Any other Cancel of an absent order answers
// NOT_FOUND, as before. The evidence of a waiting placement is the activation's (in memory): after a restart,
// until the customer's outbox redelivers the PlaceOrder, a Cancel answers NOT_FOUND and may be retried.
//
// One call per order at a time: a request that arrives while a call is in flight for the same command (the
// customer's outbox redelivering after its DeliverTimeout) waits for that call instead of starting another; a
// different PlaceOrder for the same order answers UNAVAILABLE (retry).
//
// Retries: the Order makes one attempt per request. A transient failure answers UNAVAILABLE with a payment
// message (errPaymentUnavailable) and records nothing; the durable retry is the sender's: the customer's outbox
// keeps the PlaceOrder in its journal and redelivers it with back-off (OutboxRetryMin doubling to OutboxRetryMax),
// across restarts, until the Order acknowledges it. The same idempotency key (order id + "/authorize") makes the
// repeated call safe at the gateway. A decline is recorded (the order is REJECTED) and acknowledged.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/messages"
)

var (
	// errPaymentUnavailable answers a PlaceOrder whose authorisation failed transiently: nothing was written.
	errPaymentUnavailable = &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the payment processor is unavailable; retry later"}
	// errPlacementInProgress answers a PlaceOrder that differs from the one being authorised for the same order.
	errPlacementInProgress = &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "another placement of this order is being authorised; retry"}
	// errAuthorisationStopped answers the requests parked for an authorisation when the activation stops.
	errAuthorisationStopped = &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the order stopped while its payment was being authorised; retry"}
	// errNotAuthorised is an internal error: a PlaceOrder reached its decision without an authorisation (a bug,
	// or an in-process caller that bypassed interceptPlacement). Not a refusal, so a sender retries.
	errNotAuthorised = errors.New("PlaceOrder reached its decision without a payment authorisation")
)

// authorising is the authorisation call in flight for an order.
type authorising struct {
	command *messages.PlaceOrder // the PlaceOrder being authorised
	waiters []authWaiter
	cancels []cancelWaiter // Cancels of this placement by its customer, run after the waiters
}

// cancelWaiter is a Cancel parked until the authorisation answers.
type cancelWaiter struct {
	sender *actor.PID
	cancel *messages.CancelOrder
}

// authWaiter is a request parked until the authorisation answers: a Place rpc, or a Deliver of PlaceOrder.
type authWaiter struct {
	sender *actor.PID
	place  *messages.PlaceOrder
	env    *messages.Envelope
}

// authorised is the outcome of the Authorize call, sent by the call's goroutine to the activation.
type authorised struct {
	authID string
	err    error
}

// interceptPlacement handles, before the generated dispatcher, the requests that need a payment authorisation
// (see the file comment) and the outcome of the call. It reports whether it consumed the message.
func (o *Order) interceptPlacement(ctx actor.Context) bool {
	switch m := ctx.Message().(type) {
	case *pcluster.GrainRequest:
		if m.MethodIndex == o.cancelIndex {
			return o.interceptCancel(ctx, m)
		}
		if m.MethodIndex != o.placeIndex && m.MethodIndex != o.deliverIndex {
			return false
		}
		w, cmd := o.needsAuthorisation(m)
		if cmd == nil {
			return false // the generated dispatcher answers (replay, duplicate, refusal, malformed)
		}
		w.sender = ctx.Sender()
		o.park(cmd, w)
		return true
	case authorised:
		o.authorisationDone(m)
		return true
	case *actor.Stopping:
		o.releaseAuthorisation()
	}
	return false
}

// interceptCancel takes a customer's Cancel of an absent order whose placement by that customer waits for the
// payment processor (see the file comment); every other Cancel goes to the generated dispatcher.
func (o *Order) interceptCancel(ctx actor.Context, m *pcluster.GrainRequest) bool {
	if o.entity == nil || o.entity.broken || o.failed || o.stopping || o.state().GetCreated() {
		return false
	}
	c := &messages.CancelOrder{}
	if proto.Unmarshal(m.MessageData, c) != nil || c.GetBy() != messages.CancelledBy_CANCELLED_BY_CUSTOMER {
		return false
	}
	switch {
	case o.authorising != nil && o.authorising.command.GetCustomerId() == c.GetRequesterId():
		o.authorising.cancels = append(o.authorising.cancels, cancelWaiter{sender: ctx.Sender(), cancel: c})
		o.log.Debug("cancel waits for the payment authorisation", slog.String("command_id", c.GetCommandId()))
		return true
	case o.authorising == nil && o.waiting != nil && o.waiting.GetCustomerId() == c.GetRequesterId():
		o.reply(authWaiter{sender: ctx.Sender()}, o.cancelPlacement(o.waiting, c))
		return true
	}
	return false
}

// cancelPlacement records the tombstone of placement p (decideCancelPlacement) and returns the answer.
func (o *Order) cancelPlacement(p *messages.PlaceOrder, c *messages.CancelOrder) any {
	err := o.command(nil, c.GetCommandId(), c, func(s *messages.OrderState, now time.Time) ([]proto.Message, error) {
		return decideCancelPlacement(s, o.id, p, c, o.deps.Workflow, now)
	})
	if err != nil {
		return err
	}
	o.waiting = nil
	o.log.Info("placement cancelled while waiting for the payment processor", slog.String("command_id", c.GetCommandId()))
	return o.view()
}

// needsAuthorisation returns the waiter and its PlaceOrder when the request is a PlaceOrder the decision would
// accept, else a nil command. An order already created needs none (checkPlaceOrder refuses every PlaceOrder
// then), so the request is not decoded here: the generated dispatcher answers it.
func (o *Order) needsAuthorisation(m *pcluster.GrainRequest) (authWaiter, *messages.PlaceOrder) {
	if o.entity == nil || o.entity.broken || o.failed || o.stopping || o.state().GetCreated() {
		return authWaiter{}, nil
	}
	var w authWaiter
	cmd := &messages.PlaceOrder{}
	if m.MethodIndex == o.placeIndex {
		if proto.Unmarshal(m.MessageData, cmd) != nil {
			return authWaiter{}, nil
		}
		if replayed, err := o.entity.replayed(cmd.GetCommandId(), cmd); err != nil || replayed {
			return authWaiter{}, nil
		}
		w.place = cmd
	} else {
		env := &messages.Envelope{}
		if proto.Unmarshal(m.MessageData, env) != nil || env.GetPayload() == nil || env.GetOutSeq() == 0 {
			return authWaiter{}, nil
		}
		if mark, ok := o.entity.box.inbox[env.GetFromStream()]; ok && env.GetOutSeq() <= mark.GetOutSeq() {
			return authWaiter{}, nil // a duplicate: acknowledged without effect
		}
		if !env.GetPayload().MessageIs(cmd) || env.GetPayload().UnmarshalTo(cmd) != nil {
			return authWaiter{}, nil
		}
		if env.GetFromStream() != streamOf(KindCustomer, cmd.GetCustomerId()) {
			return authWaiter{}, nil
		}
		w.env = env
	}
	if checkPlaceOrder(o.state(), cmd) != nil {
		return authWaiter{}, nil
	}
	return w, cmd
}

// park makes w wait for the authorisation of cmd, starting the call when none is in flight.
func (o *Order) park(cmd *messages.PlaceOrder, w authWaiter) {
	if o.authorising != nil {
		if !proto.Equal(o.authorising.command, cmd) {
			o.reply(w, grainError(errPlacementInProgress))
			return
		}
		o.authorising.waiters = append(o.authorising.waiters, w)
		return
	}
	o.authorising = &authorising{command: cmd, waiters: []authWaiter{w}}
	gateway, timeout := o.deps.Payments, o.deps.Workflow.PaymentTimeout
	token, amount, key := cmd.GetPaymentToken(), orderTotal(cmd.GetLines()), o.id+"/authorize"
	system, self := o.system, o.self
	o.log.Debug("payment authorisation started", slog.String("command_id", cmd.GetCommandId()), slog.Int64("amount_cents", amount))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		authID, err := gateway.Authorize(ctx, token, amount, key)
		cancel()
		system.Root.Send(self, authorised{authID: authID, err: err})
	}()
}

// authorisationDone runs every parked request with the outcome of the call and answers it.
func (o *Order) authorisationDone(m authorised) {
	a := o.authorising
	if a == nil {
		return
	}
	o.authorising = nil
	var auth *authorization
	var refusal *Error
	switch {
	case m.err == nil:
		auth = &authorization{authID: m.authID}
	case errors.As(m.err, &refusal):
		o.log.Info("payment declined", slog.String("code", refusal.Code.String()), slog.String("reason", refusal.Message))
		auth = &authorization{declined: refusal.Message}
	default:
		o.log.Warn("payment authorisation unavailable", slog.Int("waiting", len(a.waiters)), slog.Any("error", fmt.Errorf("authorize payment: %w", m.err)))
		o.waiting = a.command // the customer's outbox redelivers it; its customer may cancel it meanwhile
	}
	defer o.runCancels(a, auth)
	for _, w := range a.waiters {
		if auth == nil {
			o.reply(w, grainError(errPaymentUnavailable))
			continue
		}
		if w.place != nil {
			view, err := o.place(w.place, auth)
			if err != nil {
				o.reply(w, err)
			} else {
				o.reply(w, view)
			}
			continue
		}
		o.reply(w, o.deliverPlacement(w.env, auth))
	}
}

// runCancels answers the Cancels parked with authorisation a, once its placements ran: with an outcome (auth),
// the Cancel runs in the stage they left; after a transient failure it records the tombstone.
func (o *Order) runCancels(a *authorising, auth *authorization) {
	for _, c := range a.cancels {
		if auth == nil {
			o.reply(authWaiter{sender: c.sender}, o.cancelPlacement(a.command, c.cancel))
			continue
		}
		view, err := o.run(nil, c.cancel.GetCommandId(), c.cancel, func(s *messages.OrderState, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
			return decideCancelOrder(s, c.cancel, cfg, now)
		})
		if err != nil {
			o.reply(authWaiter{sender: c.sender}, err)
		} else {
			o.reply(authWaiter{sender: c.sender}, view)
		}
	}
}

// deliverPlacement applies a delivered PlaceOrder with its authorisation, as Deliver would, and returns the answer.
func (o *Order) deliverPlacement(env *messages.Envelope, auth *authorization) any {
	if err := o.query(); err != nil {
		return err
	}
	feed, err := o.entity.receive(o.bg(), env, o.decideDelivery(auth))
	o.afterWrite(feed)
	if err := o.answer(err, slog.String("from", env.GetFromStream()), slog.Uint64("out_seq", env.GetOutSeq())); err != nil {
		return err
	}
	return &messages.Ack{}
}

// releaseAuthorisation answers the parked requests when the activation stops (the call's outcome would reach
// nobody); their senders retry, and the next activation authorises again under the same idempotency key.
func (o *Order) releaseAuthorisation() {
	if a := o.authorising; a != nil {
		o.authorising = nil
		for _, w := range a.waiters {
			o.reply(w, grainError(errAuthorisationStopped))
		}
		for _, c := range a.cancels {
			o.reply(authWaiter{sender: c.sender}, grainError(errAuthorisationStopped))
		}
	}
}

// reply answers a parked request (a request sent without a future has nobody to answer).
func (o *Order) reply(w authWaiter, answer any) {
	if w.sender != nil {
		o.system.Root.Send(w.sender, answer)
	}
}

// mustMethodIndex is methodIndex for the kinds' own services, which exist in every build.
func mustMethodIndex(kind, method string) int32 {
	idx, err := methodIndex(kind, method)
	if err != nil {
		panic(err)
	}
	return idx
}
