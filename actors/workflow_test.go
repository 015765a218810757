package actors_test

// Whole-workflow component tests: Customer, Order, Restaurant, Area and Dasher in a one-node cluster over a
// temp-dir bbolt journal, driven through their grain clients as the edge would. Each scenario ends with every
// party's feed checked entry by entry and the invariant checker run over the whole journal. The clock is the
// test's (it moves only when a test moves it); the payment gateway is one PaymentSim shared across restarts, as an
// external processor would be.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

const (
	wfCustomer   = "c_1"
	wfRestaurant = "r_1"
	wfDasher     = "d_1"
	wfTotal      = 2*1250 + 600
)

// The feeds of the happy path, entry by entry.
var (
	wfCustomerFeed   = []string{"ORDER_PLACED", "ORDER_ACCEPTED", "DASHER_ASSIGNED", "FOOD_READY", "ORDER_PICKED_UP", "ORDER_DELIVERED"}
	wfRestaurantFeed = []string{"ORDER_PLACED", "DASHER_ASSIGNED", "ORDER_DELIVERED"}
	wfDasherFeed     = []string{"DELIVERY_OFFERED", "DASHER_ASSIGNED", "FOOD_READY", "ORDER_DELIVERED"}
)

// wfWorld is one scenario: a node over a journal file, a restaurant with a menu, a customer with an address, a
// card and a cart, and (unless noDasher) a dasher online at the restaurant.
type wfWorld struct {
	t     *testing.T
	path  string
	clock *testClock
	sim   *actors.PaymentSim
	opts  nodeOptions
	n     *node

	pickup  *messages.Position
	dropoff *messages.Position
	orderID string
	acked   []string
}

type wfOptions struct {
	card     string // the customer's card; default TestCardVisa
	noDasher bool
	workflow func(*actors.WorkflowConfig)
	// gateway wraps the world's PaymentSim (fault injection); nil: the sim itself.
	gateway func(*actors.PaymentSim) actors.PaymentGateway
}

func newWorld(t *testing.T, o wfOptions) *wfWorld {
	t.Helper()
	clk := newTestClock()
	w := &wfWorld{
		t:       t,
		path:    filepath.Join(t.TempDir(), "journal.db"),
		clock:   clk,
		sim:     actors.NewPaymentSim(actors.PaymentSimConfig{Now: clk.Now}),
		pickup:  &messages.Position{Lat: 37.7749, Lng: -122.4194},
		dropoff: &messages.Position{Lat: 37.7790, Lng: -122.4140},
	}
	var payments actors.PaymentGateway = w.sim
	if o.gateway != nil {
		payments = o.gateway(w.sim)
	}
	w.opts = nodeOptions{clock: clk, payments: payments, workflow: func(wf *actors.WorkflowConfig) {
		wf.PaymentRetryMin, wf.PaymentRetryMax = 5*time.Millisecond, 50*time.Millisecond
		if o.workflow != nil {
			o.workflow(wf)
		}
	}}
	w.n = startNode(t, w.path, w.opts)
	card := o.card
	if card == "" {
		card = actors.TestCardVisa
	}
	w.setUp(card, !o.noDasher)
	return w
}

func (w *wfWorld) order() *messages.OrderGrainClient {
	return messages.GetOrderGrainClient(w.n.cluster, w.orderID)
}

func (w *wfWorld) dasher() *messages.DasherGrainClient {
	return messages.GetDasherGrainClient(w.n.cluster, wfDasher)
}

func (w *wfWorld) area() *messages.AreaGrainClient {
	return messages.GetAreaGrainClient(w.n.cluster, actors.AreaOf(w.pickup))
}

