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
	if v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "NONE" || v.GetPayment().GetAuthorizedCents() != 0 || v.GetCustomerId() != wfCustomer {
		t.Fatalf("cancelled placement: %v", v)
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
	if n := len(w.sim.Authorizations()); n != 0 {
		t.Errorf("%d authorisations after the cancel, want 0", n)
	}
	if v := w.view(); v.GetStatus() != "CANCELLED" || v.GetPayment().GetStatus() != "NONE" {
		t.Errorf("order at rest: %v", v)
	}
	if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.OrderCreated"); got != 1 {
		t.Errorf("%d OrderCreated events, want 1", got)
	}
	w.checkFeeds([]string{"ORDER_CANCELLED"}, nil, nil)
	w.checkInvariants()
}

// TestCancelWhileAuthorising: the customer cancels while the authorisation call is held; the cancel waits for it;
// the authorisation succeeds afterwards; the order is placed and cancelled by its customer (full refund) and the
// authorisation is voided: nothing charged.
func TestCancelWhileAuthorising(t *testing.T) {
	gw := &authGateway{release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gw.release)
		}
	}()
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
	close(gw.release)
	released = true
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
