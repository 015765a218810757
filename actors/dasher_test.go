package actors

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// dasherRun drives a Dasher's decisions in memory, applying their kind events as the entity would.
type dasherRun struct {
	t     *testing.T
	id    string
	cfg   WorkflowConfig
	now   time.Time
	state *messages.DasherState
}

func newDasherRun(t *testing.T, capacity int32) *dasherRun {
	r := &dasherRun{t: t, id: "d_1", cfg: dispatchConfig(), now: testNow, state: &messages.DasherState{}}
	r.take(decideCreateDasher(r.state, &messages.CreateDasher{CommandId: "c", Name: "Dee", Capacity: capacity}, r.now))
	return r
}

func (r *dasherRun) take(out []proto.Message, err error) output {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("decision: %v", err)
	}
	o := splitOutput(r.t, out)
	for _, ev := range o.events {
		if err := applyDasher(r.state, ev); err != nil {
			r.t.Fatalf("apply: %v", err)
		}
	}
	return o
}

func (r *dasherRun) deliver(p proto.Message) output {
	r.t.Helper()
	return r.take(decideDeliverDasher(r.id, r.state, p, r.cfg, r.now))
}

func (r *dasherRun) online(p *messages.Position) output {
	r.t.Helper()
	return r.take(decideSetDasherStatus(r.id, r.state, &messages.SetDasherStatus{CommandId: "s", Online: true, Position: p}, r.cfg, r.now))
}

func (r *dasherRun) offer(orderID string) output {
	r.t.Helper()
	return r.deliver(&messages.DeliveryOffered{OrderId: orderID, Area: AreaOf(sfCentre), DasherId: r.id, Pickup: sfCentre,
		Dropoff: offset(sfCentre, 500, 0), Wave: 1, DistanceM: 120, ExpiresAt: timestamppb.New(r.now.Add(DefaultOfferTTL))})
}

func (r *dasherRun) accept(orderID string) output {
	r.t.Helper()
	assigned, refusal := checkAcceptOffer(r.state, &messages.AcceptOffer{CommandId: "a", OrderId: orderID}, r.now)
	if refusal != nil || assigned {
		r.t.Fatalf("accept %s: assigned %v, %v", orderID, assigned, refusal)
	}
	return r.take(decideOfferAccepted(r.id, r.state, orderID, r.cfg, r.now))
}

func feedTypesOf(o output) []string {
	var types []string
	for _, f := range o.feed {
		types = append(types, f.GetType())
	}
	return types
}