// retry calls f until it succeeds or fails with another code than UNAVAILABLE (an activation that moved or a node
// that is starting), within 10 s. Every command carries its id, so a retry is safe.
func (w *wfWorld) retry(what string, f func() error) error {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil || actors.ErrorCode(err) != messages.ErrorReason_UNAVAILABLE.String() || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// must runs f with retry and fails the test on error.
func (w *wfWorld) must(what string, f func() error) {
	w.t.Helper()
	if err := w.retry(what, f); err != nil {
		w.t.Fatalf("%s: %v", what, err)
	}
}

func (w *wfWorld) setUp(card string, dasher bool) {
	w.t.Helper()
	r := w.n.restaurant(wfRestaurant)
	menu := []*messages.MenuItem{
		{Id: "m1", Name: "Pad thai", PriceCents: 1250, Tags: []string{"noodles"}},
		{Id: "m2", Name: "Spring rolls", PriceCents: 600},
	}
	w.must("create the restaurant", func() error {
		_, err := r.Create(&messages.CreateRestaurant{CommandId: "r-create", Name: "Siam Kitchen", Cuisine: "Thai", Position: w.pickup})
		return err
	})
	w.must("set the menu", func() error {
		_, err := r.UpdateMenu(&messages.UpdateMenu{CommandId: "r-menu", Items: menu})
		return err
	})
	c := w.n.customer(wfCustomer)
	w.must("create the customer", func() error {
		_, err := c.Create(&messages.CreateCustomer{CommandId: "c-create", Name: "Ada", Email: "ada@example.com"})
		return err
	})
	w.must("set the address", func() error {
		_, err := c.SetAddress(&messages.SetAddress{CommandId: "c-addr", Address: &messages.Address{
			Line1: "1 Market St", City: "San Francisco", PostalCode: "94105", Position: w.dropoff}})
		return err
	})
	w.must("set the card", func() error {
		_, err := c.SetPaymentMethod(&messages.SetPaymentMethod{CommandId: "c-card", CardNumber: card, ExpMonth: 12, ExpYear: 2030, Cvc: "123"})
		return err
	})
	for i, q := range []int32{2, 1} {
		w.must("fill the cart", func() error {
			_, err := c.AddToCart(&messages.AddToCart{CommandId: fmt.Sprintf("c-add-%d", i), RestaurantId: wfRestaurant,
				RestaurantName: "Siam Kitchen", Pickup: w.pickup, Item: menu[i], Quantity: q})
			return err
		})
	}
	if !dasher {
		return
	}
	d := w.dasher()
	w.must("create the dasher", func() error {
		_, err := d.Create(&messages.CreateDasher{CommandId: "d-create", Name: "Dee", Vehicle: "bicycle"})
		return err
	})
	w.must("go online", func() error {
		_, err := d.SetStatus(&messages.SetDasherStatus{CommandId: "d-online", Online: true, Position: w.pickup})
		return err
	})
	waitFor(w.t, "the area to know the dasher", 10*time.Second, func() bool {
		v, err := w.area().Get(&messages.GetArea{})
		return err == nil && slices.ContainsFunc(v.GetDashers(), func(d *messages.AreaDasher) bool { return d.GetDasherId() == wfDasher })
	})
}

// ---- The workflow steps, as the edge drives them; each waits for its visible effect ----

// wfStep is one step of the happy path.
type wfStep struct {
	name string
	run  func(w *wfWorld)
}

var wfSteps = []wfStep{
	{"placed", (*wfWorld).place},
	{"accepted", (*wfWorld).accept},
	{"assigned", (*wfWorld).assign},
	{"ready", (*wfWorld).ready},
	{"picked up", (*wfWorld).pickUp},
	{"delivered", (*wfWorld).deliver},
}

func (w *wfWorld) place() {
	w.t.Helper()
	var view *messages.CustomerView
	w.must("order the cart", func() (err error) {
		view, err = w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
		return err
	})
	w.orderID = view.GetLastOrder().GetOrderId()
	if w.orderID == "" {
		w.t.Fatalf("OrderCart answered no order: %v", view)
	}
	w.acked = append(w.acked, w.orderID)
	w.waitStatus("PENDING_ACCEPTANCE", "REJECTED")
}

func (w *wfWorld) accept() {
	w.t.Helper()
	w.must("accept", func() error {
		_, err := w.order().Accept(&messages.AcceptOrder{CommandId: "r-accept", RestaurantId: wfRestaurant, PrepMinutes: 12})
		return err
	})
	waitFor(w.t, "the dasher to hold the offer", 10*time.Second, func() bool {
		v, err := w.dasher().Get(&messages.GetDasher{})
		return err == nil && slices.ContainsFunc(v.GetOffers(), func(o *messages.PendingOffer) bool { return o.GetOrderId() == w.orderID })
	})
}

func (w *wfWorld) assign() {
	w.t.Helper()
	w.must("accept the offer", func() error {
		_, err := w.dasher().AcceptOffer(&messages.AcceptOffer{CommandId: "d-accept", OrderId: w.orderID})
		return err
	})
	w.waitStatus("DASHER_ASSIGNED")
}

func (w *wfWorld) ready() {
	w.t.Helper()
	w.must("mark ready", func() error {
		_, err := w.order().MarkReady(&messages.MarkOrderReady{CommandId: "r-ready", RestaurantId: wfRestaurant})
		return err
	})
}

func (w *wfWorld) pickUp() {
	w.t.Helper()
	w.must("mark picked up", func() error {
		_, err := w.order().MarkPickedUp(&messages.MarkOrderPickedUp{CommandId: "r-picked", RestaurantId: wfRestaurant})
		return err
	})
}

func (w *wfWorld) deliver() {
	w.t.Helper()
	w.must("mark delivered", func() error {
		_, err := w.order().MarkDelivered(&messages.MarkOrderDelivered{CommandId: "d-delivered", DasherId: wfDasher})
		return err
	})
}

// view reads the order (with retry).
func (w *wfWorld) view() *messages.OrderView {
	w.t.Helper()
	var v *messages.OrderView
	w.must("get the order", func() (err error) {
		v, err = w.order().Get(&messages.GetOrder{})
		return err
	})
	return v
}

// waitStatus waits until the order exists with one of the statuses.
func (w *wfWorld) waitStatus(statuses ...string) *messages.OrderView {
	w.t.Helper()
	var v *messages.OrderView
	waitFor(w.t, fmt.Sprintf("order %s to be %v", w.orderID, statuses), 10*time.Second, func() bool {
		var err error
		v, err = w.order().Get(&messages.GetOrder{})
		return err == nil && slices.Contains(statuses, v.GetStatus())
	})
	return v
}

// waitPayment waits until the order's payment reaches status; the clock moves on meanwhile so that retries of a
// settlement (payment timer) fall due.
func (w *wfWorld) waitPayment(status string) *messages.OrderView {
	w.t.Helper()
	var v *messages.OrderView
	waitFor(w.t, "payment "+status, 10*time.Second, func() bool {
		var err error
		v, err = w.order().Get(&messages.GetOrder{})
		if err == nil && v.GetPayment().GetStatus() == status {
			return true
		}
		w.clock.Advance(10 * time.Millisecond)
		return false
	})
	return v
}

// quiesce waits until every stream's outbox is drained, so that every message sent has been applied.
func (w *wfWorld) quiesce() {
	w.t.Helper()
	streams, err := w.n.journal.Streams(context.Background(), "", "", 0)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, s := range streams {
		waitOutboxDrained(w.t, w.n.journal, s)
	}
}

// down stops the node (kill: closes the journal under the running actors first, so nothing more is written, as if
// the process died).
func (w *wfWorld) down(kill bool) {
	if kill {
		_ = w.n.journal.Close()
		w.n.leave()
	} else {
		w.n.stop()
	}
}

// restart takes the node down (see down) and starts a new one on the same file. The clock moves past
// DeliverTimeout so that the reminders of outboxes left pending fall due.
func (w *wfWorld) restart(kill bool) {
	w.t.Helper()
	w.down(kill)
	w.n = startNode(w.t, w.path, w.opts)
	w.clock.Advance(3 * time.Second)
}

// feed reads the whole feed of (kind, id) and checks its cursors are 1, 2, 3, ... and every entry is of the order.
func (w *wfWorld) feed(kind, id string) []string {
	w.t.Helper()
	items := readFeed(w.t, w.n, kind, id, 0)
	for i, it := range items {
		if it.GetCursor() != uint64(i+1) {
			w.t.Fatalf("feed %s/%s: entry %d has cursor %d", kind, id, i, it.GetCursor())
		}
		if w.orderID != "" && it.GetOrderId() != w.orderID {
			w.t.Fatalf("feed %s/%s: entry %d is of order %q, want %q", kind, id, i, it.GetOrderId(), w.orderID)
		}
		if want := strings.ToLower(strings.ReplaceAll(it.GetType(), "_", "")); !strings.Contains(strings.ToLower(it.GetData().GetTypeUrl()), want) {
			w.t.Fatalf("feed %s/%s: entry %d of type %s carries %s", kind, id, i, it.GetType(), it.GetData().GetTypeUrl())
		}
	}
	return feedTypes(items)
}

// checkFeeds waits for and checks each party's feed, entry by entry.
func (w *wfWorld) checkFeeds(customer, restaurant, dasher []string) {
	w.t.Helper()
	for _, f := range []struct {
		kind, id string
		want     []string
	}{{actors.KindCustomer, wfCustomer, customer}, {actors.KindRestaurant, wfRestaurant, restaurant}, {actors.KindDasher, wfDasher, dasher}} {
		if len(f.want) > 0 {
			waitForFeed(w.t, w.n, f.kind, f.id, 0, len(f.want))
		}
		if got := w.feed(f.kind, f.id); !slices.Equal(got, f.want) {
			w.t.Errorf("feed of %s/%s: %v, want %v", f.kind, f.id, got, f.want)
		}
	}
}

// checkInvariants runs the invariant checker over the whole journal, at rest.
func (w *wfWorld) checkInvariants() {
	w.t.Helper()
	w.quiesce()
	vs, err := actors.CheckInvariants(context.Background(), w.n.journal, actors.InvariantOptions{
		Workflow: w.n.deps.Workflow, Acknowledged: w.acked, Quiescent: true})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, v := range vs {
		w.t.Errorf("invariant violated: %s", v)
	}
}

// auth returns the simulator's ledger entry of the order's authorisation.
func (w *wfWorld) auth() actors.SimAuthorization {
	w.t.Helper()
	var found []actors.SimAuthorization
	for _, a := range w.sim.Authorizations() {
		if a.AuthorizedCents == wfTotal {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		w.t.Fatalf("%d authorisations of the order's total, want 1: %v", len(found), found)
	}
	return found[0]
}

// ---- Scenarios ----

// TestWorkflowHappyPath runs the seven messages end to end.
func TestWorkflowHappyPath(t *testing.T) {
	w := newWorld(t, wfOptions{})
	for _, s := range wfSteps {
		s.run(w)
	}
	v := w.waitPayment("CAPTURED")
	if v.GetStatus() != "DELIVERED" || v.GetDasherId() != wfDasher || v.GetTotalCents() != wfTotal ||
		v.GetPayment().GetCapturedCents() != wfTotal || v.GetKitchenStatus() != "HANDED_OVER" || v.GetDeliveryStatus() != "DELIVERED" {
		t.Fatalf("delivered order: %v", v)
	}
	var timeline []string
	for _, e := range v.GetTimeline() {
		timeline = append(timeline, e.GetType())
	}
	if want := []string{"ORDER_PLACED", "ORDER_ACCEPTED", "DASHER_ASSIGNED", "FOOD_READY", "ORDER_PICKED_UP", "ORDER_DELIVERED"}; !slices.Equal(timeline, want) {
		t.Errorf("timeline %v, want %v", timeline, want)
	}
	if a := w.auth(); a.CapturedCents != wfTotal || a.Voided {
		t.Errorf("ledger: %+v", a)
	}
	w.quiesce()
	w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
	// The dasher's capacity is free again, and the restaurant's open orders are empty.
	d, err := w.dasher().Get(&messages.GetDasher{})
	if err != nil || len(d.GetAssignments()) != 0 {
		t.Errorf("dasher after delivery: %v, %v", d, err)
	}
	open, err := w.n.restaurant(wfRestaurant).ListOrders(&messages.ListRestaurantOrders{})
	if err != nil || len(open.GetOrders()) != 0 {
		t.Errorf("open orders after delivery: %v, %v", open, err)
	}
	w.checkInvariants()
}

// TestWorkflowRestart stops the node after each step of the workflow, cleanly and by a kill, restarts it on the
// same file and finishes the order: every order completes, feeds keep their cursors and hold each entry once,
// the payment is captured once.
func TestWorkflowRestart(t *testing.T) {
	for i, step := range wfSteps {
		for _, kill := range []bool{false, true} {
			mode := "stop"
			if kill {
				mode = "kill"
			}
			t.Run(mode+" after "+step.name, func(t *testing.T) {
				w := newWorld(t, wfOptions{})
				for _, s := range wfSteps[:i+1] {
					s.run(w)
				}
				before := map[string]uint64{}
				for _, f := range [][2]string{{actors.KindCustomer, wfCustomer}, {actors.KindRestaurant, wfRestaurant}, {actors.KindDasher, wfDasher}} {
					before[f[0]] = uint64(len(readFeed(t, w.n, f[0], f[1], 0)))
				}
				w.restart(kill)
				for _, s := range wfSteps[i+1:] {
					s.run(w)
				}
				w.waitPayment("CAPTURED")
				w.quiesce()
				w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
				// A client that comes back with its last cursor gets exactly the entries it missed.
				for kind, id := range map[string]string{actors.KindCustomer: wfCustomer, actors.KindRestaurant: wfRestaurant, actors.KindDasher: wfDasher} {
					all := readFeed(t, w.n, kind, id, 0)
					rest := readFeed(t, w.n, kind, id, before[kind])
					if !slices.Equal(feedTypes(rest), feedTypes(all[before[kind]:])) {
						t.Errorf("feed %s after cursor %d: %v", kind, before[kind], feedTypes(rest))
					}
				}
				if a := w.auth(); a.CapturedCents != wfTotal {
					t.Errorf("ledger: %+v", a)
				}
				w.checkInvariants()
			})
		}
	}
}

// TestWorkflowKillRightAfterOrdering: the node dies right after the customer's OrderCart is answered, typically
// before its PlaceOrder reached the Order (the test does not wait for it); after the restart the customer's outbox
// delivers it (again, or for the first time) and the order completes once.
func TestWorkflowKillRightAfterOrdering(t *testing.T) {
	w := newWorld(t, wfOptions{})
	var view *messages.CustomerView
	w.must("order the cart", func() (err error) {
		view, err = w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
		return err
	})
	w.orderID = view.GetLastOrder().GetOrderId()
	w.acked = append(w.acked, w.orderID)
	w.restart(true)
	w.waitStatus("PENDING_ACCEPTANCE")
	for _, s := range wfSteps[1:] {
		s.run(w)
	}
	w.waitPayment("CAPTURED")
	w.quiesce()
	w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
	if a := w.auth(); a.CapturedCents != wfTotal {
		t.Errorf("ledger: %+v", a)
	}
	w.checkInvariants()
}

// TestWorkflowAcceptTimeout: a restaurant that does not accept in time → the system cancels with a full refund
// (the authorisation is voided) and the customer and restaurant are told; also when the SLA passes while the
// node is down (the timer fires at once after the restart).
func TestWorkflowAcceptTimeout(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("node down %v", down), func(t *testing.T) {
			w := newWorld(t, wfOptions{})
			w.place()
			sla := actors.DefaultAcceptSLA
			if down {
				w.n.stop()
				w.clock.Advance(sla + time.Minute)
				w.n = startNode(t, w.path, w.opts)
			} else {
				// Before the SLA the order's reminder is not due (so no scan wakes it); at the SLA it is.
				stream := "order/" + w.orderID
				acceptBy := w.view().GetAcceptBy().AsTime()
				if !acceptBy.Equal(w.clock.Now().Add(sla)) {
					t.Fatalf("accept_by %v, want %v", acceptBy, w.clock.Now().Add(sla))
				}
				w.quiesce()
				waitFor(t, "the reminder to move to the SLA", 10*time.Second, func() bool {
					return !hasReminder(t, w.n.journal, stream, acceptBy.Add(-time.Second)) && hasReminder(t, w.n.journal, stream, acceptBy)
				})
				w.clock.Advance(sla + time.Second)
			}
			v := w.waitStatus("CANCELLED")
			if v.GetCancelledBy() != messages.CancelledBy_CANCELLED_BY_SYSTEM || v.GetRefundCents() != wfTotal {
				t.Fatalf("cancelled: %v", v)
			}
			w.waitPayment("VOIDED")
			if a := w.auth(); !a.Voided || a.CapturedCents != 0 {
				t.Errorf("ledger: %+v", a)
			}
			// A late acceptance is refused.
			_, err := w.order().Accept(&messages.AcceptOrder{CommandId: "late", RestaurantId: wfRestaurant, PrepMinutes: 5})
			wantCode(t, "late accept", err, messages.ErrorReason_FAILED_PRECONDITION)
			w.quiesce()
			w.checkFeeds([]string{"ORDER_PLACED", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "ORDER_CANCELLED"}, nil)
			w.checkInvariants()
		})
	}
}

