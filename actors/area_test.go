package actors

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// dispatchConfig is the default workflow configuration (the opening wave as wide as the others: WaveSize, 3).
func dispatchConfig() WorkflowConfig {
	return WorkflowConfig{}.withDefaults()
}

// sent is one outbox message a decision emitted.
type sent struct {
	kind, to string
	payload  proto.Message
}

func (s sent) String() string {
	return fmt.Sprintf("%s %s/%s", s.payload.ProtoReflect().Descriptor().Name(), s.kind, s.to)
}

// outputOf splits a decision's output into kind events, sends, timer changes and feed entries.
type output struct {
	events []proto.Message
	sends  []sent
	timers []proto.Message // TimerSet, TimerCleared
	feed   []*messages.FeedItem
}

func splitOutput(t *testing.T, out []proto.Message) output {
	t.Helper()
	var o output
	for _, m := range out {
		switch m := m.(type) {
		case *messages.OutboxAdded:
			p, err := m.GetPayload().UnmarshalNew()
			if err != nil {
				t.Fatalf("outbox payload: %v", err)
			}
			o.sends = append(o.sends, sent{m.GetToKind(), m.GetToIdentity(), p})
		case *messages.TimerSet, *messages.TimerCleared:
			o.timers = append(o.timers, m)
		case *messages.FeedItem:
			o.feed = append(o.feed, m)
		default:
			o.events = append(o.events, m)
		}
	}
	return o
}

// sendsOf returns the payloads of type T sent, by receiver identity.
func sendsOf[T proto.Message](o output) map[string]T {
	got := map[string]T{}
	for _, s := range o.sends {
		if p, ok := s.payload.(T); ok {
			got[s.to] = p
		}
	}
	return got
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// areaRun drives an Area's decisions in memory: it applies their kind events (as the entity would) and keeps the
// offers timer.
type areaRun struct {
	t     *testing.T
	self  string
	cfg   WorkflowConfig
	now   time.Time
	state *messages.AreaState
	index *areaIndex // kept in step with state as the Area activation does (see take)
	timer *time.Time
}

func newAreaRun(t *testing.T) *areaRun {
	s := &messages.AreaState{}
	return &areaRun{t: t, self: AreaOf(sfCentre), cfg: dispatchConfig(), now: testNow, state: s, index: newAreaIndex(s)}
}

func (r *areaRun) take(out []proto.Message, err error) output {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("decision: %v", err)
	}
	o := splitOutput(r.t, out)
	for _, ev := range o.events {
		if err := applyArea(r.state, ev); err != nil {
			r.t.Fatalf("apply: %v", err)
		}
		r.index.applied(r.state, ev)
	}
	checkAreaIndex(r.t, r.index, r.state)
	for _, tm := range o.timers {
		switch tm := tm.(type) {
		case *messages.TimerSet:
			if tm.GetName() != areaOffersTimer {
				r.t.Fatalf("timer %q", tm.GetName())
			}
			due := tm.GetDue().AsTime()
			r.timer = &due
		case *messages.TimerCleared:
			r.timer = nil
		}
	}
	return o
}

// checkAreaIndex fails the test when x, kept in step event by event, differs from the index built from s.
func checkAreaIndex(t *testing.T, x *areaIndex, s *messages.AreaState) {
	t.Helper()
	want := newAreaIndex(s)
	same := maps.EqualFunc(x.open, want.open, func(a, b []offerDue) bool { return slices.EqualFunc(a, b, sameOfferDue) }) &&
		maps.Equal(x.waiting, want.waiting) && maps.Equal(x.busy, want.busy) && slices.EqualFunc(x.dues, want.dues, sameOfferDue)
	if !same {
		t.Fatalf("index out of step with the state:\nkept  %+v\nbuilt %+v", x, want)
	}
}

func sameOfferDue(a, b offerDue) bool {
	return a.due.Equal(b.due) && proto.Equal(a.at, b.at) && a.order == b.order && a.dasher == b.dasher
}

func (r *areaRun) deliver(payload proto.Message) output {
	r.t.Helper()
	return r.take(decideDeliverArea(r.self, r.state, r.index, payload, r.cfg, r.now))
}