func TestDecideCreateDasher(t *testing.T) {
	for name, c := range map[string]*messages.CreateDasher{
		"no name":       {CommandId: "c"},
		"long vehicle":  {CommandId: "c", Name: "D", Vehicle: strings.Repeat("v", MaxVehicleLen+1)},
		"capacity -1":   {CommandId: "c", Name: "D", Capacity: -1},
		"capacity 11":   {CommandId: "c", Name: "D", Capacity: MaxDasherCapacity + 1},
		"bad utf8 name": {CommandId: "c", Name: "\xff"},
	} {
		if _, err := decideCreateDasher(&messages.DasherState{}, c, testNow); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := newDasherRun(t, 0)
	if r.state.GetCapacity() != DefaultDasherCapacity || r.state.GetName() != "Dee" || r.state.GetOnline() {
		t.Fatalf("created %v", r.state)
	}
	if _, err := decideCreateDasher(r.state, &messages.CreateDasher{CommandId: "c2", Name: "Dee"}, testNow); codeOf(t, err) != messages.ErrorReason_ALREADY_EXISTS {
		t.Errorf("second create: %v", err)
	}
	if r := newDasherRun(t, 3); r.state.GetCapacity() != 3 {
		t.Errorf("capacity %d", r.state.GetCapacity())
	}
}

func TestDasherCommandsBeforeCreate(t *testing.T) {
	absent := &messages.DasherState{}
	cfg := dispatchConfig()
	checks := map[string]error{
		"status":   second(decideSetDasherStatus("d", absent, &messages.SetDasherStatus{Online: true, Position: sfCentre}, cfg, testNow)),
		"location": second(decideUpdateDasherLocation("d", absent, &messages.UpdateDasherLocation{Position: sfCentre}, cfg, testNow)),
		"decline":  second(decideDeclineOffer("d", absent, &messages.DeclineOffer{OrderId: "o"}, cfg, testNow)),
	}
	_, refusal := checkAcceptOffer(absent, &messages.AcceptOffer{OrderId: "o"}, testNow)
	checks["accept"] = errOrNil(refusal)
	for name, err := range checks {
		if codeOf(t, err) != messages.ErrorReason_NOT_FOUND {
			t.Errorf("%s before create: %v", name, err)
		}
	}
	if out, err := decideDeliverDasher("d", absent, &messages.DeliveryOffered{OrderId: "o"}, cfg, testNow); err != nil || len(out) != 0 {
		t.Errorf("delivery to an absent dasher: %v %v", out, err)
	}
}

func second(_ []proto.Message, err error) error { return err }

func TestDasherGoesOnlineAndRegistersWithItsAreas(t *testing.T) {
	r := newDasherRun(t, 2)
	if _, err := decideSetDasherStatus(r.id, r.state, &messages.SetDasherStatus{Online: true}, r.cfg, r.now); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Fatalf("online without a position: %v", err)
	}
	o := r.online(sfCentre)
	cell := AreaOf(sfCentre)
	status := sendsOf[*messages.DasherStatusChanged](o)
	if got, want := keys(status), areasAround(cell); !slices.Equal(got, sortedCopy(want)) {
		t.Fatalf("registered with %v, want %v", got, want)
	}
	for area, st := range status {
		if !st.GetOnline() || st.GetCell() != cell || st.GetFreeCapacity() != 2 || st.GetDasherId() != r.id || !proto.Equal(st.GetPosition(), sfCentre) {
			t.Errorf("status to %s: %v", area, st)
		}
	}
	if !r.state.GetOnline() || r.state.GetCell() != cell || len(r.state.GetAreas()) != 7 {
		t.Fatalf("state %v", r.state)
	}
	// Offline: nothing pending, so just unregistered everywhere.
	o = r.take(decideSetDasherStatus(r.id, r.state, &messages.SetDasherStatus{CommandId: "off"}, r.cfg, r.now))
	status = sendsOf[*messages.DasherStatusChanged](o)
	if len(status) != 7 || status[cell].GetOnline() {
		t.Fatalf("going offline told %v", o.sends)
	}
	if r.state.GetOnline() || len(r.state.GetAreas()) != 0 {
		t.Fatalf("state %v", r.state)
	}
	// Offline again: nothing.
	if out, err := decideSetDasherStatus(r.id, r.state, &messages.SetDasherStatus{CommandId: "off2"}, r.cfg, r.now); err != nil || len(out) != 0 {
		t.Errorf("offline twice: %v %v", out, err)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestDasherMoves(t *testing.T) {
	r := newDasherRun(t, 1)
	centre := cellCentre(t, AreaOf(sfCentre))
	// Offline: the position is recorded, nobody is told.
	o := r.take(decideUpdateDasherLocation(r.id, r.state, &messages.UpdateDasherLocation{Position: centre}, r.cfg, r.now))
	if len(o.sends) != 0 || !proto.Equal(r.state.GetPosition(), centre) {
		t.Fatalf("offline move: %v %v", o.sends, r.state)
	}
	r.online(centre)
	// A short move inside the cell is recorded, not reported.
	near := offset(centre, 30, 0)
	o = r.take(decideUpdateDasherLocation(r.id, r.state, &messages.UpdateDasherLocation{Position: near}, r.cfg, r.now))
	if len(o.sends) != 0 || !proto.Equal(r.state.GetPosition(), near) || !proto.Equal(r.state.GetReportedPosition(), centre) {
		t.Fatalf("short move: %v, state %v", o.sends, r.state)
	}
	// The same position again: nothing.
	if out, err := decideUpdateDasherLocation(r.id, r.state, &messages.UpdateDasherLocation{Position: near}, r.cfg, r.now); err != nil || len(out) != 0 {
		t.Fatalf("same position: %v %v", out, err)
	}
	// A move of DasherReportDistanceM from the reported position is reported to the same areas.
	far := offset(centre, r.cfg.DasherReportDistanceM+5, 0)
	if AreaOf(far) != AreaOf(centre) {
		t.Fatal("test point left the cell")
	}
	o = r.take(decideUpdateDasherLocation(r.id, r.state, &messages.UpdateDasherLocation{Position: far}, r.cfg, r.now))
	if len(sendsOf[*messages.DasherStatusChanged](o)) != 7 || !proto.Equal(r.state.GetReportedPosition(), far) {
		t.Fatalf("far move: %v", o.sends)
	}
	// Into another cell: the areas left behind hear offline, the new ones the status.
	old := slices.Clone(r.state.GetAreas())
	other := cellCentre(t, areasAround(AreaOf(centre))[1])
	o = r.take(decideUpdateDasherLocation(r.id, r.state, &messages.UpdateDasherLocation{Position: other}, r.cfg, r.now))
	newAreas := areasAround(AreaOf(other))
	var offline, online []string
	for _, s := range o.sends {
		st := s.payload.(*messages.DasherStatusChanged)
		if st.GetOnline() {
			online = append(online, s.to)
		} else {
			offline = append(offline, s.to)
		}
	}
	slices.Sort(online)
	slices.Sort(offline)
	var left []string
	for _, a := range old {
		if !slices.Contains(newAreas, a) {
			left = append(left, a)
		}
	}
	slices.Sort(left)
	if !slices.Equal(online, sortedCopy(newAreas)) || !slices.Equal(offline, left) || len(left) == 0 {
		t.Fatalf("cell change: online to %v (want %v), offline to %v (want %v)", online, newAreas, offline, left)
	}
	if r.state.GetCell() != AreaOf(other) {
		t.Errorf("cell %s", r.state.GetCell())
	}
}

func TestDasherHoldsOffers(t *testing.T) {
	r := newDasherRun(t, 1)
	// Offline: an offer is declined back to its area.
	o := r.offer("o_1")
	if d := sendsOf[*messages.OfferDeclined](o)[AreaOf(sfCentre)]; d == nil || len(o.events) != 0 {
		t.Fatalf("offer while offline: %v %v", o.events, o.sends)
	}
	r.online(sfCentre)
	o = r.offer("o_1")
	if _, ok := r.state.GetOffers()["o_1"]; !ok || !slices.Equal(feedTypesOf(o), []string{FeedDeliveryOffered}) {
		t.Fatalf("offer not held: %v, feed %v", r.state.GetOffers(), feedTypesOf(o))
	}
	if o.feed[0].GetOrderId() != "o_1" || !o.feed[0].GetData().MessageIs(&messages.DeliveryOffered{}) {
		t.Errorf("feed entry %v", o.feed[0])
	}
	// The same offer again: nothing.
	if o = r.offer("o_1"); len(o.events)+len(o.sends)+len(o.feed) != 0 {
		t.Errorf("repeated offer: %v", o.events)
	}
}

func TestCheckAcceptOffer(t *testing.T) {
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	r.offer("o_ok")
	r.offer("o_expired")
	r.offer("o_taken")
	r.deliver(&messages.OfferExpired{OrderId: "o_expired", DasherId: r.id})
	r.take(decideOfferLost(r.id, r.state, "o_taken", messages.ErrorReason_OFFER_TAKEN, r.cfg, r.now))
	r.offer("o_withdrawn")
	r.deliver(&messages.OfferWithdrawn{OrderId: "o_withdrawn", DasherId: r.id})
	r.offer("o_declined")
	r.take(decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{OrderId: "o_declined"}, r.cfg, r.now))

	cases := []struct {
		order string
		now   time.Time
		want  messages.ErrorReason
	}{
		{"o_ok", testNow, messages.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"o_ok", testNow.Add(DefaultOfferTTL), messages.ErrorReason_OFFER_EXPIRED}, // at the expiry, too late
		{"o_expired", testNow, messages.ErrorReason_OFFER_EXPIRED},
		{"o_taken", testNow, messages.ErrorReason_OFFER_TAKEN},
		{"o_withdrawn", testNow, messages.ErrorReason_OFFER_TAKEN},
		{"o_declined", testNow, messages.ErrorReason_FAILED_PRECONDITION},
		{"o_never", testNow, messages.ErrorReason_NOT_FOUND},
		{"", testNow, messages.ErrorReason_INVALID_ARGUMENT},
	}
	for _, c := range cases {
		_, refusal := checkAcceptOffer(r.state, &messages.AcceptOffer{OrderId: c.order}, c.now)
		if got := codeOf(t, errOrNil(refusal)); got != c.want {
			t.Errorf("accept %q at +%v: %v, want %v", c.order, c.now.Sub(testNow), refusal, c.want)
		}
	}

	// Offline: refused.
	off := proto.Clone(r.state).(*messages.DasherState)
	off.Online = false
	if _, refusal := checkAcceptOffer(off, &messages.AcceptOffer{OrderId: "o_ok"}, testNow); codeOf(t, errOrNil(refusal)) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("offline accept: %v", refusal)
	}

	// At capacity: refused; the accepted order itself answers "assigned".
	r.offer("o_second")
	r.accept("o_ok")
	if _, refusal := checkAcceptOffer(r.state, &messages.AcceptOffer{OrderId: "o_second"}, testNow); codeOf(t, errOrNil(refusal)) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("accept at capacity: %v", refusal)
	}
	if assigned, refusal := checkAcceptOffer(r.state, &messages.AcceptOffer{OrderId: "o_ok"}, testNow); !assigned || refusal != nil {
		t.Errorf("accept of the assigned order: %v %v", assigned, refusal)
	}
}

