package actors

// Payment settlement of an Order (capture at delivery, void or partial capture on cancel or rejection), off the
// Order's message loop, like the authorisation (authorize.go).
//
// A decision that ends an order's payment queues one PaymentAction and sets the "payment" timer due at once
// (settlement, order.go). When the timer fires, decidePaymentTimer picks the actions due that have no call in
// flight and moves the timer to their lease (now + PaymentTimeout + PaymentRetryMin); the firing is written; then
// startSettlements starts one gateway call per action on a goroutine, bounded by PaymentTimeout, and the order
// goes on answering (Get, Status, commands, deliveries, polls). The call's outcome comes back to the activation as
// a message (settlementOutcome) and decidePaymentOutcome, a pure decision, records it: settled, refused for good
// (FAILED, for an operator), or failed transiently (the timer moves by PaymentRetryMin..PaymentRetryMax and the
// next firing tries again).
//
// One call in flight per action: a firing while the call is in flight (its lease ran out: a gateway slower than
// PaymentTimeout) only moves the lease. Durability: the action and its timer are in the journal until the outcome
// is recorded; if the activation stops or the process dies with a call in flight, the outcome reaches nobody,
// the timer fires in the next activation once the lease is over and the action is attempted again under the same
// idempotency key (<order>/capture, <order>/void), so the gateway moves the money once.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/platterhq/platter/messages"
)

// settlementOutcome is the outcome of one gateway call of a payment action, sent by the call's goroutine to the
// activation.
type settlementOutcome struct {
	id  string // the PaymentAction id (its idempotency key)
	err error
}

// interceptSettlement handles the outcome of a settlement call and the activation's stop. It reports whether it
// consumed the message.
func (o *Order) interceptSettlement(ctx actor.Context) bool {
	switch m := ctx.Message().(type) {
	case settlementOutcome:
		o.settlementDone(m)
		return true
	case *actor.Stopping:
		// The calls in flight answer nobody now; their lease brings them back in the next activation.
		clear(o.settling)
		o.toStart = nil
	}
	return false
}

// startSettlements starts the gateway calls the last payment timer firing decided, once that firing is written.
func (o *Order) startSettlements() {
	start := o.toStart
	o.toStart = nil
	if len(start) == 0 || o.entity == nil || o.entity.broken || o.stopping {
		return // the firing was not written (or the activation is going): the next activation tries again
	}
	gateway, timeout := o.deps.Payments, o.deps.Workflow.PaymentTimeout
	authID, token := o.state().GetPayment().GetAuthId(), o.state().GetPayment().GetToken()
	authorizeKey := o.id + "/authorize"
	system, self := o.system, o.self
	for _, a := range start {
		if o.settling[a.GetId()] {
			continue
		}
		o.settling[a.GetId()] = true
		o.log.Debug("payment settlement started", slog.String("payment_action", a.GetId()), slog.Int64("amount_cents", a.GetAmountCents()))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			var err error
			switch a.GetKind() {
			case messages.PaymentActionKind_PAYMENT_ACTION_CAPTURE:
				err = gateway.Capture(ctx, authID, a.GetAmountCents(), a.GetId())
			case messages.PaymentActionKind_PAYMENT_ACTION_VOID:
				err = voidAuthorisation(ctx, gateway, authID, token, authorizeKey, a)
			default:
				err = refuse(messages.ErrorReason_INTERNAL, "unknown payment action %s", a.GetKind())
			}
			cancel()
			system.Root.Send(self, settlementOutcome{id: a.GetId(), err: err})
		}()
	}
}

// settlementDone records the outcome of a settlement call with decidePaymentOutcome.
func (o *Order) settlementDone(m settlementOutcome) {
	if !o.settling[m.id] {
		return // not this activation's call, or the activation stopped meanwhile
	}
	delete(o.settling, m.id)
	if o.entity == nil || o.entity.broken || o.failed || o.stopping {
		return
	}
	var action *messages.PaymentAction
	for _, a := range o.state().GetPayment().GetPending() {
		if a.GetId() == m.id {
			action = a
		}
	}
	if action == nil {
		return
	}
	attrs := []any{slog.String("payment_action", m.id), slog.Int64("amount_cents", action.GetAmountCents())}
	switch {
	case m.err == nil:
		o.log.Info("payment settled", attrs...)
	case IsTransient(m.err):
		o.log.Warn("payment settlement failed; retrying", append(attrs, slog.Int("attempts", int(action.GetAttempts())+1), slog.Any("error", m.err))...)
	default:
		o.log.Error("payment settlement refused by the gateway", append(attrs, slog.Any("error", m.err))...)
	}
	now := o.deps.Now()
	events := decidePaymentOutcome(o.state(), m.id, m.err, o.deps.Workflow, now)
	if len(events) == 0 {
		return
	}
	before := o.entity.seq
	_, err := o.entity.commit(o.bg(), nil, events, now)
	o.afterWrite(o.feedAdded(before))
	if err != nil {
		// The activation stops (afterWrite); the action and its timer are still in the journal: the next
		// activation attempts it again under the same idempotency key.
		o.log.Warn("recording the payment outcome failed", append(attrs, slog.Any("error", fmt.Errorf("record payment outcome: %w", err)))...)
	}
}

// voidAuthorisation voids the order's authorisation authID under action a's idempotency key. With no authID the
// outcome of the order's authorisation is unknown (resolveAuthorisation, order.go): Authorize is replayed with
// the placement's token, the amount of its request (a.amount_cents) and its idempotency key, so an idempotent
// gateway answers the outcome of the original call; an authorisation is then voided, a decline means nothing is
// held. A gateway that never saw the key authorises now, and the hold is voided at once: either way none is left.
func voidAuthorisation(ctx context.Context, gateway PaymentGateway, authID, token, authorizeKey string, a *messages.PaymentAction) error {
	if authID == "" {
		id, err := gateway.Authorize(ctx, token, a.GetAmountCents(), authorizeKey)
		var refusal *Error
		switch {
		case errors.As(err, &refusal) && refusal.Code == messages.ErrorReason_PAYMENT_DECLINED:
			return nil // declined: nothing is held
		case err != nil:
			return fmt.Errorf("resolve authorisation: %w", err)
		}
		authID = id
	}
	return gateway.Void(ctx, authID, a.GetId())
}