// fire advances the clock to the timer and fires it (the entity removes the timer first).
func (r *areaRun) fire() output {
	r.t.Helper()
	if r.timer == nil {
		r.t.Fatal("no timer set")
	}
	r.now = *r.timer
	r.timer = nil
	return r.take(decideAreaTimer(r.self, r.state, r.index, areaOffersTimer, r.cfg, r.now))
}

// dasher registers an online dasher at p with free capacity 1.
func (r *areaRun) dasher(id string, p *messages.Position) output {
	r.t.Helper()
	return r.deliver(&messages.DasherStatusChanged{DasherId: id, Online: true, Position: p, Cell: AreaOf(p), FreeCapacity: 1, At: timestamppb.New(r.now)})
}

func (r *areaRun) accepted(orderID string) output {
	r.t.Helper()
	pickup := cellCentre(r.t, r.self)
	return r.deliver(&messages.OrderAccepted{OrderId: orderID, RestaurantId: "r_1", Pickup: pickup, Dropoff: offset(pickup, 800, 800)})
}

func (r *areaRun) dispatch(orderID string) *messages.Dispatch {
	r.t.Helper()
	d := r.state.GetDispatches()[orderID]
	if d == nil {
		r.t.Fatalf("no dispatch of %s", orderID)
	}
	return d
}

func openOffers(d *messages.Dispatch) []string {
	var ids []string
	for _, o := range d.GetOpen() {
		ids = append(ids, o.GetDasherId())
	}
	slices.Sort(ids)
	return ids
}

// inCell returns a point metres north of the area's centre, checked to be in the area.
func (r *areaRun) inCell(north float64) *messages.Position {
	r.t.Helper()
	p := offset(cellCentre(r.t, r.self), north, 0)
	if AreaOf(p) != r.self {
		r.t.Fatalf("%v m north of the centre is outside the cell", north)
	}
	return p
}

// inNeighbour returns a point metres north of the centre of the i-th neighbour area.
func (r *areaRun) inNeighbour(i int, north float64) *messages.Position {
	r.t.Helper()
	n := areasAround(r.self)[1+i]
	p := offset(cellCentre(r.t, n), north, 0)
	if AreaOf(p) != n {
		r.t.Fatalf("%v m north of neighbour %d's centre is outside it", north, i)
	}
	return p
}

// sixDashers: d1..d4 in the cell (d1 nearest the pickup, the cell's centre), n1, n2 in neighbour cells.
func sixDashers(r *areaRun) {
	r.t.Helper()
	r.dasher("d3", r.inCell(150))
	r.dasher("d1", r.inCell(10))
	r.dasher("d4", r.inCell(200))
	r.dasher("d2", r.inCell(100))
	r.dasher("n1", r.inNeighbour(0, 0))
	r.dasher("n2", r.inNeighbour(3, 50))
}

func TestAreaWaveOneOffersTheNearestInTheCell(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	o := r.accepted("o_1")
	offered := sendsOf[*messages.DeliveryOffered](o)
	if got := keys(offered); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("wave 1 offered to %v, want the 3 nearest in the cell [d1 d2 d3]", got)
	}
	for id, off := range offered {
		if off.GetWave() != 1 || off.GetArea() != r.self || off.GetOrderId() != "o_1" || off.GetDasherId() != id || off.GetAutoAssigned() ||
			!off.GetExpiresAt().AsTime().Equal(testNow.Add(DefaultOfferTTL)) || !proto.Equal(off.GetPickup(), cellCentre(t, r.self)) {
			t.Errorf("offer to %s: %v", id, off)
		}
	}
	if offered["d1"].GetDistanceM() >= offered["d2"].GetDistanceM() || offered["d2"].GetDistanceM() >= offered["d3"].GetDistanceM() {
		t.Errorf("distances not increasing d1 < d2 < d3: %v %v %v", offered["d1"].GetDistanceM(), offered["d2"].GetDistanceM(), offered["d3"].GetDistanceM())
	}
	if r.timer == nil || !r.timer.Equal(testNow.Add(DefaultOfferTTL)) {
		t.Fatalf("offers timer %v, want %v", r.timer, testNow.Add(DefaultOfferTTL))
	}
	if d := r.dispatch("o_1"); d.GetWave() != 1 || len(d.GetOpen()) != 3 {
		t.Errorf("dispatch after wave 1: %v", d)
	}
	// A second OrderAccepted (a redelivery) while the dispatch is open is ignored: no event, send or timer, and
	// the state, the offers' expiries included, stays as it was.
	before, timer := proto.Clone(r.state), *r.timer
	if o := r.accepted("o_1"); len(o.events)+len(o.sends)+len(o.timers) != 0 {
		t.Errorf("duplicate OrderAccepted of an open dispatch: events %v, sends %v, timers %v", o.events, o.sends, o.timers)
	}
	if !proto.Equal(r.state, before) || r.timer == nil || !r.timer.Equal(timer) {
		t.Errorf("duplicate OrderAccepted changed the state or the timer:\n%v\nwant\n%v", r.state, before)
	}
}