func TestDasherAcceptAssigns(t *testing.T) {
	r := newDasherRun(t, 2)
	r.online(sfCentre)
	r.offer("o_1")
	o := r.accept("o_1")
	if !slices.Equal(r.state.GetAssignments(), []string{"o_1"}) || len(r.state.GetOffers()) != 0 {
		t.Fatalf("state %v", r.state)
	}
	status := sendsOf[*messages.DasherStatusChanged](o)
	if len(status) != 7 || status[AreaOf(sfCentre)].GetFreeCapacity() != 1 {
		t.Fatalf("areas told %v", o.sends)
	}
	// The Order's DasherAssigned confirms it: feed only, no second assignment.
	o = r.deliver(&messages.DasherAssigned{OrderId: "o_1", DasherId: r.id})
	if len(o.events) != 0 || !slices.Equal(feedTypesOf(o), []string{FeedDasherAssigned}) {
		t.Fatalf("DasherAssigned after accept: %v feed %v", o.events, feedTypesOf(o))
	}
	// DasherAssigned for another dasher is not ours.
	if o = r.deliver(&messages.DasherAssigned{OrderId: "o_2", DasherId: "d_other"}); len(o.events)+len(o.feed) != 0 {
		t.Errorf("foreign assignment: %v", o.events)
	}
	// Lost to another dasher: the offer is settled TAKEN; nothing when it was not held.
	r.offer("o_3")
	r.take(decideOfferLost(r.id, r.state, "o_3", messages.ErrorReason_OFFER_TAKEN, r.cfg, r.now))
	if _, held := r.state.GetOffers()["o_3"]; held {
		t.Error("lost offer still held")
	}
	if out, err := decideOfferLost(r.id, r.state, "o_3", messages.ErrorReason_OFFER_TAKEN, r.cfg, r.now); err != nil || len(out) != 0 {
		t.Errorf("lost twice: %v %v", out, err)
	}
}