// TestWorkflowDispatchTimeout: no dasher for DispatchSLA after acceptance → the system cancels with a full
// refund; the area ends the dispatch. The SLA passes while the node is down: stopped, or killed (the journal
// closed under the running actors, as if the process died), so the timer is found only in the journal.
func TestWorkflowDispatchTimeout(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill %v", kill), func(t *testing.T) {
			w := newWorld(t, wfOptions{noDasher: true})
			w.place()
			w.must("accept", func() error {
				_, err := w.order().Accept(&messages.AcceptOrder{CommandId: "r-accept", RestaurantId: wfRestaurant, PrepMinutes: 12})
				return err
			})
			waitFor(t, "the area to open the dispatch", 10*time.Second, func() bool {
				v, err := w.area().Get(&messages.GetArea{})
				return err == nil && len(v.GetDispatches()) == 1
			})
			if v := w.view(); v.GetDispatchBy() == nil || !v.GetDispatchBy().AsTime().Equal(w.clock.Now().Add(actors.DefaultDispatchSLA)) {
				t.Fatalf("dispatch_by %v", v.GetDispatchBy())
			}
			w.down(kill)
			w.clock.Advance(actors.DefaultDispatchSLA + time.Second)
			w.n = startNode(t, w.path, w.opts)
			// The area learns of the cancellation before anything calls the Order: only its reminder in the
			// journal can wake it (a call would activate it, and an activation fires its overdue timers).
			waitFor(t, "the area to end the dispatch", 10*time.Second, func() bool {
				a, err := w.area().Get(&messages.GetArea{})
				return err == nil && len(a.GetDispatches()) == 0
			})
			v := w.waitStatus("CANCELLED")
			if v.GetCancelledBy() != messages.CancelledBy_CANCELLED_BY_SYSTEM || v.GetRefundCents() != wfTotal || v.GetDispatchBy() != nil {
				t.Fatalf("cancelled: %v", v)
			}
			w.waitPayment("VOIDED")
			w.quiesce()
			w.checkFeeds([]string{"ORDER_PLACED", "ORDER_ACCEPTED", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "ORDER_CANCELLED"}, nil)
			w.checkInvariants()
		})
	}
}