// The opening wave's default is WaveSize (the nearest few), also when WaveSize is configured; a configured
// OpeningWaveSize of 1 offers the nearest dasher only, a decline moves to the next nearest at once, and once the
// opening offers expired the next wave offers WaveSize dashers, widened.
func TestAreaOpeningWave(t *testing.T) {
	defaults := WorkflowConfig{}.withDefaults()
	if defaults.OpeningWaveSize != DefaultWaveSize || defaults.WaveSize != DefaultWaveSize || DefaultWaveSize != 3 {
		t.Fatalf("defaults: opening wave %d, wave %d, want 3 and 3", defaults.OpeningWaveSize, defaults.WaveSize)
	}
	if got := (WorkflowConfig{WaveSize: 2}).withDefaults().OpeningWaveSize; got != 2 {
		t.Fatalf("opening wave %d with WaveSize 2, want 2", got)
	}
	if got := (WorkflowConfig{OpeningWaveSize: 1}).withDefaults(); got.OpeningWaveSize != 1 || got.WaveSize != 3 {
		t.Fatalf("opening wave %d, wave %d with OpeningWaveSize 1, want 1 and 3", got.OpeningWaveSize, got.WaveSize)
	}

	r0 := newAreaRun(t)
	r0.cfg = WorkflowConfig{}.withDefaults()
	sixDashers(r0)
	o := r0.accepted("o_0")
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("default opening wave offered to %v, want the three nearest [d1 d2 d3]", got)
	}

	r := newAreaRun(t)
	r.cfg = WorkflowConfig{OpeningWaveSize: 1}.withDefaults()
	sixDashers(r)
	o = r.accepted("o_1")
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("opening wave of 1 offered to %v, want the nearest [d1]", got)
	}
	o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1"})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d2"}) {
		t.Fatalf("after d1 declined, offered to %v, want the next nearest [d2]", got)
	}
	o = r.fire()
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); len(got) != 3 || slices.Contains(got, "d1") || slices.Contains(got, "d2") {
		t.Fatalf("after the opening offers expired, wave 2 offered to %v, want 3 dashers other than d1 (declined) and d2 (just offered)", got)
	}
	if w := r.dispatch("o_1").GetWave(); w != 2 {
		t.Fatalf("wave %d, want 2", w)
	}

	// A dispatch that waited for a dasher still opens with OpeningWaveSize offers.
	r2 := newAreaRun(t)
	r2.cfg = WorkflowConfig{OpeningWaveSize: 1}.withDefaults()
	r2.accepted("o_2")
	o = r2.deliver(&messages.DasherStatusChanged{DasherId: "a", Online: true, Position: r2.inCell(10), Cell: r2.self, FreeCapacity: 3, At: timestamppb.New(r2.now)})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("waiting dispatch offered to %v, want [a]", got)
	}
	o = r2.dasher("b", r2.inCell(20))
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); len(got) != 0 {
		t.Fatalf("a dispatch with an open offer was offered again to %v", got)
	}
}