func TestDasherDeclines(t *testing.T) {
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	r.offer("o_1")
	o := r.take(decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{OrderId: "o_1", Reason: "too far"}, r.cfg, r.now))
	d := sendsOf[*messages.OfferDeclined](o)[AreaOf(sfCentre)]
	if d == nil || d.GetReason() != "too far" || d.GetDasherId() != r.id {
		t.Fatalf("decline sent %v", o.sends)
	}
	if _, err := decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{OrderId: "o_1"}, r.cfg, r.now); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Errorf("second decline: %v", err)
	}
	// Giving back an assignment (the grain had the Order release the dasher first) frees the capacity.
	r.offer("o_2")
	r.accept("o_2")
	o = r.take(decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{OrderId: "o_2", Reason: "flat tyre"}, r.cfg, r.now))
	if len(r.state.GetAssignments()) != 0 || sendsOf[*messages.DasherStatusChanged](o)[AreaOf(sfCentre)].GetFreeCapacity() != 1 {
		t.Errorf("give back: assignments %v, sends %v", r.state.GetAssignments(), o.sends)
	}
	if _, err := decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{}, r.cfg, r.now); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Errorf("decline without order: %v", err)
	}
}

func TestDasherGoesOfflineAfterConsecutiveExpiries(t *testing.T) {
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	expire := func(order string) output {
		r.offer(order)
		return r.deliver(&messages.OfferExpired{OrderId: order, DasherId: r.id})
	}
	expire("o_1")
	expire("o_2")
	// An answer in between resets the count.
	r.offer("o_3")
	r.take(decideDeclineOffer(r.id, r.state, &messages.DeclineOffer{OrderId: "o_3"}, r.cfg, r.now))
	if r.state.GetConsecutiveExpiries() != 0 {
		t.Fatalf("count after a decline: %d", r.state.GetConsecutiveExpiries())
	}
	expire("o_4")
	o := expire("o_5")
	if !r.state.GetOnline() || r.state.GetConsecutiveExpiries() != 2 || !slices.Equal(feedTypesOf(o), []string{FeedOfferExpired}) {
		t.Fatalf("after 2 expiries: online %v count %d feed %v", r.state.GetOnline(), r.state.GetConsecutiveExpiries(), feedTypesOf(o))
	}
	r.offer("o_pending") // held while the third expires: declined when going offline
	o = expire("o_6")
	if r.state.GetOnline() {
		t.Fatal("still online after 3 consecutive expiries")
	}
	if got := feedTypesOf(o); !slices.Equal(got, []string{FeedOfferExpired, FeedDasherOffline}) {
		t.Fatalf("feed %v, want the expiry then DASHER_OFFLINE", got)
	}
	status := sendsOf[*messages.DasherStatusChanged](o)
	if len(status) != 7 || status[AreaOf(sfCentre)].GetOnline() {
		t.Fatalf("areas told %v", o.sends)
	}
	if d := sendsOf[*messages.OfferDeclined](o)[AreaOf(sfCentre)]; d == nil || d.GetOrderId() != "o_pending" {
		t.Fatalf("the pending offer was not declined: %v", o.sends)
	}
	var off *messages.DasherWentOffline
	for _, ev := range o.events {
		if e, ok := ev.(*messages.DasherWentOffline); ok {
			off = e
		}
	}
	if off == nil || !off.GetAuto() {
		t.Fatalf("offline event %v", off)
	}
	// Going online again starts a new count.
	r.online(sfCentre)
	if r.state.GetConsecutiveExpiries() != 0 {
		t.Errorf("count after going online: %d", r.state.GetConsecutiveExpiries())
	}
	// An expiry of an offer no longer held (accepted meanwhile) counts nothing.
	if o := r.deliver(&messages.OfferExpired{OrderId: "o_1", DasherId: r.id}); len(o.events) != 0 {
		t.Errorf("expiry of an offer not held: %v", o.events)
	}
}