// TestWorkflowCancellations: cancellations through the actors follow the matrix, move the money accordingly and
// reach every party involved so far.
func TestWorkflowCancellations(t *testing.T) {
	share := actors.DefaultCancelRefundShare
	cases := []struct {
		name       string
		steps      int // happy-path steps before the cancellation
		by         messages.CancelledBy
		refund     int64
		payment    string
		customer   []string
		restaurant []string
		dasher     []string
	}{
		{"customer while pending", 1, messages.CancelledBy_CANCELLED_BY_CUSTOMER, wfTotal, "VOIDED",
			[]string{"ORDER_PLACED", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "ORDER_CANCELLED"}, nil},
		{"customer after acceptance", 2, messages.CancelledBy_CANCELLED_BY_CUSTOMER, int64(float64(wfTotal)*share + 0.5), "CAPTURED",
			[]string{"ORDER_PLACED", "ORDER_ACCEPTED", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "ORDER_CANCELLED"},
			[]string{"DELIVERY_OFFERED", "OFFER_WITHDRAWN"}}, // the dasher held only an offer: the area withdraws it
		{"customer with a dasher", 3, messages.CancelledBy_CANCELLED_BY_CUSTOMER, 0, "CAPTURED",
			[]string{"ORDER_PLACED", "ORDER_ACCEPTED", "DASHER_ASSIGNED", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "DASHER_ASSIGNED", "ORDER_CANCELLED"},
			[]string{"DELIVERY_OFFERED", "DASHER_ASSIGNED", "ORDER_CANCELLED"}},
		{"restaurant with a dasher", 4, messages.CancelledBy_CANCELLED_BY_RESTAURANT, wfTotal, "VOIDED",
			[]string{"ORDER_PLACED", "ORDER_ACCEPTED", "DASHER_ASSIGNED", "FOOD_READY", "ORDER_CANCELLED"}, []string{"ORDER_PLACED", "DASHER_ASSIGNED", "ORDER_CANCELLED"},
			[]string{"DELIVERY_OFFERED", "DASHER_ASSIGNED", "FOOD_READY", "ORDER_CANCELLED"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, wfOptions{})
			for _, s := range wfSteps[:c.steps] {
				s.run(w)
			}
			requester := wfCustomer
			if c.by == messages.CancelledBy_CANCELLED_BY_RESTAURANT {
				requester = wfRestaurant
			}
			var v *messages.OrderView
			w.must("cancel", func() (err error) {
				v, err = w.order().Cancel(&messages.CancelOrder{CommandId: "cancel", By: c.by, RequesterId: requester, Reason: "changed plans"})
				return err
			})
			if v.GetStatus() != "CANCELLED" || v.GetRefundCents() != c.refund {
				t.Fatalf("cancelled: %v", v)
			}
			v = w.waitPayment(c.payment)
			if got := v.GetPayment().GetCapturedCents(); got != wfTotal-c.refund {
				t.Errorf("captured %d, want %d", got, wfTotal-c.refund)
			}
			if a := w.auth(); a.CapturedCents != wfTotal-c.refund || a.Voided != (c.refund == wfTotal) {
				t.Errorf("ledger: %+v", a)
			}
			_, err := w.order().Cancel(&messages.CancelOrder{CommandId: "cancel-again", By: c.by, RequesterId: requester})
			wantCode(t, "second cancel", err, messages.ErrorReason_ORDER_NOT_CANCELLABLE)
			w.quiesce()
			w.checkFeeds(c.customer, c.restaurant, c.dasher)
			if d, err := w.dasher().Get(&messages.GetDasher{}); err != nil || len(d.GetAssignments())+len(d.GetOffers()) != 0 {
				t.Errorf("dasher after the cancellation: %v, %v", d, err)
			}
			w.checkInvariants()
		})
	}

	t.Run("after pickup", func(t *testing.T) {
		w := newWorld(t, wfOptions{})
		for _, s := range wfSteps[:5] {
			s.run(w)
		}
		_, err := w.order().Cancel(&messages.CancelOrder{CommandId: "cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: wfCustomer})
		wantCode(t, "cancel after pickup", err, messages.ErrorReason_ORDER_NOT_CANCELLABLE)
		w.deliver()
		w.waitPayment("CAPTURED")
		w.quiesce()
		w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
		w.checkInvariants()
	})
}

// TestWorkflowRejection: the restaurant rejects → full refund, customer and restaurant told.
func TestWorkflowRejection(t *testing.T) {
	w := newWorld(t, wfOptions{})
	w.place()
	w.must("reject", func() error {
		_, err := w.order().Reject(&messages.RejectOrder{CommandId: "r-reject", RestaurantId: wfRestaurant, Reason: "out of noodles"})
		return err
	})
	v := w.waitPayment("VOIDED")
	if v.GetStatus() != "REJECTED" || v.GetRefundCents() != wfTotal || v.GetReason() != "out of noodles" {
		t.Fatalf("rejected: %v", v)
	}
	w.quiesce()
	w.checkFeeds([]string{"ORDER_PLACED", "ORDER_REJECTED"}, []string{"ORDER_PLACED", "ORDER_REJECTED"}, nil)
	w.checkInvariants()
}

// TestWorkflowPayments: the simulator's test cards through the whole workflow.
func TestWorkflowPayments(t *testing.T) {
	t.Run("declined", func(t *testing.T) {
		w := newWorld(t, wfOptions{card: actors.TestCardAuthorizeDeclined})
		w.place()
		v := w.view()
		if v.GetStatus() != "REJECTED" || v.GetReason() != actors.ReasonPaymentDeclined || v.GetPayment().GetStatus() != "DECLINED" {
			t.Fatalf("declined order: %v", v)
		}
		if n := len(w.sim.Authorizations()); n != 0 {
			t.Errorf("%d authorisations of a declined card", n)
		}
		w.quiesce()
		w.checkFeeds([]string{"ORDER_REJECTED"}, nil, nil)
		w.checkInvariants()
		// Through the Order's own rpc, a declined card answers PAYMENT_DECLINED, also to a retry.
		for range 2 {
			_, err := messages.GetOrderGrainClient(w.n.cluster, "o_direct").Place(&messages.PlaceOrder{CommandId: "p1",
				CustomerId: wfCustomer, RestaurantId: wfRestaurant, Pickup: w.pickup, Dropoff: w.dropoff,
				PaymentToken: w.customerToken(), Lines: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 1, PriceCents: 1250}}})
			wantCode(t, "place with a declined card", err, messages.ErrorReason_PAYMENT_DECLINED)
		}
	})
	t.Run("transient authorisation failures are retried", func(t *testing.T) {
		gw := &authGateway{}
		w := newWorld(t, wfOptions{card: actors.TestCardAuthorizeTransient, gateway: gw.wrap})
		for _, s := range wfSteps {
			s.run(w)
		}
		w.waitPayment("CAPTURED")
		w.quiesce()
		w.checkFeeds(wfCustomerFeed, wfRestaurantFeed, wfDasherFeed)
		w.checkInvariants()
		// One gateway call per delivery of PlaceOrder: the sim fails the first DefaultSimTransientFailures, each
		// answered UNAVAILABLE and retried by the customer's outbox; the next one authorises.
		if got, want := gw.authorizeCalls(), actors.DefaultSimTransientFailures+1; got != want {
			t.Errorf("%d Authorize calls, want %d", got, want)
		}
		if got := w.n.logs.count("payment authorisation unavailable", w.orderID); got != actors.DefaultSimTransientFailures {
			t.Errorf("%d unavailable authorisations logged, want %d", got, actors.DefaultSimTransientFailures)
		}
		if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.OrderCreated"); got != 1 {
			t.Errorf("%d OrderCreated events, want 1", got)
		}
	})
	t.Run("processor down: the order waits in the customer's outbox", func(t *testing.T) {
		gw := &authGateway{}
		w := newWorld(t, wfOptions{card: actors.TestCardProcessorDown, gateway: gw.wrap})
		_, err := w.n.customer(wfCustomer).OrderCart(&messages.OrderCart{CommandId: "c-order-1"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "failed deliveries of PlaceOrder", 10*time.Second, func() bool {
			return w.n.logs.count("payment authorisation unavailable", "*") >= 2
		})
		if streams, _ := w.n.journal.Streams(context.Background(), "order/", "", 0); len(streams) != 0 {
			t.Fatalf("an order was written while the gateway is down: %v", streams)
		}
		if got, logged := gw.authorizeCalls(), w.n.logs.count("payment authorisation unavailable", "*"); got < logged {
			t.Errorf("%d Authorize calls for %d failed deliveries", got, logged)
		}
	})
	t.Run("transient settlement failures are retried", func(t *testing.T) {
		w := newWorld(t, wfOptions{card: actors.TestCardSettlementTransient})
		for _, s := range wfSteps {
			s.run(w)
		}
		v := w.waitPayment("CAPTURED")
		if a := w.auth(); a.CapturedCents != wfTotal {
			t.Errorf("ledger: %+v (view %v)", a, v.GetPayment())
		}
		if got := countType(t, w.n.journal, "order/"+w.orderID, "platter.PaymentAttemptFailed"); got != actors.DefaultSimTransientFailures {
			t.Errorf("%d failed attempts recorded, want %d", got, actors.DefaultSimTransientFailures)
		}
		w.quiesce()
		w.checkInvariants()
	})
}