func TestAreaExpiryWidensToNeighbours(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")

	o := r.fire() // wave 1 expires
	expired := sendsOf[*messages.OfferExpired](o)
	if got := keys(expired); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("expired %v, want [d1 d2 d3]", got)
	}
	offered := sendsOf[*messages.DeliveryOffered](o)
	// Wave 2 is wide and prefers dashers who have not had the offer: d4 (cell), n1 and n2 (neighbours).
	if got := keys(offered); !slices.Equal(got, []string{"d4", "n1", "n2"}) {
		t.Fatalf("wave 2 offered to %v, want [d4 n1 n2]", got)
	}
	for _, off := range offered {
		if off.GetWave() != 2 || !off.GetExpiresAt().AsTime().Equal(r.now.Add(DefaultOfferTTL)) {
			t.Errorf("wave 2 offer %v", off)
		}
	}
	closed := 0
	for _, ev := range o.events {
		if c, ok := ev.(*messages.OfferClosed); ok && c.GetOutcome() == messages.OfferOutcome_OFFER_OUTCOME_EXPIRED {
			closed++
		}
	}
	if closed != 3 {
		t.Errorf("%d offers closed as expired, want 3", closed)
	}

	o = r.fire() // wave 2 expires: wave 3 goes back to the nearest, who have had one offer each
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("wave 3 offered to %v, want [d1 d2 d3]", got)
	}
	if d := r.dispatch("o_1"); d.GetWave() != 3 || d.GetOffered()["d1"] != 2 || d.GetOffered()["n1"] != 1 {
		t.Errorf("dispatch after wave 3: %v", d)
	}
}

func TestAreaWidensAtOnceWhenTheCellIsEmpty(t *testing.T) {
	r := newAreaRun(t)
	r.dasher("n1", r.inNeighbour(0, 0))
	o := r.accepted("o_1")
	off := sendsOf[*messages.DeliveryOffered](o)["n1"]
	if off == nil || off.GetWave() != 2 {
		t.Fatalf("offers %v, want wave 2 to n1", o.sends)
	}
}

func TestAreaWithNoDasherWaitsForOne(t *testing.T) {
	r := newAreaRun(t)
	o := r.accepted("o_1")
	if len(o.sends) != 0 || r.timer != nil {
		t.Fatalf("sends %v timer %v with no dasher", o.sends, r.timer)
	}
	if d := r.dispatch("o_1"); d.GetEnded() || d.GetWave() != 0 {
		t.Fatalf("dispatch %v", d)
	}
	o = r.dasher("n1", r.inNeighbour(2, 0))
	if off := sendsOf[*messages.DeliveryOffered](o)["n1"]; off == nil {
		t.Fatalf("a dasher coming online got no offer: %v", o.sends)
	}
	if r.timer == nil {
		t.Error("no offers timer after the offer")
	}
	// A second dasher while the offer is open gets nothing: the dispatch waits for the open offer.
	if o = r.dasher("d1", r.inCell(0)); len(o.sends) != 0 {
		t.Errorf("second dasher got %v while an offer was open", o.sends)
	}
}

func TestAreaOnlyDashersWithFreeCapacity(t *testing.T) {
	r := newAreaRun(t)
	r.cfg.WaveSize, r.cfg.OpeningWaveSize = 1, 1
	r.dasher("d1", r.inCell(0))
	r.deliver(&messages.DasherStatusChanged{DasherId: "full", Online: true, Position: sfCentre, Cell: r.self, FreeCapacity: 0})
	r.accepted("o_1")
	if got := openOffers(r.dispatch("o_1")); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("o_1 offered to %v", got)
	}
	// d1 has capacity 1 and an open offer: o_2 waits rather than offering d1 two orders at once.
	r.accepted("o_2")
	if got := openOffers(r.dispatch("o_2")); len(got) != 0 {
		t.Fatalf("o_2 offered to %v while d1 holds an offer", got)
	}
	// d1 gets capacity 2: o_2 is offered to it.
	o := r.deliver(&messages.DasherStatusChanged{DasherId: "d1", Online: true, Position: r.inCell(0), Cell: r.self, FreeCapacity: 2})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("after more capacity: %v", o.sends)
	}
	// Offline dashers are forgotten; an unknown dasher going offline changes nothing.
	r.deliver(&messages.DasherStatusChanged{DasherId: "full", Online: false})
	if _, ok := r.state.GetDashers()["full"]; ok {
		t.Error("offline dasher still known")
	}
	if out, _ := decideDeliverArea(r.self, r.state, r.index, &messages.DasherStatusChanged{DasherId: "ghost"}, r.cfg, r.now); len(out) != 0 {
		t.Errorf("unknown dasher offline: %v", out)
	}
}

