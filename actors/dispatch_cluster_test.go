package actors_test

// Component tests of dispatch: the Order, Area, Dasher and Restaurant actors in a one-node cluster over a temp-dir
// bbolt journal, driven through their grain clients. The clock is the test's: offers expire when the test moves
// it past their TTL and the node's reminder scanner wakes the area.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	h3 "github.com/uber/h3-go/v4"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// dispatchFixture: a node, a restaurant r_1 at the centre of its area, and a payment token.
type dispatchFixture struct {
	t      *testing.T
	n      *node
	clock  *testClock
	token  string
	cell   string // the restaurant's area
	pickup *messages.Position
	cmd    int
}

func newDispatchFixture(t *testing.T, workflow func(*actors.WorkflowConfig)) *dispatchFixture {
	t.Helper()
	clock := newTestClock()
	sim := actors.NewPaymentSim(actors.PaymentSimConfig{Now: clock.Now})
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{clock: clock, payments: sim, workflow: workflow})
	pm, err := sim.Tokenize(context.Background(), actors.Card{Number: actors.TestCardVisa, ExpMonth: 12, ExpYear: 2030, CVC: "123"})
	if err != nil {
		t.Fatal(err)
	}
	cell := actors.AreaOf(&messages.Position{Lat: 37.7749, Lng: -122.4194})
	f := &dispatchFixture{t: t, n: n, clock: clock, token: pm.Token, cell: cell, pickup: dispatchCellCentre(cell)}
	wf := testWorkflow()
	if workflow != nil {
		workflow(&wf)
	}
	// Last: the invariants over the whole journal (cleanups run in reverse order, so the node is still up).
	t.Cleanup(func() {
		violations, err := actors.CheckInvariants(context.Background(), n.journal, actors.InvariantOptions{Workflow: wf})
		if err != nil {
			t.Errorf("check invariants: %v", err)
		}
		for _, v := range violations {
			t.Errorf("invariant violated: %s", v)
		}
	})
	if _, err := n.restaurant("r_1").Create(&messages.CreateRestaurant{CommandId: f.id(), Name: "Siam Kitchen", Cuisine: "Thai", Position: f.pickup}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *dispatchFixture) id() string {
	f.cmd++
	return fmt.Sprintf("cmd-%d", f.cmd)
}

func dispatchCellCentre(cell string) *messages.Position {
	ll := h3.CellToLatLng(h3.Cell(h3.IndexFromString(cell)))
	return &messages.Position{Lat: ll.Lat, Lng: ll.Lng}
}

// inCell is a point north metres north of the restaurant (the centre of its area), checked to be in the area.
func (f *dispatchFixture) inCell(north float64) *messages.Position {
	f.t.Helper()
	p := &messages.Position{Lat: f.pickup.GetLat() + north/111_320, Lng: f.pickup.GetLng()}
	if actors.AreaOf(p) != f.cell {
		f.t.Fatalf("%v m north of the centre is outside the area", north)
	}
	return p
}

// inNeighbour is the centre of the i-th neighbour area (sorted by cell id).
func (f *dispatchFixture) inNeighbour(i int) *messages.Position {
	var around []string
	for _, c := range h3.Cell(h3.IndexFromString(f.cell)).GridDisk(1) {
		if c.String() != f.cell {
			around = append(around, c.String())
		}
	}
	sort.Strings(around)
	return dispatchCellCentre(around[i])
}

func (f *dispatchFixture) dasherClient(id string) *messages.DasherGrainClient {
	return messages.GetDasherGrainClient(f.n.cluster, id)
}

func (f *dispatchFixture) area() *messages.AreaGrainClient {
	return messages.GetAreaGrainClient(f.n.cluster, f.cell)
}

func (f *dispatchFixture) order(id string) *messages.OrderGrainClient {
	return messages.GetOrderGrainClient(f.n.cluster, id)
}

// dasher creates a dasher with capacity 1 and sets it online at p.
func (f *dispatchFixture) dasher(id string, p *messages.Position) {
	f.t.Helper()
	d := f.dasherClient(id)
	if _, err := d.Create(&messages.CreateDasher{CommandId: f.id(), Name: "Dasher " + id, Vehicle: "bike"}); err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
	if _, err := d.SetStatus(&messages.SetDasherStatus{CommandId: f.id(), Online: true, Position: p}); err != nil {
		f.t.Fatalf("online %s: %v", id, err)
	}
}

