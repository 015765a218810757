package actors_test

// The settlement of an order's payment runs off the Order's message loop (payment_settle.go): a gateway that holds
// the capture does not block the order, one call is in flight per action, and a kill while the call is held still
// ends with the payment captured once.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// captureGateway wraps a gateway: it records every Capture call and holds the first one until hold is closed,
// whatever its context says (a processor slower than PaymentTimeout); the held call then reaches the wrapped
// gateway like any other.
type captureGateway struct {
	actors.PaymentGateway
	hold     chan struct{}
	calls    atomic.Int32
	returned atomic.Int32
	mu       sync.Mutex
	keys     []string
	amounts  []int64
}

func (g *captureGateway) wrap(sim *actors.PaymentSim) actors.PaymentGateway {
	g.PaymentGateway = sim
	return g
}

func (g *captureGateway) Capture(ctx context.Context, authID string, amountCents int64, key string) error {
	g.mu.Lock()
	g.keys = append(g.keys, key)
	g.amounts = append(g.amounts, amountCents)
	g.mu.Unlock()
	if g.calls.Add(1) == 1 {
		<-g.hold
	}
	defer g.returned.Add(1)
	return g.PaymentGateway.Capture(context.WithoutCancel(ctx), authID, amountCents, key)
}

func (g *captureGateway) captureCalls() int { return int(g.calls.Load()) }

// checkCalls checks that every Capture call carried the order's capture key and total.
func (g *captureGateway) checkCalls(t *testing.T, orderID string) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, key := range g.keys {
		if key != orderID+"/capture" || g.amounts[i] != wfTotal {
			t.Errorf("Capture call %d: key %q amount %d, want %q %d", i+1, key, g.amounts[i], orderID+"/capture", wfTotal)
		}
	}
}

// TestSettlementDoesNotBlockTheOrder: while the gateway holds the capture of a delivered order, the order answers
// Status, Get and a replayed MarkDelivered; its lease running out starts no second call; once the gateway answers,
// the capture is recorded once.
func TestSettlementDoesNotBlockTheOrder(t *testing.T) {
	w, gw, release := heldCapture(t)

	asked := time.Now()
	st, err := w.order().Status(&messages.GetOrderStatus{})
	if err != nil || st.GetStatus() != "DELIVERED" {
		t.Fatalf("status while the capture is held: %v, %v", st, err)
	}
	t.Logf("Status answered in %v while the capture was held", time.Since(asked))
	v, err := w.order().Get(&messages.GetOrder{})
	if err != nil || v.GetPayment().GetStatus() != "SETTLING" {
		t.Fatalf("get while the capture is held: %v, %v", v.GetPayment(), err)
	}
	if _, err := w.order().MarkDelivered(&messages.MarkOrderDelivered{CommandId: "d-delivered", DasherId: wfDasher}); err != nil {
		t.Fatalf("replayed MarkDelivered while the capture is held: %v", err)
	}

	// The lease runs out while the call is held: the timer fires (the reminder scanner wakes the order), moves the
	// lease, and starts no second call.
	stream := "order/" + w.orderID
	fired := countType(t, w.n.journal, stream, "platter.TimerFired")
	w.clock.Advance(2 * time.Minute)
	waitFor(t, "the payment timer to fire at the lease", 10*time.Second, func() bool {
		return countType(t, w.n.journal, stream, "platter.TimerFired") > fired
	})
	if got := gw.captureCalls(); got != 1 {
		t.Fatalf("%d Capture calls once the lease ran out with the first in flight, want 1", got)
	}

	release()
	w.waitPayment("CAPTURED")
	w.quiesce()
	w.checkInvariants()
	if got := gw.captureCalls(); got != 1 {
		t.Errorf("%d Capture calls, want 1", got)
	}
	gw.checkCalls(t, w.orderID)
	if got := countType(t, w.n.journal, stream, "platter.PaymentSettled"); got != 1 {
		t.Errorf("%d PaymentSettled events, want 1", got)
	}
	if a := w.auth(); a.CapturedCents != wfTotal {
		t.Errorf("ledger: %+v", a)
	}
}

// TestSettlementHeldAcrossAKill: the node is killed while the gateway holds the capture; the restarted node
// captures again under the same idempotency key once the lease is over; the held call, released, gets the same
// answer from the gateway. The order ends CAPTURED with one PaymentSettled and the money captured once.
func TestSettlementHeldAcrossAKill(t *testing.T) {
	w, gw, release := heldCapture(t)

	w.restart(true)
	w.clock.Advance(2 * time.Minute) // past the lease of the held call
	w.waitPayment("CAPTURED")
	if got := gw.captureCalls(); got != 2 {
		t.Fatalf("%d Capture calls, want 2 (the held one, and one after the restart)", got)
	}
	release()
	waitFor(t, "the held call to return", 10*time.Second, func() bool { return gw.returned.Load() == 2 })
	w.quiesce()
	w.checkInvariants()
	gw.checkCalls(t, w.orderID)
	if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.PaymentSettled"); got != 1 {
		t.Errorf("%d PaymentSettled events, want 1", got)
	}
	if a := w.auth(); a.CapturedCents != wfTotal {
		t.Errorf("ledger: %+v, want %d captured once", a, wfTotal)
	}
}

// heldCapture runs an order to delivery with a gateway that holds its Capture calls (PaymentTimeout a minute) and
// waits for the first capture to start. release lets the held calls answer; the test's cleanup releases them too,
// before the node stops.
func heldCapture(t *testing.T) (*wfWorld, *captureGateway, func()) {
	t.Helper()
	gw := &captureGateway{hold: make(chan struct{})}
	w := newWorld(t, wfOptions{gateway: gw.wrap, workflow: func(wf *actors.WorkflowConfig) {
		wf.PaymentTimeout = time.Minute
	}})
	release := closeOnce(gw.hold)
	t.Cleanup(release) // registered after newWorld's, so it runs before them
	for _, st := range wfSteps {
		st.run(w)
	}
	waitFor(t, "the capture to start", 10*time.Second, func() bool { return gw.captureCalls() == 1 })
	return w, gw, release
}