func TestAreaDeclineMovesToTheNextDasher(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")
	o := r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d2"})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d4"}) {
		t.Fatalf("after d2 declined, offered to %v, want [d4] (wave 1 stays in the cell)", got)
	}
	if d := r.dispatch("o_1"); !slices.Equal(openOffers(d), []string{"d1", "d3", "d4"}) || !slices.Contains(d.GetExcluded(), "d2") {
		t.Fatalf("dispatch %v", d)
	}
	// A late or repeated decline changes nothing.
	if o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d2"}); len(o.events)+len(o.sends) != 0 {
		t.Errorf("repeated decline: %v %v", o.events, o.sends)
	}
	// The cell is exhausted: the next decline widens at once.
	o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1"})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); len(got) != 0 {
		t.Fatalf("wave 1 with open offers left should not widen yet: %v", got)
	}
	r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d3"})
	o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d4"})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("all in the cell declined: offered to %v, want the neighbours [n1 n2]", got)
	}
	// Declined dashers never get this order again, even when nobody else is left.
	r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "n1"})
	o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "n2"})
	if len(o.sends) != 0 || r.timer != nil {
		t.Fatalf("everyone declined: sends %v timer %v", o.sends, r.timer)
	}
}

func TestAreaReturnedOfferMayComeBack(t *testing.T) {
	r := newAreaRun(t)
	r.cfg.WaveSize, r.cfg.OpeningWaveSize = 1, 1
	r.dasher("d1", r.inCell(0))
	r.dasher("d2", r.inCell(100))
	r.accepted("o_1")
	// d1 could not take it (offline, full): the next dasher gets it, not d1 again in the same breath.
	o := r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1", Unavailable: true})
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d2"}) {
		t.Fatalf("after d1 returned it: %v", got)
	}
	if slices.Contains(r.dispatch("o_1").GetExcluded(), "d1") {
		t.Fatal("a returned offer excluded the dasher")
	}
	// d2 lets it expire: d1 may have it again.
	o = r.fire()
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("next wave: %v, want d1 again", got)
	}
}

func TestAreaAssignmentWithdrawsTheOtherOffers(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")
	o := r.deliver(&messages.DasherAssigned{OrderId: "o_1", DasherId: "d2"})
	if got := keys(sendsOf[*messages.OfferWithdrawn](o)); !slices.Equal(got, []string{"d1", "d3"}) {
		t.Fatalf("withdrawn from %v, want [d1 d3]", got)
	}
	outcomes := map[string]messages.OfferOutcome{}
	for _, ev := range o.events {
		if c, ok := ev.(*messages.OfferClosed); ok {
			outcomes[c.GetDasherId()] = c.GetOutcome()
		}
	}
	if outcomes["d2"] != messages.OfferOutcome_OFFER_OUTCOME_ACCEPTED || outcomes["d1"] != messages.OfferOutcome_OFFER_OUTCOME_WITHDRAWN {
		t.Errorf("outcomes %v", outcomes)
	}
	d := r.dispatch("o_1")
	if !d.GetEnded() || d.GetAssignedDasherId() != "d2" || len(d.GetOpen()) != 0 || r.timer != nil {
		t.Fatalf("dispatch %v timer %v", d, r.timer)
	}
	if len(r.state.GetEnded()) != 1 {
		t.Errorf("ended %v", r.state.GetEnded())
	}
	// Late messages about the ended dispatch change nothing; so does a second OrderAccepted.
	for _, late := range []proto.Message{
		&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1"},
		&messages.DasherAssigned{OrderId: "o_1", DasherId: "d2"},
		&messages.OrderAccepted{OrderId: "o_1", Pickup: sfCentre},
		&messages.DasherReleased{OrderId: "o_1", DasherId: "d1"}, // not the assigned dasher
	} {
		if o := r.deliver(late); len(o.events)+len(o.sends)+len(o.timers) != 0 {
			t.Errorf("late %T: %v %v", late, o.events, o.sends)
		}
	}
	// The timer of a dispatch that ended in between fires without effect.
	if out, err := decideAreaTimer(r.self, r.state, r.index, areaOffersTimer, r.cfg, r.now.Add(time.Hour)); err != nil || len(out) != 0 {
		t.Errorf("timer after the end: %v %v", out, err)
	}
}

