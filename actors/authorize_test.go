package actors_test

// The payment authorisation of a PlaceOrder runs off the Order's message loop (authorize.go): a slow gateway does
// not block the order, a transient failure is retried by the customer's durable outbox, one gateway call per
// delivery, across a kill.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// authGateway wraps a gateway: it counts Authorize calls, can hold them until release is closed, and fails
// them transiently while down is set.
type authGateway struct {
	actors.PaymentGateway
	calls   atomic.Int32
	down    atomic.Bool
	lose    atomic.Bool   // the gateway authorises but the answer is lost: the client times out
	release chan struct{} // nil: calls are not held
}

// heldAuthGateway returns a gateway that holds Authorize calls until its release (safe to call again; defer it, so
// the held calls return before the test's node stops).
func heldAuthGateway() (*authGateway, func()) {
	g := &authGateway{release: make(chan struct{})}
	return g, closeOnce(g.release)
}

// closeOnce returns a func that closes ch, safe to call again (a held gateway's release, deferred or registered as
// a cleanup as well as called by the test).
func closeOnce(ch chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (g *authGateway) wrap(sim *actors.PaymentSim) actors.PaymentGateway {
	g.PaymentGateway = sim
	return g
}

func (g *authGateway) authorizeCalls() int { return int(g.calls.Load()) }

func (g *authGateway) Authorize(ctx context.Context, token string, amountCents int64, key string) (string, error) {
	g.calls.Add(1)
	if g.release != nil {
		select {
		case <-g.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if g.down.Load() {
		return "", fmt.Errorf("authorize: %w", actors.ErrPaymentUnavailable)
	}
	if g.lose.Load() {
		_, _ = g.PaymentGateway.Authorize(ctx, token, amountCents, key)
		return "", fmt.Errorf("authorize: %w", context.DeadlineExceeded)
	}
	return g.PaymentGateway.Authorize(ctx, token, amountCents, key)
}

// TestAuthorisationDoesNotBlockTheOrder: while the gateway holds the authorisation, the order answers Status, Get
// and another customer's Cancel (NOT_FOUND: the order does not exist until PlaceOrder is decided), the customer's
// outbox times out and redelivers without a second gateway call, and once the gateway answers the order is placed
// once.
func TestAuthorisationDoesNotBlockTheOrder(t *testing.T) {
	gw, release := heldAuthGateway()
	defer release()
	w := newWorld(t, wfOptions{noDasher: true, gateway: gw.wrap, workflow: func(wf *actors.WorkflowConfig) {
		wf.DeliverTimeout = 200 * time.Millisecond // the customer's delivery times out while the call is held
		wf.PaymentTimeout = time.Minute
	}})
	view, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
	if err != nil {
		t.Fatal(err)
	}
	w.orderID = view.GetLastOrder().GetOrderId()
	waitFor(t, "the authorisation to start", 10*time.Second, func() bool { return gw.authorizeCalls() == 1 })
	waitFor(t, "the customer's outbox to redeliver", 10*time.Second, func() bool {
		return w.n.logs.count("delivery failed; retrying", wfCustomer) >= 2
	})

	asked := time.Now()
	_, err = w.order().Status(&messages.GetOrderStatus{})
	wantCode(t, "status while authorising", err, messages.ErrorReason_NOT_FOUND)
	t.Logf("Status answered in %v while the authorisation was held", time.Since(asked))
	_, err = w.order().Get(&messages.GetOrder{})
	wantCode(t, "get while authorising", err, messages.ErrorReason_NOT_FOUND)
	// Another customer's cancel answers at once (its own customer's waits for the call: order_placing_test.go).
	_, err = w.order().Cancel(&messages.CancelOrder{CommandId: "c-cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: "c_other"})
	wantCode(t, "cancel while authorising", err, messages.ErrorReason_NOT_FOUND)
	if got := gw.authorizeCalls(); got != 1 {
		t.Fatalf("%d Authorize calls while the first is held, want 1", got)
	}

	release()
	w.waitStatus("PENDING_ACCEPTANCE")
	w.quiesce()
	if got := gw.authorizeCalls(); got != 1 {
		t.Errorf("%d Authorize calls, want 1 (redeliveries wait for the call in flight)", got)
	}
	if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.OrderCreated"); got != 1 {
		t.Errorf("%d OrderCreated events, want 1", got)
	}
	w.checkFeeds([]string{"ORDER_PLACED"}, []string{"ORDER_PLACED"}, nil)
	w.checkInvariants()
}

// TestAuthorisationRetriedAcrossAKill: the processor is down, the customer's outbox retries PlaceOrder (one
// gateway call per delivery); the node is killed mid-retry and restarted on the same journal; the processor
// comes back; the order is placed once and completes.
func TestAuthorisationRetriedAcrossAKill(t *testing.T) {
	gw := &authGateway{}
	gw.down.Store(true)
	w := newWorld(t, wfOptions{gateway: gw.wrap})
	view, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
	if err != nil {
		t.Fatal(err)
	}
	w.orderID = view.GetLastOrder().GetOrderId()
	w.acked = append(w.acked, w.orderID)
	waitFor(t, "failed authorisations", 10*time.Second, func() bool { return gw.authorizeCalls() >= 2 })
	w.restart(true)
	before := gw.authorizeCalls()
	gw.down.Store(false)
	w.waitStatus("PENDING_ACCEPTANCE")
	if gw.authorizeCalls() <= before {
		t.Fatalf("no Authorize call after the restart (%d before, %d after)", before, gw.authorizeCalls())
	}
	for _, s := range wfSteps[1:] {
		s.run(w)
	}
	w.waitPayment("CAPTURED")
	w.quiesce()
	w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
	w.checkInvariants()
	if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.OrderCreated"); got != 1 {
		t.Errorf("%d OrderCreated events, want 1", got)
	}
	if a := w.auth(); a.CapturedCents != wfTotal {
		t.Errorf("ledger: %+v", a)
	}
}
