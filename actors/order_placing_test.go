package actors_test

// A customer cancels an order whose placement is still waiting for the payment processor (the "placing" cell of
// the cancellation matrix, authorize.go): the customer sees the order cancelled with nothing charged.

import (
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// customerOrderStatus returns the status of order id in the customer's index ("" when absent).
func customerOrderStatus(t *testing.T, w *wfWorld, id string) string {
	t.Helper()
	list, err := w.n.customer(wfCustomer).ListOrders(&messages.ListCustomerOrders{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list.GetOrders() {
		if o.GetOrderId() == id {
			return o.GetStatus()
		}
	}
	return ""
}

// TestCancelWhileTheProcessorIsDown: the processor fails every authorisation; the customer's outbox retries the
// PlaceOrder. Another customer's and the restaurant's cancels answer NOT_FOUND; the customer's cancel records the
// order cancelled with nothing authorised, the customer's index shows it CANCELLED, and once the processor is back
// the redelivered placement is refused: no authorisation is ever made.
func TestCancelWhileTheProcessorIsDown(t *testing.T) {
	gw := &authGateway{}
	gw.down.Store(true)
	w := newWorld(t, wfOptions{noDasher: true, gateway: gw.wrap})
	view, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
	if err != nil {
		t.Fatal(err)
	}
	w.orderID = view.GetLastOrder().GetOrderId()
	waitFor(t, "a failed authorisation", 10*time.Second, func() bool {
		return w.n.logs.count("payment authorisation unavailable", w.orderID) >= 1
	})
	for name, c := range map[string]*messages.CancelOrder{
		"another customer": {CommandId: "x-cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: "c_other"},
		"the restaurant":   {CommandId: "x-cancel", By: messages.CancelledBy_CANCELLED_BY_RESTAURANT, RequesterId: wfRestaurant},
	} {
		_, err := w.order().Cancel(c)
		wantCode(t, "cancel by "+name, err, messages.ErrorReason_NOT_FOUND)
	}
	cancel := &messages.CancelOrder{CommandId: "c-cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: wfCustomer, Reason: "too slow"}
	v, err := w.order().Cancel(cancel)
	if err != nil {
		t.Fatalf("the customer's cancel of a waiting placement: %v", err)
	}
	if v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "SETTLING" || v.GetPayment().GetAuthorizedCents() != 0 || v.GetCustomerId() != wfCustomer {
		t.Fatalf("cancelled placement: %v (want SETTLING: the unknown authorisation is being resolved)", v)
	}
	if again, err := w.order().Cancel(cancel); err != nil || again.GetStatus() != "CANCELLED" {
		t.Fatalf("the same cancel again: %v, %v", again, err)
	}
	waitFor(t, "the customer's index to show it cancelled", 10*time.Second, func() bool {
		return customerOrderStatus(t, w, w.orderID) == actors.StatusCancelled
	})
	gw.down.Store(false)
	w.acked = append(w.acked, w.orderID)
	w.quiesce() // the customer's outbox delivered the PlaceOrder: refused, acknowledged
	// The void that resolves the unknown authorisation replays Authorize under the placement's key once the
	// processor is back: this gateway never saw the key, so it authorises now, and the hold is voided at once.
	w.waitResolved()
	if v := w.view(); v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "NONE" || v.GetPayment().GetAuthorizedCents() != 0 {
		t.Errorf("order at rest: %v", v)
	}
	if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.OrderCreated"); got != 1 {
		t.Errorf("%d OrderCreated events, want 1", got)
	}
	w.checkFeeds([]string{"ORDER_CANCELLED"}, nil, nil)
	w.checkInvariants()
}

// waitResolved waits until the void that resolves the order's unknown authorisation (resolveAuthorisation) is
// settled, then checks the sim's ledger holds exactly one authorisation of the order, voided and not captured, and
// the order keeps no pending or failed payment action (a second void, under another key, would be refused
// "voided already" and recorded as failed).
func (w *wfWorld) waitResolved() {
	w.t.Helper()
	waitFor(w.t, "the unknown authorisation voided", 10*time.Second, func() bool {
		v, err := w.order().Get(&messages.GetOrder{})
		if err == nil && v.GetPayment().GetStatus() == "NONE" {
			return true
		}
		w.clock.Advance(10 * time.Millisecond)
		return false
	})
	if au := w.auth(); !au.Voided || au.CapturedCents != 0 {
		w.t.Errorf("ledger: %+v, want voided", au)
	}
}

// TestCancelAfterALostAuthorisation: the processor authorises the placement but the answer is lost (the Order's
// call times out), so the Order counts it as a transient failure; the customer cancels (the tombstone). The
// hold the Order never heard of must not stay: the tombstone queues a durable void that replays Authorize under
// the placement's idempotency key (the sim answers the original authorisation) and voids it, also when the node
// dies before the processor answers again. The ledger ends with the one hold, voided once.
func TestCancelAfterALostAuthorisation(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "restart"}[restart], func(t *testing.T) {
			gw := &authGateway{}
			gw.lose.Store(true)
			w := newWorld(t, wfOptions{noDasher: true, gateway: gw.wrap})
			view, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
			if err != nil {
				t.Fatal(err)
			}
			w.orderID = view.GetLastOrder().GetOrderId()
			waitFor(t, "a lost authorisation", 10*time.Second, func() bool {
				return w.n.logs.count("payment authorisation unavailable", w.orderID) >= 1
			})
			if au := w.auth(); au.Voided {
				t.Fatalf("ledger before the cancel: %+v, want authorised", au)
			}
			v, err := w.order().Cancel(&messages.CancelOrder{CommandId: "c-cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: wfCustomer})
			if err != nil || v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "SETTLING" {
				t.Fatalf("cancel of the waiting placement: %v, %v", v, err)
			}
			waitFor(t, "the void's replayed authorisation to be lost too", 10*time.Second, func() bool {
				w.clock.Advance(10 * time.Millisecond)
				return w.n.logs.count("payment settlement failed; retrying", w.orderID) >= 1
			})
			if restart {
				w.restart(true)
			}
			gw.lose.Store(false)
			w.acked = append(w.acked, w.orderID)
			w.waitResolved()
			if n := len(w.sim.Authorizations()); n != 1 {
				t.Errorf("%d authorisations, want 1", n)
			}
			w.quiesce()
			if v := w.view(); v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "NONE" {
				t.Errorf("order at rest: %v", v)
			}
			w.checkInvariants()
		})
	}
}

// TestCancelWhileAuthorising: the customer cancels while the authorisation call is held; the cancel waits for it;
// the authorisation succeeds afterwards; the order is placed and cancelled by its customer (full refund) and the
// authorisation is voided: nothing charged.
func TestCancelWhileAuthorising(t *testing.T) {
	gw, release := heldAuthGateway()
	defer release()
	w := newWorld(t, wfOptions{noDasher: true, gateway: gw.wrap, workflow: func(wf *actors.WorkflowConfig) {
		wf.PaymentTimeout = time.Minute
	}})
	view, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
	if err != nil {
		t.Fatal(err)
	}
	w.orderID = view.GetLastOrder().GetOrderId()
	w.acked = append(w.acked, w.orderID)
	waitFor(t, "the authorisation to start", 10*time.Second, func() bool { return gw.authorizeCalls() == 1 })
	type answer struct {
		v   *messages.OrderView
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		v, err := w.order().Cancel(&messages.CancelOrder{CommandId: "c-cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: wfCustomer})
		answered <- answer{v, err}
	}()
	waitFor(t, "the cancel to wait for the authorisation", 10*time.Second, func() bool {
		return w.n.logs.count("cancel waits for the payment authorisation", w.orderID) == 1
	})
	if _, err := w.order().Status(&messages.GetOrderStatus{}); actors.AsError(err).Code != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("status while the cancel waits: %v", err)
	}
	select {
	case a := <-answered:
		t.Fatalf("the cancel answered before the authorisation: %v, %v", a.v, a.err)
	default:
	}
	release()
	a := <-answered
	if a.err != nil || a.v.GetStatus() != "CANCELLED" || a.v.GetRefundCents() != wfTotal {
		t.Fatalf("cancel after the authorisation: %v, %v", a.v, a.err)
	}
	v := w.waitPayment("VOIDED")
	if v.GetPayment().GetCapturedCents() != 0 {
		t.Errorf("payment: %v", v.GetPayment())
	}
	if au := w.auth(); au.CapturedCents != 0 || !au.Voided {
		t.Errorf("ledger: %+v, want voided", au)
	}
	waitFor(t, "the customer's index to show it cancelled", 10*time.Second, func() bool {
		return customerOrderStatus(t, w, w.orderID) == actors.StatusCancelled
	})
	w.quiesce()
	w.checkInvariants()
}