func TestAreaCancellationWithdrawsEveryOffer(t *testing.T) {
	for _, cancel := range []proto.Message{
		&messages.OrderCancelled{OrderId: "o_1", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER},
		&messages.OrderRejected{OrderId: "o_1"},
	} {
		r := newAreaRun(t)
		sixDashers(r)
		r.accepted("o_1")
		o := r.deliver(cancel)
		if got := keys(sendsOf[*messages.OfferWithdrawn](o)); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
			t.Fatalf("%T withdrew %v", cancel, got)
		}
		if d := r.dispatch("o_1"); !d.GetEnded() || !d.GetCancelled() || r.timer != nil {
			t.Fatalf("%T: dispatch %v timer %v", cancel, d, r.timer)
		}
		if o := r.deliver(cancel); len(o.events) != 0 {
			t.Errorf("second %T: %v", cancel, o.events)
		}
	}
}

func TestAreaReleasedDasherReopensTheDispatch(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")
	r.deliver(&messages.DasherAssigned{OrderId: "o_1", DasherId: "d1"})
	o := r.deliver(&messages.DasherReleased{OrderId: "o_1", DasherId: "d1", Reason: "declined"})
	offered := keys(sendsOf[*messages.DeliveryOffered](o))
	if slices.Contains(offered, "d1") || len(offered) != 3 {
		t.Fatalf("reopened dispatch offered to %v (d1 was released and must not be offered again)", offered)
	}
	d := r.dispatch("o_1")
	if d.GetEnded() || d.GetAssignedDasherId() != "" || slices.Contains(r.state.GetEnded(), "o_1") {
		t.Fatalf("dispatch %v ended %v", d, r.state.GetEnded())
	}
	// After a cancellation a release does not reopen.
	r.deliver(&messages.DasherAssigned{OrderId: "o_1", DasherId: "d2"})
	r.deliver(&messages.OrderCancelled{OrderId: "o_1"})
	if o := r.deliver(&messages.DasherReleased{OrderId: "o_1", DasherId: "d2"}); len(o.events) != 0 {
		t.Errorf("release after cancel: %v", o.events)
	}
}

func TestAreaPartialExpiryKeepsTheOthersOpen(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")
	r.now = r.now.Add(10 * time.Second)
	r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1"}) // d4 offered now, expires 10 s later
	o := r.fire()
	if got := keys(sendsOf[*messages.OfferExpired](o)); !slices.Equal(got, []string{"d2", "d3"}) {
		t.Fatalf("expired %v", got)
	}
	if len(sendsOf[*messages.DeliveryOffered](o)) != 0 {
		t.Fatalf("a new wave while d4's offer is open: %v", o.sends)
	}
	if r.timer == nil || !r.timer.Equal(testNow.Add(10*time.Second+DefaultOfferTTL)) {
		t.Fatalf("timer %v, want d4's expiry", r.timer)
	}
	o = r.fire()
	if got := keys(sendsOf[*messages.OfferExpired](o)); !slices.Equal(got, []string{"d4"}) {
		t.Fatalf("expired %v", got)
	}
	if got := keys(sendsOf[*messages.DeliveryOffered](o)); !slices.Equal(got, []string{"d2", "n1", "n2"}) {
		t.Fatalf("wave 2 offered to %v, want the neighbours then the nearest expired one", got)
	}
}

func TestAreaAutoAssign(t *testing.T) {
	r := newAreaRun(t)
	out, err := decideSetAutoAssign(r.state, &messages.SetAutoAssign{CommandId: "a", Enabled: true})
	r.take(out, err)
	if !r.state.GetAutoAssign() {
		t.Fatal("auto-assign not set")
	}
	if out, err := decideSetAutoAssign(r.state, &messages.SetAutoAssign{CommandId: "b", Enabled: true}); err != nil || len(out) != 0 {
		t.Fatalf("setting it again: %v %v", out, err)
	}
	sixDashers(r)
	o := r.accepted("o_1")
	offered := sendsOf[*messages.DeliveryOffered](o)
	if got := keys(offered); !slices.Equal(got, []string{"d1"}) || !offered["d1"].GetAutoAssigned() {
		t.Fatalf("auto-assign offered %v, want d1 alone, auto_assigned", o.sends)
	}
	if !r.dispatch("o_1").GetAutoAssign() {
		t.Error("dispatch not in auto-assign mode")
	}
	// The dasher declines (or could not take it): the next best is assigned.
	o = r.deliver(&messages.OfferDeclined{OrderId: "o_1", DasherId: "d1", Reason: "at capacity"})
	offered = sendsOf[*messages.DeliveryOffered](o)
	if got := keys(offered); !slices.Equal(got, []string{"d2"}) || !offered["d2"].GetAutoAssigned() {
		t.Fatalf("after the decline: %v", o.sends)
	}
	// The mode applies to dispatches that start after it changes.
	out, err = decideSetAutoAssign(r.state, &messages.SetAutoAssign{CommandId: "c", Enabled: false})
	r.take(out, err)
	if !r.dispatch("o_1").GetAutoAssign() {
		t.Error("the open dispatch changed mode")
	}
}