// waitAreaKnows waits until the restaurant's area knows the dashers ids (registration travels through the outbox).
func (f *dispatchFixture) waitAreaKnows(ids ...string) {
	f.t.Helper()
	waitFor(f.t, fmt.Sprintf("area to know %v", ids), 10*time.Second, func() bool {
		v, err := f.area().Get(&messages.GetArea{})
		if err != nil {
			return false
		}
		known := map[string]bool{}
		for _, d := range v.GetDashers() {
			known[d.GetDasherId()] = true
		}
		for _, id := range ids {
			if !known[id] {
				return false
			}
		}
		return true
	})
}

// accepted places order id at r_1 and has the restaurant accept it: dispatch starts.
func (f *dispatchFixture) accepted(id string) {
	f.t.Helper()
	o := f.order(id)
	if _, err := o.Place(&messages.PlaceOrder{
		CommandId: f.id(), CustomerId: "c_1", RestaurantId: "r_1",
		Lines:   []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 1, PriceCents: 1250}},
		Pickup:  f.pickup,
		Dropoff: &messages.Position{Lat: f.pickup.GetLat() + 0.01, Lng: f.pickup.GetLng()}, PaymentToken: f.token,
	}); err != nil {
		f.t.Fatalf("place %s: %v", id, err)
	}
	if _, err := o.Accept(&messages.AcceptOrder{CommandId: f.id(), RestaurantId: "r_1", PrepMinutes: 15}); err != nil {
		f.t.Fatalf("accept %s: %v", id, err)
	}
}

// feed waits until the dasher's feed holds exactly the entry types want (and no more shortly after) and returns it.
func (f *dispatchFixture) feed(dasher string, want ...string) []*messages.FeedItem {
	f.t.Helper()
	var items []*messages.FeedItem
	waitFor(f.t, fmt.Sprintf("feed of %s to be %v", dasher, want), 10*time.Second, func() bool {
		items = readFeed(f.t, f.n, actors.KindDasher, dasher, 0)
		return len(items) >= len(want)
	})
	if got := feedTypes(items); !slices.Equal(got, want) {
		f.t.Fatalf("feed of %s: %v, want %v", dasher, got, want)
	}
	return items
}