func TestDasherAssignmentEnds(t *testing.T) {
	for name, c := range map[string]struct {
		msg  proto.Message
		feed string
	}{
		"delivered": {&messages.OrderDelivered{OrderId: "o_1", DasherId: "d_1"}, FeedOrderDelivered},
		"cancelled": {&messages.OrderCancelled{OrderId: "o_1"}, FeedOrderCancelled},
		"released":  {&messages.DasherReleased{OrderId: "o_1", DasherId: "d_1"}, FeedDasherReleased},
	} {
		r := newDasherRun(t, 1)
		r.online(sfCentre)
		r.offer("o_1")
		r.accept("o_1")
		if o := r.deliver(&messages.FoodReady{OrderId: "o_1"}); !slices.Equal(feedTypesOf(o), []string{FeedFoodReady}) {
			t.Errorf("%s: food ready feed %v", name, feedTypesOf(o))
		}
		o := r.deliver(c.msg)
		if len(r.state.GetAssignments()) != 0 || !slices.Equal(feedTypesOf(o), []string{c.feed}) {
			t.Errorf("%s: assignments %v feed %v", name, r.state.GetAssignments(), feedTypesOf(o))
		}
		if st := sendsOf[*messages.DasherStatusChanged](o)[AreaOf(sfCentre)]; st.GetFreeCapacity() != 1 {
			t.Errorf("%s: free capacity told %v", name, st)
		}
		if o := r.deliver(c.msg); len(o.events)+len(o.feed) != 0 {
			t.Errorf("%s twice: %v", name, o.events)
		}
	}
	// A cancelled order the dasher only held an offer of: the offer is dropped.
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	r.offer("o_1")
	if o := r.deliver(&messages.OrderCancelled{OrderId: "o_1"}); len(r.state.GetOffers()) != 0 || !slices.Equal(feedTypesOf(o), []string{FeedOrderCancelled}) {
		t.Errorf("cancel of an offer: offers %v feed %v", r.state.GetOffers(), feedTypesOf(o))
	}
	if o := r.deliver(&messages.FoodReady{OrderId: "o_9"}); len(o.feed) != 0 {
		t.Errorf("food ready of another order: %v", o.feed)
	}
	if _, err := decideDeliverDasher(r.id, r.state, &messages.OrderPlaced{}, r.cfg, r.now); !errors.Is(err, errUnexpectedPayload) {
		t.Errorf("unexpected payload: %v", err)
	}
}