func TestAreaRefusesMalformedInput(t *testing.T) {
	r := newAreaRun(t)
	for name, p := range map[string]proto.Message{
		"accepted no id":    &messages.OrderAccepted{Pickup: sfCentre},
		"accepted no place": &messages.OrderAccepted{OrderId: "o_1"},
		"status no id":      &messages.DasherStatusChanged{Online: true, Position: sfCentre, Cell: r.self},
		"status bad cell":   &messages.DasherStatusChanged{DasherId: "d", Online: true, Position: sfCentre, Cell: "nope"},
		"listing no id":     &messages.RestaurantListed{Position: sfCentre},
	} {
		if _, err := decideDeliverArea(r.self, r.state, r.index, p, r.cfg, r.now); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if _, err := decideDeliverArea(r.self, r.state, r.index, &messages.FoodReady{OrderId: "o_1"}, r.cfg, r.now); !errors.Is(err, errUnexpectedPayload) {
		t.Errorf("unexpected payload: %v", err)
	}
	if _, err := decideAreaTimer(r.self, r.state, r.index, "other", r.cfg, r.now); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("unknown timer: %v", err)
	}
	// Messages about unknown orders are ignored.
	for _, p := range []proto.Message{
		&messages.OfferDeclined{OrderId: "o_x", DasherId: "d"},
		&messages.DasherAssigned{OrderId: "o_x", DasherId: "d"},
		&messages.OrderCancelled{OrderId: "o_x"},
		&messages.DasherReleased{OrderId: "o_x", DasherId: "d"},
	} {
		if o := r.deliver(p); len(o.events)+len(o.sends) != 0 {
			t.Errorf("%T about an unknown order: %v", p, o.events)
		}
	}
}

func TestAreaKeepsABoundedNumberOfEndedDispatches(t *testing.T) {
	r := newAreaRun(t)
	for i := range MaxEndedDispatches + 5 {
		id := fmt.Sprintf("o_%d", i)
		r.accepted(id)
		r.deliver(&messages.OrderCancelled{OrderId: id})
	}
	if n := len(r.state.GetDispatches()); n != MaxEndedDispatches || len(r.state.GetEnded()) != MaxEndedDispatches {
		t.Fatalf("%d dispatches, %d ended kept; want %d", n, len(r.state.GetEnded()), MaxEndedDispatches)
	}
	if _, ok := r.state.GetDispatches()["o_0"]; ok {
		t.Error("the oldest ended dispatch was kept")
	}
}

func TestAreaDecisionsDoNotChangeTheirInput(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_1")
	before := proto.Clone(r.state)
	index := *r.index
	index.open, index.waiting, index.busy, index.dues = maps.Clone(index.open), maps.Clone(index.waiting), maps.Clone(index.busy), slices.Clone(index.dues)
	if _, err := decideAreaTimer(r.self, r.state, r.index, areaOffersTimer, r.cfg, r.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := decideDeliverArea(r.self, r.state, r.index, &messages.DasherAssigned{OrderId: "o_1", DasherId: "d1"}, r.cfg, r.now); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, r.state) {
		t.Fatal("a decision changed the state it was given")
	}
	checkAreaIndex(t, &index, r.state)
	checkAreaIndex(t, r.index, r.state)
}

func TestApplyAreaRefusesForeignEvents(t *testing.T) {
	s := &messages.AreaState{}
	if err := applyArea(s, &messages.MenuUpdated{}); err == nil {
		t.Error("foreign event applied")
	}
	if err := applyArea(s, &messages.OffersMade{OrderId: "o_x"}); err == nil {
		t.Error("event about an unknown dispatch applied")
	}
}