// customerToken reads the customer's payment token from its journal (the view never shows it).
func (w *wfWorld) customerToken() string {
	w.t.Helper()
	events, err := w.n.journal.Events(context.Background(), "customer/"+wfCustomer, 0, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == "platter.PaymentMethodSet" {
			var set messages.PaymentMethodSet
			if err := proto.Unmarshal(e.Data, &set); err != nil {
				w.t.Fatal(err)
			}
			return set.GetMethod().GetToken()
		}
	}
	w.t.Fatal("no payment method")
	return ""
}

// TestWorkflowDuplicateActivation: two activations of one order, both loaded, write concurrently (the restaurant
// accepts through one while the customer cancels through the other): exactly one write wins, the loser answers
// UNAVAILABLE and writes nothing, and a fresh activation sees the winner's state. The activations are spawned
// from the Order kind's own props, as disthash would spawn a duplicate during a membership change (trap 1).
func TestWorkflowDuplicateActivation(t *testing.T) {
	w := newWorld(t, wfOptions{noDasher: true})
	var props *actor.Props
	for _, k := range actors.Kinds(w.n.deps) {
		if k.Kind == actors.KindOrder {
			props = k.Props
		}
	}
	root := w.n.cluster.ActorSystem.Root
	methods := messages.File_order_proto.Services().ByName("Order").Methods()
	call := func(pid *actor.PID, method string, req proto.Message) error {
		t.Helper()
		data, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := root.RequestFuture(pid, &pcluster.GrainRequest{
			MethodIndex: int32(methods.ByName(protoreflect.Name(method)).Index()), MessageData: data}, 5*time.Second).Result()
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if e, ok := resp.(*pcluster.GrainErrorResponse); ok {
			return e
		}
		return nil
	}
	// The kind's props carry the cluster's middleware, which initialises the grain (ClusterInit) on Started with
	// the identity the props are given, as the cluster's own activations are.
	spawn := func(id string) *actor.PID {
		return root.Spawn(pcluster.WithClusterIdentity(props, pcluster.NewClusterIdentity(id, actors.KindOrder)))
	}
	token := w.customerToken()
	wins := map[string]int{}
	for round := range 8 {
		id := fmt.Sprintf("o_dup%d", round)
		stream := "order/" + id
		a := spawn(id)
		if err := call(a, "Place", &messages.PlaceOrder{CommandId: "place", CustomerId: wfCustomer, RestaurantId: wfRestaurant,
			Pickup: w.pickup, Dropoff: w.dropoff, PaymentToken: token,
			Lines: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 1, PriceCents: 1250}}}); err != nil {
			t.Fatalf("place: %v", err)
		}
		w.acked = append(w.acked, id)
		waitOutboxDrained(t, w.n.journal, stream)
		b := spawn(id)
		// b loads its state when it handles Started, asynchronously: a read answered by b proves it loaded the
		// placed order before the race (else it could load a's acceptance and rightly cancel after it).
		if err := call(b, "Status", &messages.GetOrderStatus{}); err != nil {
			t.Fatalf("round %d: status from the second activation: %v", round, err)
		}
		var (
			wg         sync.WaitGroup
			errA, errB error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			errA = call(a, "Accept", &messages.AcceptOrder{CommandId: "accept", RestaurantId: wfRestaurant, PrepMinutes: 10})
		}()
		go func() {
			defer wg.Done()
			errB = call(b, "Cancel", &messages.CancelOrder{CommandId: "cancel", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: wfCustomer})
		}()
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: accept %v, cancel %v: want exactly one to win", round, errA, errB)
		}
		winner, loser, lost, want := a, b, errB, "ACCEPTED"
		if errA != nil {
			winner, loser, lost, want = b, a, errA, "CANCELLED"
		}
		wins[want]++
		wantCode(t, "the losing write", lost, messages.ErrorReason_UNAVAILABLE)
		accepted := countType(t, w.n.journal, stream, "platter.OrderAccepted")
		cancelled := countType(t, w.n.journal, stream, "platter.OrderCancelled")
		if accepted+cancelled != 1 || (want == "ACCEPTED") != (accepted == 1) {
			t.Fatalf("round %d: stream has %d acceptances and %d cancellations, the winner was %s", round, accepted, cancelled, want)
		}
		// Let the winner deliver its messages (and settle the payment of a cancellation), then stop both.
		waitOutboxDrained(t, w.n.journal, stream)
		if want == "CANCELLED" {
			waitFor(t, "the void", 10*time.Second, func() bool { return countType(t, w.n.journal, stream, "platter.PaymentSettled") == 1 })
		}
		root.Poison(winner)
		root.Poison(loser)
		w.orderID = id
		if v := w.waitStatus(want); v.GetStatus() != want {
			t.Fatalf("round %d: fresh activation sees %s, want %s", round, v.GetStatus(), want)
		}
	}
	t.Logf("winners: %v", wins)
	w.orderID = ""
	w.quiesce()
	w.checkInvariants()
}