func TestDasherAutoAssignedOffers(t *testing.T) {
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	r.deliver(&messages.DeliveryOffered{OrderId: "o_b", Area: AreaOf(sfCentre), DasherId: r.id, Pickup: sfCentre,
		ExpiresAt: timestamppb.New(r.now.Add(time.Minute)), AutoAssigned: true})
	r.offer("o_a")
	if got := autoAcceptable(r.state); !slices.Equal(got, []string{"o_b"}) {
		t.Fatalf("auto-acceptable %v", got)
	}
}

func TestApplyDasherRefusesForeignEvents(t *testing.T) {
	s := &messages.DasherState{}
	if err := applyDasher(s, &messages.MenuUpdated{}); err == nil {
		t.Error("foreign event applied")
	}
	if err := applyDasher(s, &messages.OfferSettled{OrderId: "o"}); err == nil {
		t.Error("settled an offer never held")
	}
}

func TestDasherRemembersABoundedNumberOfSettledOffers(t *testing.T) {
	r := newDasherRun(t, 1)
	r.online(sfCentre)
	for i := range MaxSettledOffers + 3 {
		id := "o_" + strings.Repeat("x", i+1)
		r.offer(id)
		r.deliver(&messages.OfferWithdrawn{OrderId: id})
	}
	if n := len(r.state.GetSettled()); n != MaxSettledOffers {
		t.Fatalf("%d settled offers kept", n)
	}
	if r.state.GetSettled()[0].GetOrderId() != "o_"+strings.Repeat("x", 4) {
		t.Errorf("oldest kept %s", r.state.GetSettled()[0].GetOrderId())
	}
}

func TestDasherView(t *testing.T) {
	r := newDasherRun(t, 2)
	r.online(sfCentre)
	r.offer("o_b")
	r.offer("o_a")
	v := dasherView(r.id, r.state)
	if v.GetId() != r.id || !v.GetOnline() || len(v.GetOffers()) != 2 || v.GetOffers()[0].GetOrderId() != "o_a" {
		t.Fatalf("view %v", v)
	}
	v.Offers[0].OrderId = "changed"
	if _, ok := r.state.GetOffers()["o_a"]; !ok || r.state.GetOffers()["o_a"].GetOrderId() != "o_a" {
		t.Error("the view shares the state")
	}
}