// offeredTo waits until the dashers ids hold an offer of order, and checks that the others hold none.
func (f *dispatchFixture) offeredTo(order string, ids []string, others ...string) {
	f.t.Helper()
	holds := func(id string) bool {
		v, err := f.dasherClient(id).Get(&messages.GetDasher{})
		if err != nil {
			f.t.Fatalf("get %s: %v", id, err)
		}
		for _, o := range v.GetOffers() {
			if o.GetOrderId() == order {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allHold(ids, holds) {
		if time.Now().After(deadline) {
			v, err := f.area().Get(&messages.GetArea{})
			f.t.Fatalf("timed out waiting for offers of %s to %v; area: %v (err %v)", order, ids, v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range others {
		if holds(id) {
			f.t.Errorf("%s holds an offer of %s", id, order)
		}
	}
}

func allHold(ids []string, holds func(string) bool) bool {
	for _, id := range ids {
		if !holds(id) {
			return false
		}
	}
	return true
}

// expire moves the clock past the offer TTL; the scanner wakes the area, which expires the offers.
func (f *dispatchFixture) expire() {
	f.clock.Advance(actors.DefaultOfferTTL + time.Second)
}

func offerOf(t *testing.T, item *messages.FeedItem) *messages.DeliveryOffered {
	t.Helper()
	var off messages.DeliveryOffered
	if err := item.GetData().UnmarshalTo(&off); err != nil {
		t.Fatalf("feed entry %s: %v", item.GetType(), err)
	}
	return &off
}

func TestDispatchWavesExpiryAndWidening(t *testing.T) {
	f := newDispatchFixture(t, nil) // the default waves: the opening one as wide as the others
	f.dasher("d1", f.inCell(10))
	f.dasher("d2", f.inCell(100))
	f.dasher("d3", f.inCell(150))
	f.dasher("d4", f.inCell(200))
	f.dasher("n1", f.inNeighbour(0))
	f.dasher("n2", f.inNeighbour(3))
	f.waitAreaKnows("d1", "d2", "d3", "d4", "n1", "n2")

	f.accepted("o_1")
	// Wave 1: the three nearest in the cell.
	f.offeredTo("o_1", []string{"d1", "d2", "d3"}, "d4", "n1", "n2")
	for _, d := range []string{"d1", "d2", "d3"} {
		items := f.feed(d, "DELIVERY_OFFERED")
		if off := offerOf(t, items[0]); off.GetWave() != 1 || off.GetArea() != f.cell || off.GetOrderId() != "o_1" {
			t.Errorf("%s offer %v", d, off)
		}
	}

	// The TTL passes: wave 1 expires (each told), wave 2 widens to the neighbours.
	f.expire()
	f.offeredTo("o_1", []string{"d4", "n1", "n2"}, "d1", "d2", "d3")
	for _, d := range []string{"d1", "d2", "d3"} {
		f.feed(d, "DELIVERY_OFFERED", "OFFER_EXPIRED")
	}
	for _, d := range []string{"n1", "n2"} {
		if off := offerOf(t, f.feed(d, "DELIVERY_OFFERED")[0]); off.GetWave() != 2 {
			t.Errorf("%s offer in wave %d, want 2", d, off.GetWave())
		}
	}

	// n1 takes it: the other open offers are withdrawn, the order has its dasher.
	if _, err := f.dasherClient("n1").AcceptOffer(&messages.AcceptOffer{CommandId: f.id(), OrderId: "o_1"}); err != nil {
		t.Fatalf("n1 accepts: %v", err)
	}
	for _, d := range []string{"d4", "n2"} {
		f.feed(d, "DELIVERY_OFFERED", "OFFER_WITHDRAWN")
	}
	f.feed("n1", "DELIVERY_OFFERED", "DASHER_ASSIGNED")
	if v, err := f.order("o_1").Get(&messages.GetOrder{}); err != nil || v.GetDasherId() != "n1" {
		t.Fatalf("order: %v %v", v, err)
	}
	waitFor(t, "the area to end the dispatch", 10*time.Second, func() bool {
		v, err := f.area().Get(&messages.GetArea{})
		return err == nil && len(v.GetDispatches()) == 0
	})
	// n1 is full now: its areas hear free capacity 0.
	waitFor(t, "n1's free capacity 0 in the area", 10*time.Second, func() bool {
		v, _ := f.area().Get(&messages.GetArea{})
		for _, d := range v.GetDashers() {
			if d.GetDasherId() == "n1" {
				return d.GetFreeCapacity() == 0
			}
		}
		return false
	})
}

func TestDispatchDeclineMovesToTheNextDasher(t *testing.T) {
	f := newDispatchFixture(t, func(w *actors.WorkflowConfig) { w.WaveSize = 2 })
	f.dasher("d1", f.inCell(10))
	f.dasher("d2", f.inCell(100))
	f.dasher("d3", f.inCell(150))
	f.waitAreaKnows("d1", "d2", "d3")
	f.accepted("o_1")
	f.offeredTo("o_1", []string{"d1", "d2"}, "d3")

	if _, err := f.dasherClient("d1").DeclineOffer(&messages.DeclineOffer{CommandId: f.id(), OrderId: "o_1", Reason: "too far"}); err != nil {
		t.Fatalf("decline: %v", err)
	}
	f.offeredTo("o_1", []string{"d2", "d3"}, "d1")
	// Accepting a declined offer is refused.
	_, err := f.dasherClient("d1").AcceptOffer(&messages.AcceptOffer{CommandId: f.id(), OrderId: "o_1"})
	wantCode(t, "accept after decline", err, messages.ErrorReason_FAILED_PRECONDITION)
	// Everyone declines: nobody is offered the order again, and it waits (no dasher holds an offer).
	for _, d := range []string{"d2", "d3"} {
		if _, err := f.dasherClient(d).DeclineOffer(&messages.DeclineOffer{CommandId: f.id(), OrderId: "o_1"}); err != nil {
			t.Fatalf("decline %s: %v", d, err)
		}
	}
	waitFor(t, "the dispatch to wait with no open offer", 10*time.Second, func() bool {
		v, err := f.area().Get(&messages.GetArea{})
		return err == nil && len(v.GetDispatches()) == 1 && len(v.GetDispatches()[0].GetOpen()) == 0
	})
	// A new dasher coming online gets it at once.
	f.dasher("d5", f.inCell(50))
	f.offeredTo("o_1", []string{"d5"}, "d1", "d2", "d3")
}

func TestDispatchAutoOfflineAfterThreeExpiries(t *testing.T) {
	f := newDispatchFixture(t, nil)
	f.dasher("d1", f.inCell(10))
	f.waitAreaKnows("d1")
	f.accepted("o_1")
	// The only dasher is offered the order wave after wave and lets each offer expire.
	f.offeredTo("o_1", []string{"d1"})
	f.expire()
	f.feed("d1", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DELIVERY_OFFERED")
	f.expire()
	f.feed("d1", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DELIVERY_OFFERED")
	f.expire()
	f.feed("d1", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DELIVERY_OFFERED", "OFFER_EXPIRED", "DASHER_OFFLINE")

	v, err := f.dasherClient("d1").Get(&messages.GetDasher{})
	if err != nil || v.GetOnline() || v.GetConsecutiveExpiries() != 3 {
		t.Fatalf("dasher after 3 expiries: %v %v", v, err)
	}
	waitFor(t, "the area to forget d1", 10*time.Second, func() bool {
		v, err := f.area().Get(&messages.GetArea{})
		return err == nil && len(v.GetDashers()) == 0
	})
	// Online again: a new count, and the waiting order is offered again.
	if _, err := f.dasherClient("d1").SetStatus(&messages.SetDasherStatus{CommandId: f.id(), Online: true, Position: f.inCell(10)}); err != nil {
		t.Fatal(err)
	}
	f.offeredTo("o_1", []string{"d1"})
	if _, err := f.dasherClient("d1").AcceptOffer(&messages.AcceptOffer{CommandId: f.id(), OrderId: "o_1"}); err != nil {
		t.Fatalf("accept after coming back: %v", err)
	}
}

func TestDispatchAutoAssign(t *testing.T) {
	f := newDispatchFixture(t, nil)
	if v, err := f.area().SetAutoAssign(&messages.SetAutoAssign{CommandId: f.id(), Enabled: true}); err != nil || !v.GetAutoAssign() {
		t.Fatalf("auto-assign: %v %v", v, err)
	}
	f.dasher("d1", f.inCell(10))
	f.dasher("d2", f.inCell(100))
	f.waitAreaKnows("d1", "d2")
	f.accepted("o_1")

	// The area assigns the nearest dasher directly; the dasher is told.
	waitFor(t, "the order to have a dasher", 10*time.Second, func() bool {
		v, err := f.order("o_1").Get(&messages.GetOrder{})
		return err == nil && v.GetDasherId() != ""
	})
	if v, _ := f.order("o_1").Get(&messages.GetOrder{}); v.GetDasherId() != "d1" {
		t.Fatalf("assigned %q, want d1", v.GetDasherId())
	}
	items := f.feed("d1", "DELIVERY_OFFERED", "DASHER_ASSIGNED")
	if !offerOf(t, items[0]).GetAutoAssigned() {
		t.Error("the offer is not marked auto-assigned")
	}
	if v, _ := f.dasherClient("d1").Get(&messages.GetDasher{}); !slices.Equal(v.GetAssignments(), []string{"o_1"}) {
		t.Fatalf("d1 assignments %v", v.GetAssignments())
	}
	if items := readFeed(t, f.n, actors.KindDasher, "d2", 0); len(items) != 0 {
		t.Fatalf("d2 was told %v", feedTypes(items))
	}

	// d1 declines the assignment: the order releases it and the area assigns the next dasher.
	if _, err := f.dasherClient("d1").DeclineOffer(&messages.DeclineOffer{CommandId: f.id(), OrderId: "o_1", Reason: "flat tyre"}); err != nil {
		t.Fatalf("decline the assignment: %v", err)
	}
	waitFor(t, "d2 to be assigned", 10*time.Second, func() bool {
		v, err := f.order("o_1").Get(&messages.GetOrder{})
		return err == nil && v.GetDasherId() == "d2"
	})
	f.feed("d2", "DELIVERY_OFFERED", "DASHER_ASSIGNED")
	if v, _ := f.dasherClient("d1").Get(&messages.GetDasher{}); len(v.GetAssignments()) != 0 {
		t.Fatalf("d1 still assigned %v", v.GetAssignments())
	}
}

func TestDispatchTwentyDashersRaceForOneOffer(t *testing.T) {
	const racers = 20
	f := newDispatchFixture(t, func(w *actors.WorkflowConfig) { w.WaveSize = racers })
	ids := make([]string, racers)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%02d", i)
		f.dasher(ids[i], f.inCell(float64(10*i)))
	}
	f.waitAreaKnows(ids...)
	f.accepted("o_1")
	f.offeredTo("o_1", ids)

	type result struct {
		id  string
		err error
	}
	results := make(chan result, racers)
	var start, done sync.WaitGroup
	start.Add(1)
	for _, id := range ids {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			_, err := f.dasherClient(id).AcceptOffer(&messages.AcceptOffer{CommandId: "race-" + id, OrderId: "o_1"})
			results <- result{id, err}
		}()
	}
	start.Done()
	done.Wait()
	close(results)

	var winners, taken []string
	for r := range results {
		switch {
		case r.err == nil:
			winners = append(winners, r.id)
		case actors.ErrorCode(r.err) == messages.ErrorReason_OFFER_TAKEN.String():
			taken = append(taken, r.id)
		default:
			t.Errorf("%s: %v", r.id, r.err)
		}
	}
	if len(winners) != 1 || len(taken) != racers-1 {
		t.Fatalf("%d assigned %v, %d told OFFER_TAKEN; want 1 and %d", len(winners), winners, len(taken), racers-1)
	}
	winner := winners[0]
	if v, err := f.order("o_1").Get(&messages.GetOrder{}); err != nil || v.GetDasherId() != winner {
		t.Fatalf("order dasher %q (err %v), want %s", v.GetDasherId(), err, winner)
	}
	// Capacity holds everywhere: the winner carries the order, nobody else does or holds the offer.
	for _, id := range ids {
		v, err := f.dasherClient(id).Get(&messages.GetDasher{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string(nil)
		if id == winner {
			want = []string{"o_1"}
		}
		if !slices.Equal(v.GetAssignments(), want) || len(v.GetOffers()) != 0 {
			t.Errorf("%s: assignments %v offers %v", id, v.GetAssignments(), v.GetOffers())
		}
	}
	// A retried accept of a loser gets the same answer; the winner's retry is answered OK.
	_, err := f.dasherClient(taken[0]).AcceptOffer(&messages.AcceptOffer{CommandId: "race-" + taken[0], OrderId: "o_1"})
	wantCode(t, "retried losing accept", err, messages.ErrorReason_OFFER_TAKEN)
	if _, err := f.dasherClient(winner).AcceptOffer(&messages.AcceptOffer{CommandId: "race-" + winner, OrderId: "o_1"}); err != nil {
		t.Errorf("retried winning accept: %v", err)
	}
	waitFor(t, "the area to end the dispatch", 10*time.Second, func() bool {
		v, err := f.area().Get(&messages.GetArea{})
		return err == nil && len(v.GetDispatches()) == 0
	})
}

func TestSearchThroughTheArea(t *testing.T) {
	f := newDispatchFixture(t, nil)
	if _, err := f.n.restaurant("r_1").UpdateMenu(&messages.UpdateMenu{CommandId: f.id(), Items: []*messages.MenuItem{
		{Id: "m1", Name: "Pad thai", PriceCents: 1250, Tags: []string{"noodles", "spicy"}},
		{Id: "m2", Name: "Mango sticky rice", PriceCents: 700, Tags: []string{"dessert"}},
	}}); err != nil {
		t.Fatal(err)
	}
	// A customer in a neighbouring area finds the restaurant through the customer's own area.
	at := f.inNeighbour(2)
	customerArea := messages.GetAreaGrainClient(f.n.cluster, actors.AreaOf(at))
	var res *messages.SearchResults
	waitFor(t, "the listing to reach the customer's area", 10*time.Second, func() bool {
		var err error
		res, err = customerArea.Search(&messages.SearchRestaurants{Terms: []string{"pad thai", "spicy"}, Position: at})
		return err == nil && len(res.GetResults()) == 1 && len(res.GetResults()[0].GetItems()) == 1
	})
	hit := res.GetResults()[0]
	if hit.GetRestaurantId() != "r_1" || hit.GetName() != "Siam Kitchen" || hit.GetItems()[0].GetMenuItemId() != "m1" || hit.GetDistanceM() < 100 {
		t.Fatalf("hit %v", hit)
	}
	// A position outside the area asked is refused; so is an identity that is not an area.
	_, err := customerArea.Search(&messages.SearchRestaurants{Terms: []string{"thai"}, Position: f.pickup})
	wantCode(t, "search from another area", err, messages.ErrorReason_INVALID_ARGUMENT)
	_, err = messages.GetAreaGrainClient(f.n.cluster, "not-a-cell").Get(&messages.GetArea{})
	wantCode(t, "not an area", err, messages.ErrorReason_NOT_FOUND)
	if v, err := f.area().Get(&messages.GetArea{}); err != nil || v.GetRestaurants() != 1 {
		t.Fatalf("restaurant's area: %v %v", v, err)
	}
}