func TestAreaView(t *testing.T) {
	r := newAreaRun(t)
	sixDashers(r)
	r.accepted("o_2")
	r.accepted("o_1")
	r.deliver(&messages.OrderCancelled{OrderId: "o_2"})
	v := areaView(r.self, r.state)
	if v.GetCell() != r.self || len(v.GetDashers()) != 6 || v.GetDashers()[0].GetDasherId() != "d1" {
		t.Fatalf("view %v", v)
	}
	if len(v.GetDispatches()) != 1 || v.GetDispatches()[0].GetOrderId() != "o_1" {
		t.Fatalf("view lists dispatches %v, want the open o_1", v.GetDispatches())
	}
	v.Dashers[0].DasherId = "changed"
	if r.state.GetDashers()["d1"].GetDasherId() != "d1" {
		t.Error("the view shares the state")
	}
}

// TestAreaIndexFollowsRandomScenarios drives areas through seeded random message sequences (dashers coming, going
// and moving, orders accepted, offers declined, returned, expired and accepted, cancellations, releases); areaRun
// checks after every decision that the index kept in step equals the index built from the state.
func TestAreaIndexFollowsRandomScenarios(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		r := newAreaRun(t)
		r.cfg.WaveSize, r.cfg.OpeningWaveSize = 1+rng.IntN(4), 1+rng.IntN(4)
		around := areasAround(r.self)
		for range 300 {
			r.now = r.now.Add(time.Duration(rng.IntN(20)) * time.Second)
			if r.timer != nil && !r.timer.After(r.now) {
				r.fire()
				continue
			}
			var offers [][2]string
			var ended []*messages.Dispatch
			var ids []string
			for id, d := range r.state.GetDispatches() {
				ids = append(ids, id)
				if d.GetEnded() {
					ended = append(ended, d)
				}
				for _, o := range d.GetOpen() {
					offers = append(offers, [2]string{id, o.GetDasherId()})
				}
			}
			slices.Sort(ids) // map order would make the seed's choices differ from run to run
			slices.SortFunc(offers, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
			slices.SortFunc(ended, func(a, b *messages.Dispatch) int { return strings.Compare(a.GetOrderId(), b.GetOrderId()) })
			switch k := rng.IntN(10); {
			case k < 3:
				id := fmt.Sprintf("d%d", rng.IntN(14))
				if rng.IntN(6) == 0 {
					r.deliver(&messages.DasherStatusChanged{DasherId: id})
					continue
				}
				p := offset(cellCentre(t, around[rng.IntN(len(around))]), rng.Float64()*300-150, rng.Float64()*300-150)
				r.deliver(&messages.DasherStatusChanged{DasherId: id, Online: true, Position: p, Cell: AreaOf(p), FreeCapacity: int32(rng.IntN(3)), At: timestamppb.New(r.now)})
			case k < 5:
				pickup := offset(cellCentre(t, r.self), rng.Float64()*300-150, rng.Float64()*300-150)
				r.deliver(&messages.OrderAccepted{OrderId: fmt.Sprintf("o_%d", rng.IntN(300)), RestaurantId: "r_1", Pickup: pickup, Dropoff: pickup})
			case k < 7 && len(offers) > 0:
				o := offers[rng.IntN(len(offers))]
				r.deliver(&messages.OfferDeclined{OrderId: o[0], DasherId: o[1], Unavailable: rng.IntN(3) == 0})
			case k < 8 && len(offers) > 0:
				o := offers[rng.IntN(len(offers))]
				r.deliver(&messages.DasherAssigned{OrderId: o[0], DasherId: o[1]})
			case k < 9 && len(ids) > 0:
				r.deliver(&messages.OrderCancelled{OrderId: ids[rng.IntN(len(ids))]})
			case len(ended) > 0:
				d := ended[rng.IntN(len(ended))]
				r.deliver(&messages.DasherReleased{OrderId: d.GetOrderId(), DasherId: d.GetAssignedDasherId()})
			}
		}
		if len(r.state.GetEnded()) == 0 || len(r.index.dues) == 0 && len(r.index.waiting) == 0 {
			t.Fatalf("seed %d: the scenario never ended a dispatch or left none open: it tests little", seed)
		}
	}
}
