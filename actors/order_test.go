package actors

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/messages"
)

// Pure decision tests of the Order: every cell of the transition table and of the cancellation matrix, the
// timers, payment settlement, validation, and who hears of each step.

var orderCfg = WorkflowConfig{}.withDefaults()

const (
	tOrder      = "o_1"
	tCustomer   = "c_1"
	tRestaurant = "r_1"
	tDasher     = "d_1"
	tOther      = "d_2"
)

var (
	tPickup  = &messages.Position{Lat: 37.7749, Lng: -122.4194}
	tDropoff = &messages.Position{Lat: 37.7800, Lng: -122.4100}
)

func validPlaceOrder() *messages.PlaceOrder {
	return &messages.PlaceOrder{
		CommandId:    "place-1",
		CustomerId:   tCustomer,
		RestaurantId: tRestaurant,
		Lines: []*messages.OrderLine{
			{MenuItemId: "m1", Name: "Pad thai", Quantity: 2, PriceCents: 1250},
			{MenuItemId: "m2", Name: "Spring rolls", Quantity: 1, PriceCents: 600},
		},
		Pickup:       tPickup,
		Dropoff:      tDropoff,
		PaymentToken: "tok_sim_ok_1",
	}
}

const tTotal = 2*1250 + 600

// orderOutput is a decision's output sorted the way the entity sees it.
type orderOutput struct {
	kind   []proto.Message         // the kind's events (folded by applyOrder)
	sends  []*messages.OutboxAdded // outbox
	set    map[string]time.Time    // TimerSet
	clears map[string]bool         // TimerCleared
	raw    []proto.Message         // everything, in order
}

func splitOrder(t testing.TB, events []proto.Message) orderOutput {
	t.Helper()
	d := orderOutput{set: map[string]time.Time{}, clears: map[string]bool{}, raw: events}
	for _, ev := range events {
		switch e := ev.(type) {
		case *messages.OutboxAdded:
			d.sends = append(d.sends, e)
		case *messages.TimerSet:
			d.set[e.GetName()] = e.GetDue().AsTime()
		case *messages.TimerCleared:
			d.clears[e.GetName()] = true
		case *messages.InboxAdvanced, *messages.OutboxAcked, *messages.TimerFired, *messages.FeedItem:
			t.Fatalf("a decision emitted the entity's own event %T", ev)
		default:
			d.kind = append(d.kind, ev)
		}
	}
	return d
}

// foldOrder applies the kind events of a decision to a copy of s, as the entity would.
func foldOrder(t testing.TB, s *messages.OrderState, events []proto.Message) *messages.OrderState {
	t.Helper()
	next := proto.Clone(s).(*messages.OrderState)
	for _, ev := range splitOrder(t, events).kind {
		if err := applyOrder(next, ev); err != nil {
			t.Fatalf("apply %T: %v", ev, err)
		}
	}
	return next
}

// orderRecipients lists the sends of a decision as "Kind/identity:payload type".
func orderRecipients(d orderOutput) []string {
	out := make([]string, 0, len(d.sends))
	for _, s := range d.sends {
		out = append(out, fmt.Sprintf("%s/%s:%s", s.GetToKind(), s.GetToIdentity(), strings.TrimPrefix(s.GetPayload().GetTypeUrl(), "type.googleapis.com/platter.")))
	}
	return out
}

// mustOrder runs a decision that must succeed and folds it into s.
func mustOrder(t testing.TB, s *messages.OrderState, events []proto.Message, err error) *messages.OrderState {
	t.Helper()
	if err != nil {
		t.Fatalf("decision refused: %v", err)
	}
	return foldOrder(t, s, events)
}

// orderIn returns an order in stage, built by running the decisions along the happy path (so these tests also
// exercise the fold). The cancelled order was cancelled by its restaurant while assigned to tDasher.
func orderIn(t testing.TB, stage orderStage) *messages.OrderState {
	t.Helper()
	now := testNow
	s := &messages.OrderState{}
	next := func(events []proto.Message, err error) {
		t.Helper()
		s = mustOrder(t, s, events, err)
	}
	if stage == stageAbsent {
		return s
	}
	if stage == stageRejected {
		next(decidePlaceOrder(s, tOrder, validPlaceOrder(), authorization{authID: "auth_1"}, orderCfg, now))
		next(decideRejectOrder(s, &messages.RejectOrder{CommandId: "x", RestaurantId: tRestaurant, Reason: "closing"}, orderCfg, now))
		return s
	}
	next(decidePlaceOrder(s, tOrder, validPlaceOrder(), authorization{authID: "auth_1"}, orderCfg, now))
	if stage == stagePending {
		return s
	}
	now = now.Add(time.Minute)
	next(decideAcceptOrder(s, &messages.AcceptOrder{CommandId: "a", RestaurantId: tRestaurant, PrepMinutes: 15}, orderCfg, now))
	switch stage {
	case stageAccepted:
		return s
	case stageReady:
		next(decideMarkReady(s, &messages.MarkOrderReady{CommandId: "r", RestaurantId: tRestaurant}, now.Add(time.Minute)))
		return s
	}
	now = now.Add(time.Minute)
	next(decideAssignDasher(s, &messages.AssignDasher{CommandId: "as", DasherId: tDasher}, now))
	switch stage {
	case stageAssigned:
		return s
	case stageCancelled:
		next(decideCancelOrder(s, &messages.CancelOrder{CommandId: "c", By: messages.CancelledBy_CANCELLED_BY_RESTAURANT, RequesterId: tRestaurant}, orderCfg, now))
		return s
	}
	now = now.Add(time.Minute)
	next(decideMarkReady(s, &messages.MarkOrderReady{CommandId: "r", RestaurantId: tRestaurant}, now))
	if stage == stageReadyAssigned {
		return s
	}
	now = now.Add(time.Minute)
	next(decideMarkPickedUp(s, &messages.MarkOrderPickedUp{CommandId: "p", RestaurantId: tRestaurant}, now))
	if stage == stagePickedUp {
		return s
	}
	now = now.Add(time.Minute)
	next(decideMarkDelivered(s, &messages.MarkOrderDelivered{CommandId: "d", DasherId: tDasher}, orderCfg, now))
	return s
}

// runOrderStep runs the decision of step on s with valid commands; dasher is the dasher the command names.
func runOrderStep(s *messages.OrderState, step orderStep, dasher string) ([]proto.Message, error) {
	now := testNow.Add(time.Hour)
	switch step {
	case stepPlace:
		return decidePlaceOrder(s, tOrder, validPlaceOrder(), authorization{authID: "auth_1"}, orderCfg, now)
	case stepPlaceDeclined:
		return decidePlaceOrder(s, tOrder, validPlaceOrder(), authorization{declined: "the card was declined"}, orderCfg, now)
	case stepAccept:
		return decideAcceptOrder(s, &messages.AcceptOrder{CommandId: "k", RestaurantId: tRestaurant, PrepMinutes: 10}, orderCfg, now)
	case stepReject:
		return decideRejectOrder(s, &messages.RejectOrder{CommandId: "k", RestaurantId: tRestaurant, Reason: "too busy"}, orderCfg, now)
	case stepMarkReady:
		return decideMarkReady(s, &messages.MarkOrderReady{CommandId: "k", RestaurantId: tRestaurant}, now)
	case stepMarkPickedUp:
		return decideMarkPickedUp(s, &messages.MarkOrderPickedUp{CommandId: "k", RestaurantId: tRestaurant}, now)
	case stepAssignDasher:
		return decideAssignDasher(s, &messages.AssignDasher{CommandId: "k", DasherId: dasher}, now)
	case stepReleaseDasher:
		return decideReleaseDasher(s, &messages.ReleaseDasher{CommandId: "k", DasherId: dasher, Reason: "flat tyre"}, orderCfg, now)
	case stepMarkDelivered:
		return decideMarkDelivered(s, &messages.MarkOrderDelivered{CommandId: "k", DasherId: dasher}, orderCfg, now)
	case stepAcceptTimeout:
		return decideOrderTimer(s, timerAccept, orderCfg, now)
	case stepDispatchTimeout:
		return decideOrderTimer(s, timerDispatch, orderCfg, now)
	}
	panic("unknown step")
}

// TestOrderStages checks that the builders land where they say, with the API status the table names.
func TestOrderStages(t *testing.T) {
	want := [numStages]string{"", "PENDING_ACCEPTANCE", "ACCEPTED", "DASHER_ASSIGNED", "READY_FOR_PICKUP",
		"READY_FOR_PICKUP", "PICKED_UP", "DELIVERED", "CANCELLED", "REJECTED"}
	for st := stageAbsent; st < numStages; st++ {
		s := orderIn(t, st)
		if got := stageOf(s); got != st {
			t.Errorf("orderIn(%s) is in stage %s", st, got)
		}
		if got := StatusName(s.GetStatus()); got != want[st] {
			t.Errorf("%s: status %q, want %q", st, got, want[st])
		}
	}
}

// The transition table and the cancellation matrix as the issue and the comment at the top of order.go state them,
// written independently of the code's tables: TestOrderTableSpec checks the code against them cell by cell.
var (
	wantTransitions = [numSteps]string{
		//                   absent     pending     accepted    assigned        ready        ready+d         picked up        delivered       cancelled rejected
		stepPlace:           "→pending   AE          AE          AE              AE           AE              AE               AE              AE        AE",
		stepPlaceDeclined:   "→rejected  AE          AE          AE              AE           AE              AE               AE              AE        AE",
		stepAccept:          "NF         →accepted   FP          FP              FP           FP              FP               FP              FP        FP",
		stepReject:          "NF         →rejected   FP          FP              FP           FP              FP               FP              FP        FP",
		stepMarkReady:       "NF         FP          →ready      →ready+d        FP           FP              FP               FP              FP        FP",
		stepMarkPickedUp:    "NF         FP          FP          FP              FP           →pickedup       FP               FP              FP        FP",
		stepAssignDasher:    "NF         FP          →assigned   own=/OT         →ready+d     own=/OT         own=/OT          own=/OT         OE        OE",
		stepReleaseDasher:   "NF         NF          NF          own→accepted/NF NF           own→ready/NF    ownFP/NF         ownFP/NF        own=/NF   NF",
		stepMarkDelivered:   "NF         NF          NF          ownFP/NF        NF           ownFP/NF        own→delivered/NF own=/NF         ownFP/NF  NF",
		stepAcceptTimeout:   "=          →cancelled  =           =               =            =               =                =               =         =",
		stepDispatchTimeout: "=          =           →cancelled  =               →cancelled   =               =                =               =         =",
	}
	wantCancellations = map[messages.CancelledBy]string{
		//                                            absent pending accepted assigned ready ready+d pickedup delivered cancelled rejected
		messages.CancelledBy_CANCELLED_BY_CUSTOMER:   "placing full   share    none     share none    NC       NC        NC        NC",
		messages.CancelledBy_CANCELLED_BY_RESTAURANT: "NF     full    full     full     full  full    NC       NC        NC        NC",
		messages.CancelledBy_CANCELLED_BY_SYSTEM:     "NF     full    full     NC       full  NC      NC       NC        NC        NC",
	}
	specStages = map[string]orderStage{"pending": stagePending, "accepted": stageAccepted, "assigned": stageAssigned,
		"ready": stageReady, "ready+d": stageReadyAssigned, "pickedup": stagePickedUp, "delivered": stageDelivered,
		"cancelled": stageCancelled, "rejected": stageRejected}
	specCodes = map[string]messages.ErrorReason{"NF": nf, "AE": ae, "FP": fp, "OT": ot, "OE": oe, "NC": nc}
)

// specCell parses one cell of wantTransitions in column from.
func specCell(t *testing.T, cell string, from orderStage) transition {
	t.Helper()
	var tr transition
	if rest, ok := strings.CutPrefix(cell, "own"); ok {
		tr.own = true
		target, code, _ := strings.Cut(rest, "/")
		tr.code = specCodes[code]
		cell = target
		if tr.code == 0 {
			t.Fatalf("bad cell %q", cell)
		}
		if ownCode, ok := specCodes[target]; ok { // "ownFP/NF": the order's dasher is refused too
			tr.ownCode = ownCode
			return tr
		}
	}
	switch {
	case cell == "=":
		tr.to = from
	case strings.HasPrefix(cell, "→"):
		st, ok := specStages[strings.TrimPrefix(cell, "→")]
		if !ok {
			t.Fatalf("bad cell %q", cell)
		}
		tr.to = st
	default:
		code, ok := specCodes[cell]
		if !ok || tr.own {
			t.Fatalf("bad cell %q", cell)
		}
		tr.code = code
	}
	return tr
}

func TestOrderTableSpec(t *testing.T) {
	for step := orderStep(0); step < numSteps; step++ {
		cells := strings.Fields(wantTransitions[step])
		if len(cells) != int(numStages) {
			t.Fatalf("%s: %d cells in the spec", step, len(cells))
		}
		for from := stageAbsent; from < numStages; from++ {
			if want, got := specCell(t, cells[from], from), orderTransitions[step][from]; want != got {
				t.Errorf("%s in %s: table has %+v, spec says %q", step, from, got, cells[from])
			}
		}
	}
	policies := map[string]cancelRule{"full": full, "share": share, "none": none, "placing": {refund: refundFull, placing: true}}
	for by, row := range wantCancellations {
		cells := strings.Fields(row)
		for from := stageAbsent; from < numStages; from++ {
			want, ok := policies[cells[from]]
			if !ok {
				want = cancelRule{code: specCodes[cells[from]]}
			}
			if got := cancellationMatrix[by][from]; got != want {
				t.Errorf("cancel by %s in %s: matrix has %+v, spec says %q", by, from, got, cells[from])
			}
		}
	}
}

// TestOrderTransitionTable runs every cell of the transition table: a refused cell answers its code and emits
// nothing; an allowed cell moves to its target stage (after the fold) or, when the target is the same stage,
// emits nothing. Cells for the order's own dasher are also run with another dasher, which must be refused.
func TestOrderTransitionTable(t *testing.T) {
	for step := orderStep(0); step < numSteps; step++ {
		for from := stageAbsent; from < numStages; from++ {
			cell := orderTransitions[step][from]
			t.Run(fmt.Sprintf("%s/%s", step, from), func(t *testing.T) {
				if !cell.refused() && cell.ownCode == 0 && cell.to == stageAbsent && from != stageAbsent {
					t.Fatalf("cell %+v is unset (moves to absent)", cell)
				}
				s := orderIn(t, from)
				before := proto.Clone(s)
				events, err := runOrderStep(s, step, tDasher)
				if !proto.Equal(s, before) {
					t.Fatal("the decision modified the state")
				}
				if cell.own && cell.ownCode != 0 && s.GetDasherId() == tDasher {
					if got := codeOf(t, err); got != cell.ownCode || len(events) > 0 {
						t.Fatalf("the order's dasher: got %s with %d events, want refused %s", got, len(events), cell.ownCode)
					}
				} else {
					checkOrderCell(t, s, from, cell, events, err)
				}
				if cell.own {
					events, err := runOrderStep(s, step, tOther)
					if got := codeOf(t, err); got != cell.code || len(events) > 0 {
						t.Errorf("another dasher: got %s with %d events, want %s", got, len(events), cell.code)
					}
				}
			})
		}
	}
}

func checkOrderCell(t *testing.T, s *messages.OrderState, from orderStage, cell transition, events []proto.Message, err error) {
	t.Helper()
	if cell.refused() {
		if got := codeOf(t, err); got != cell.code || len(events) > 0 {
			t.Fatalf("got %s with %d events, want refused %s", got, len(events), cell.code)
		}
		return
	}
	if err != nil {
		t.Fatalf("refused (%v), want allowed → %s", err, cell.to)
	}
	if cell.to == from {
		if len(events) > 0 {
			t.Fatalf("allowed without change, but emitted %d events", len(events))
		}
		return
	}
	if len(events) == 0 {
		t.Fatalf("no events, want → %s", cell.to)
	}
	if got := stageOf(foldOrder(t, s, events)); got != cell.to {
		t.Fatalf("moved to %s, want %s", got, cell.to)
	}
}

// TestCancellationMatrix runs every cell of the cancellation matrix: the customer and the restaurant through
// decideCancelOrder, the system through the timer that cancels in that stage (or, where no timer would fire, the
// matrix's own function).
func TestCancellationMatrix(t *testing.T) {
	cfg := orderCfg
	cfg.CancelRefundShare = 0.3
	bys := []messages.CancelledBy{messages.CancelledBy_CANCELLED_BY_CUSTOMER, messages.CancelledBy_CANCELLED_BY_RESTAURANT,
		messages.CancelledBy_CANCELLED_BY_SYSTEM}
	if len(cancellationMatrix) != len(bys) {
		t.Fatalf("the matrix has %d rows", len(cancellationMatrix))
	}
	for _, by := range bys {
		for from := stageAbsent; from < numStages; from++ {
			rule := cancellationMatrix[by][from]
			t.Run(fmt.Sprintf("%s/%s", strings.TrimPrefix(by.String(), "CANCELLED_BY_"), from), func(t *testing.T) {
				s := orderIn(t, from)
				now := testNow.Add(time.Hour)
				var events []proto.Message
				var err error
				switch by {
				case messages.CancelledBy_CANCELLED_BY_SYSTEM:
					events, err = cancel(s, by, "timeout", cfg, now)
				default:
					requester := tCustomer
					if by == messages.CancelledBy_CANCELLED_BY_RESTAURANT {
						requester = tRestaurant
					}
					events, err = decideCancelOrder(s, &messages.CancelOrder{CommandId: "k", By: by, RequesterId: requester, Reason: " changed my mind "}, cfg, now)
				}
				if rule.placing { // without the waiting placement in hand: NOT_FOUND (TestCancelPlacement)
					if got := codeOf(t, err); got != nf || len(events) > 0 {
						t.Fatalf("got %s with %d events, want refused NOT_FOUND", got, len(events))
					}
					return
				}
				if rule.code != 0 {
					if got := codeOf(t, err); got != rule.code || len(events) > 0 {
						t.Fatalf("got %s with %d events, want refused %s", got, len(events), rule.code)
					}
					return
				}
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				wantRefund := map[refundPolicy]int64{refundFull: tTotal, refundShare: int64(math.Round(tTotal * 0.3)), refundNone: 0}[rule.refund]
				d := splitOrder(t, events)
				after := foldOrder(t, s, events)
				if stageOf(after) != stageCancelled || after.GetRefundCents() != wantRefund || after.GetCancelledBy() != by {
					t.Fatalf("after: stage %s, refund %d (want %d), by %s", stageOf(after), after.GetRefundCents(), wantRefund, after.GetCancelledBy())
				}
				if by != messages.CancelledBy_CANCELLED_BY_SYSTEM && after.GetReason() != "changed my mind" {
					t.Errorf("reason %q", after.GetReason())
				}
				// The payment: a void for a full refund, else a capture of the rest.
				pending := after.GetPayment().GetPending()
				if len(pending) != 1 {
					t.Fatalf("pending payment actions: %v", pending)
				}
				a := pending[0]
				switch {
				case wantRefund == tTotal && (a.GetKind() != messages.PaymentActionKind_PAYMENT_ACTION_VOID || a.GetId() != tOrder+"/void"):
					t.Errorf("full refund: action %v", a)
				case wantRefund < tTotal && (a.GetKind() != messages.PaymentActionKind_PAYMENT_ACTION_CAPTURE || a.GetAmountCents() != tTotal-wantRefund):
					t.Errorf("refund %d: action %v", wantRefund, a)
				}
				if _, ok := d.set[timerPayment]; !ok {
					t.Error("no payment timer")
				}
				// Timers: the SLA timer of the stage is cleared.
				switch from {
				case stagePending:
					if !d.clears[timerAccept] {
						t.Error("accept timer not cleared")
					}
				case stageAccepted, stageReady:
					if !d.clears[timerDispatch] {
						t.Error("dispatch timer not cleared")
					}
				}
				// Everyone involved so far hears of it.
				want := []string{"Customer/c_1:OrderCancelled", "Restaurant/r_1:OrderCancelled"}
				if from != stagePending {
					want = append(want, "Area/"+AreaOf(tPickup)+":OrderCancelled")
				}
				if s.GetDasherId() != "" {
					want = append(want, "Dasher/d_1:OrderCancelled")
				}
				if got := orderRecipients(d); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("sends %v, want %v", got, want)
				}
			})
		}
	}
}

// TestOrderTimers: the SLA timers cancel through the system row of the matrix only where the transition table
// says so, with a full refund; a stale firing changes nothing; the payment timer only wakes the grain.
func TestOrderTimers(t *testing.T) {
	for _, c := range []struct {
		timer string
		step  orderStep
	}{{timerAccept, stepAcceptTimeout}, {timerDispatch, stepDispatchTimeout}} {
		for from := stageAbsent; from < numStages; from++ {
			s := orderIn(t, from)
			events, err := decideOrderTimer(s, c.timer, orderCfg, testNow.Add(time.Hour))
			if err != nil {
				t.Fatalf("%s in %s: %v", c.timer, from, err)
			}
			if !orderTransitions[c.step][from].moves(from) {
				if len(events) > 0 {
					t.Errorf("%s in %s: %d events from a stale timer", c.timer, from, len(events))
				}
				continue
			}
			after := foldOrder(t, s, events)
			if after.GetCancelledBy() != messages.CancelledBy_CANCELLED_BY_SYSTEM || after.GetRefundCents() != tTotal || after.GetReason() == "" {
				t.Errorf("%s in %s: %v", c.timer, from, after)
			}
			if cancellationMatrix[messages.CancelledBy_CANCELLED_BY_SYSTEM][from].code != 0 {
				t.Errorf("%s cancels in %s, which the matrix refuses to the system", c.timer, from)
			}
		}
	}
	if events, err := decideOrderTimer(orderIn(t, stageDelivered), timerPayment, orderCfg, testNow); err != nil || len(events) > 0 {
		t.Errorf("payment timer: %v, %v", events, err)
	}
	if _, err := decideOrderTimer(orderIn(t, stagePending), "bogus", orderCfg, testNow); err == nil {
		t.Error("an unknown timer was accepted")
	}
}

// TestOrderTimerSettings: Place sets the accept timer at AcceptSLA; Accept clears it and sets the dispatch timer
// at DispatchSLA; AssignDasher clears it; ReleaseDasher sets it again.
func TestOrderTimerSettings(t *testing.T) {
	cfg := orderCfg
	cfg.AcceptSLA, cfg.DispatchSLA = 7*time.Minute, 11*time.Minute
	now := testNow
	events, err := decidePlaceOrder(&messages.OrderState{}, tOrder, validPlaceOrder(), authorization{authID: "a"}, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	d := splitOrder(t, events)
	if !d.set[timerAccept].Equal(now.Add(7*time.Minute)) || len(d.set) != 1 || len(d.clears) != 0 {
		t.Errorf("place: set %v cleared %v", d.set, d.clears)
	}
	s := foldOrder(t, &messages.OrderState{}, events)
	if !s.GetAcceptBy().AsTime().Equal(now.Add(7 * time.Minute)) {
		t.Errorf("accept_by %v", s.GetAcceptBy().AsTime())
	}
	events, err = decideAcceptOrder(s, &messages.AcceptOrder{CommandId: "a", RestaurantId: tRestaurant, PrepMinutes: 5}, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	d = splitOrder(t, events)
	if !d.clears[timerAccept] || !d.set[timerDispatch].Equal(now.Add(11*time.Minute)) {
		t.Errorf("accept: set %v cleared %v", d.set, d.clears)
	}
	s = foldOrder(t, s, events)
	events, _ = decideAssignDasher(s, &messages.AssignDasher{CommandId: "b", DasherId: tDasher}, now)
	if d = splitOrder(t, events); !d.clears[timerDispatch] {
		t.Errorf("assign: cleared %v", d.clears)
	}
	s = foldOrder(t, s, events)
	later := now.Add(3 * time.Minute)
	events, _ = decideReleaseDasher(s, &messages.ReleaseDasher{CommandId: "c", DasherId: tDasher}, cfg, later)
	if d = splitOrder(t, events); !d.set[timerDispatch].Equal(later.Add(11 * time.Minute)) {
		t.Errorf("release: set %v", d.set)
	}
}

// TestOrderSends: who hears of each step (the table at the top of order.go).
func TestOrderSends(t *testing.T) {
	area := AreaOf(tPickup)
	cases := []struct {
		name  string
		from  orderStage
		step  orderStep
		sends []string
	}{
		{"place", stageAbsent, stepPlace, []string{"Restaurant/r_1:OrderPlaced", "Customer/c_1:OrderPlaced"}},
		{"place declined", stageAbsent, stepPlaceDeclined, []string{"Customer/c_1:OrderRejected"}},
		{"accept", stagePending, stepAccept, []string{"Area/" + area + ":OrderAccepted", "Customer/c_1:OrderAccepted", "Restaurant/r_1:OrderAccepted"}},
		{"reject", stagePending, stepReject, []string{"Customer/c_1:OrderRejected", "Restaurant/r_1:OrderRejected"}},
		{"ready without dasher", stageAccepted, stepMarkReady, []string{"Customer/c_1:FoodReady", "Restaurant/r_1:FoodReady"}},
		{"ready with dasher", stageAssigned, stepMarkReady, []string{"Customer/c_1:FoodReady", "Dasher/d_1:FoodReady", "Restaurant/r_1:FoodReady"}},
		{"assign", stageAccepted, stepAssignDasher, []string{"Customer/c_1:DasherAssigned", "Restaurant/r_1:DasherAssigned",
			"Dasher/d_1:DasherAssigned", "Area/" + area + ":DasherAssigned"}},
		{"assign when ready", stageReady, stepAssignDasher, []string{"Customer/c_1:DasherAssigned", "Restaurant/r_1:DasherAssigned",
			"Dasher/d_1:DasherAssigned", "Area/" + area + ":DasherAssigned", "Dasher/d_1:FoodReady"}},
		{"release", stageAssigned, stepReleaseDasher, []string{"Customer/c_1:DasherReleased", "Restaurant/r_1:DasherReleased", "Area/" + area + ":DasherReleased", "Dasher/d_1:DasherReleased"}},
		{"picked up", stageReadyAssigned, stepMarkPickedUp, []string{"Customer/c_1:OrderPickedUp", "Restaurant/r_1:OrderPickedUp"}},
		{"delivered", stagePickedUp, stepMarkDelivered, []string{"Restaurant/r_1:OrderDelivered", "Customer/c_1:OrderDelivered", "Dasher/d_1:OrderDelivered"}},
		{"accept timeout", stagePending, stepAcceptTimeout, []string{"Customer/c_1:OrderCancelled", "Restaurant/r_1:OrderCancelled"}},
		{"dispatch timeout", stageAccepted, stepDispatchTimeout, []string{"Customer/c_1:OrderCancelled", "Restaurant/r_1:OrderCancelled", "Area/" + area + ":OrderCancelled"}},
	}
	for _, c := range cases {
		events, err := runOrderStep(orderIn(t, c.from), c.step, tDasher)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := orderRecipients(splitOrder(t, events)); strings.Join(got, " ") != strings.Join(c.sends, " ") {
			t.Errorf("%s: sends %v, want %v", c.name, got, c.sends)
		}
	}
}

// TestOrderBothFacts: the food may be ready before a dasher is assigned; the order keeps both facts.
func TestOrderBothFacts(t *testing.T) {
	s := orderIn(t, stageReady)
	if s.GetKitchen() != messages.KitchenStatus_KITCHEN_READY || s.GetDelivery() != messages.DeliveryStatus_DELIVERY_DISPATCHING {
		t.Fatalf("ready first: kitchen %s delivery %s", s.GetKitchen(), s.GetDelivery())
	}
	events, err := decideAssignDasher(s, &messages.AssignDasher{CommandId: "x", DasherId: tDasher}, testNow)
	s = mustOrder(t, s, events, err)
	if s.GetKitchen() != messages.KitchenStatus_KITCHEN_READY || s.GetDelivery() != messages.DeliveryStatus_DELIVERY_ASSIGNED ||
		StatusName(s.GetStatus()) != "READY_FOR_PICKUP" || s.GetDasherId() != tDasher {
		t.Fatalf("then assigned: %s / %s / %s / %q", s.GetKitchen(), s.GetDelivery(), s.GetStatus(), s.GetDasherId())
	}
	var types []string
	for _, e := range s.GetTimeline() {
		types = append(types, e.GetType())
	}
	if got := strings.Join(types, " "); got != "ORDER_PLACED ORDER_ACCEPTED FOOD_READY DASHER_ASSIGNED" {
		t.Errorf("timeline %s", got)
	}
	// The release of the dasher keeps the food ready.
	events, err = decideReleaseDasher(s, &messages.ReleaseDasher{CommandId: "y", DasherId: tDasher}, orderCfg, testNow)
	s = mustOrder(t, s, events, err)
	if stageOf(s) != stageReady || s.GetDasherId() != "" || s.GetDelivery() != messages.DeliveryStatus_DELIVERY_DISPATCHING {
		t.Errorf("after release: %s %q %s", stageOf(s), s.GetDasherId(), s.GetDelivery())
	}
	if last := s.GetTimeline()[len(s.GetTimeline())-1]; last.GetType() != "DASHER_RELEASED" || !last.GetAt().AsTime().Equal(testNow) {
		t.Errorf("timeline ends with %v", last)
	}
}

func TestDecidePlaceOrder(t *testing.T) {
	events, err := decidePlaceOrder(&messages.OrderState{}, tOrder, validPlaceOrder(), authorization{authID: "auth_9"}, orderCfg, testNow)
	s := mustOrder(t, &messages.OrderState{}, events, err)
	if s.GetOrderId() != tOrder || s.GetTotalCents() != tTotal || s.GetArea() != AreaOf(tPickup) || len(s.GetLines()) != 2 ||
		s.GetPayment().GetAuthId() != "auth_9" || s.GetPayment().GetAuthorizedCents() != tTotal || s.GetPayment().GetToken() != "tok_sim_ok_1" ||
		!s.GetPlacedAt().AsTime().Equal(testNow) || s.GetKitchen() != messages.KitchenStatus_KITCHEN_PENDING ||
		s.GetDelivery() != messages.DeliveryStatus_DELIVERY_WAITING {
		t.Errorf("placed: %v", s)
	}
	if v := orderView(s, nil); v.GetStatus() != "PENDING_ACCEPTANCE" || v.GetPayment().GetStatus() != "AUTHORIZED" || v.GetKitchenStatus() != "PENDING" || v.GetDeliveryStatus() != "WAITING" {
		t.Errorf("view: %v", v)
	}

	events, err = decidePlaceOrder(&messages.OrderState{}, tOrder, validPlaceOrder(), authorization{declined: "the card was declined"}, orderCfg, testNow)
	s = mustOrder(t, &messages.OrderState{}, events, err)
	if s.GetStatus() != messages.OrderStatus_ORDER_STATUS_REJECTED || s.GetReason() != ReasonPaymentDeclined || !s.GetPayment().GetDeclined() ||
		s.GetPayment().GetAuthId() != "" || len(splitOrder(t, events).set) != 0 {
		t.Errorf("declined: %v", s)
	}
	if v := orderView(s, nil); v.GetPayment().GetStatus() != "DECLINED" {
		t.Errorf("declined view: %v", v.GetPayment())
	}

	with := func(edit func(c *messages.PlaceOrder)) *messages.PlaceOrder {
		c := validPlaceOrder()
		edit(c)
		return c
	}
	manyLines := make([]*messages.OrderLine, MaxOrderLines+1)
	for i := range manyLines {
		manyLines[i] = &messages.OrderLine{MenuItemId: fmt.Sprintf("m%d", i), Name: "x", Quantity: 1, PriceCents: 1}
	}
	invalid := map[string]*messages.PlaceOrder{
		"no customer":      with(func(c *messages.PlaceOrder) { c.CustomerId = "" }),
		"padded customer":  with(func(c *messages.PlaceOrder) { c.CustomerId = " c_1" }),
		"long restaurant":  with(func(c *messages.PlaceOrder) { c.RestaurantId = strings.Repeat("r", MaxIDLen+1) }),
		"no lines":         with(func(c *messages.PlaceOrder) { c.Lines = nil }),
		"too many lines":   with(func(c *messages.PlaceOrder) { c.Lines = manyLines }),
		"no item id":       with(func(c *messages.PlaceOrder) { c.Lines[0].MenuItemId = "" }),
		"duplicate item":   with(func(c *messages.PlaceOrder) { c.Lines[1].MenuItemId = "m1" }),
		"no item name":     with(func(c *messages.PlaceOrder) { c.Lines[0].Name = " " }),
		"quantity 0":       with(func(c *messages.PlaceOrder) { c.Lines[0].Quantity = 0 }),
		"quantity 100":     with(func(c *messages.PlaceOrder) { c.Lines[0].Quantity = MaxLineQuantity + 1 }),
		"free item":        with(func(c *messages.PlaceOrder) { c.Lines[0].PriceCents = 0 }),
		"price too high":   with(func(c *messages.PlaceOrder) { c.Lines[0].PriceCents = MaxPriceCents + 1 }),
		"no pickup":        with(func(c *messages.PlaceOrder) { c.Pickup = nil }),
		"pickup off map":   with(func(c *messages.PlaceOrder) { c.Pickup = &messages.Position{Lat: 91} }),
		"no dropoff":       with(func(c *messages.PlaceOrder) { c.Dropoff = nil }),
		"dropoff NaN":      with(func(c *messages.PlaceOrder) { c.Dropoff = &messages.Position{Lng: math.NaN()} }),
		"no payment token": with(func(c *messages.PlaceOrder) { c.PaymentToken = "" }),
	}
	for name, c := range invalid {
		for _, st := range []orderStage{stageAbsent, stagePending} { // validation comes before the state
			if _, err := decidePlaceOrder(orderIn(t, st), tOrder, c, authorization{authID: "a"}, orderCfg, testNow); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
				t.Errorf("%s (%s): %v", name, st, err)
			}
		}
		if err := checkPlaceOrder(&messages.OrderState{}, c); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Errorf("checkPlaceOrder %s: %v", name, err)
		}
	}
	if err := checkPlaceOrder(&messages.OrderState{}, validPlaceOrder()); err != nil {
		t.Errorf("checkPlaceOrder: %v", err)
	}
	if err := checkPlaceOrder(orderIn(t, stagePending), validPlaceOrder()); codeOf(t, err) != messages.ErrorReason_ALREADY_EXISTS {
		t.Errorf("checkPlaceOrder on an existing order: %v", err)
	}
	// The largest order within the limits does not overflow.
	big := with(func(c *messages.PlaceOrder) { c.Lines = manyLines[:MaxOrderLines] })
	for _, l := range big.GetLines() {
		l.Quantity, l.PriceCents = MaxLineQuantity, MaxPriceCents
	}
	if got := orderTotal(big.GetLines()); got != int64(MaxOrderLines)*MaxLineQuantity*MaxPriceCents {
		t.Errorf("largest total %d", got)
	}
}

// TestOrderCommandValidation: invalid commands are refused INVALID_ARGUMENT in every stage, and a restaurant or
// customer that is not the order's gets NOT_FOUND.
func TestOrderCommandValidation(t *testing.T) {
	type tc struct {
		name   string
		decide func(s *messages.OrderState) ([]proto.Message, error)
		want   messages.ErrorReason
	}
	cfg, now := orderCfg, testNow
	cases := []tc{
		{"accept: no restaurant", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideAcceptOrder(s, &messages.AcceptOrder{RestaurantId: "", PrepMinutes: 5}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"accept: prep 0", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideAcceptOrder(s, &messages.AcceptOrder{RestaurantId: tRestaurant, PrepMinutes: 0}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"accept: prep too long", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideAcceptOrder(s, &messages.AcceptOrder{RestaurantId: tRestaurant, PrepMinutes: MaxPrepMinutes + 1}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"reject: long reason", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideRejectOrder(s, &messages.RejectOrder{RestaurantId: tRestaurant, Reason: strings.Repeat("x", MaxReasonLen+1)}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"ready: no restaurant", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideMarkReady(s, &messages.MarkOrderReady{}, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"picked up: no restaurant", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideMarkPickedUp(s, &messages.MarkOrderPickedUp{}, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"assign: no dasher", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideAssignDasher(s, &messages.AssignDasher{}, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"release: no dasher", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideReleaseDasher(s, &messages.ReleaseDasher{}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"release: bad reason", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideReleaseDasher(s, &messages.ReleaseDasher{DasherId: tDasher, Reason: "\xff"}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"delivered: no dasher", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideMarkDelivered(s, &messages.MarkOrderDelivered{}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"cancel: by nobody", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{RequesterId: tCustomer}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"cancel: by the system from outside", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_SYSTEM, RequesterId: "x"}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
		{"cancel: no requester", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_CUSTOMER}, cfg, now)
		}, messages.ErrorReason_INVALID_ARGUMENT},
	}
	for _, c := range cases {
		for st := stageAbsent; st < numStages; st++ {
			if _, err := c.decide(orderIn(t, st)); codeOf(t, err) != c.want {
				t.Errorf("%s (%s): %v", c.name, st, err)
			}
		}
	}
	// Another restaurant or customer: NOT_FOUND, in every stage the order exists.
	others := []tc{
		{"accept", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideAcceptOrder(s, &messages.AcceptOrder{RestaurantId: "r_2", PrepMinutes: 5}, cfg, now)
		}, nf},
		{"reject", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideRejectOrder(s, &messages.RejectOrder{RestaurantId: "r_2"}, cfg, now)
		}, nf},
		{"ready", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideMarkReady(s, &messages.MarkOrderReady{RestaurantId: "r_2"}, now)
		}, nf},
		{"picked up", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideMarkPickedUp(s, &messages.MarkOrderPickedUp{RestaurantId: "r_2"}, now)
		}, nf},
		{"cancel by another customer", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: "c_2"}, cfg, now)
		}, nf},
		{"cancel by another restaurant", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_RESTAURANT, RequesterId: "r_2"}, cfg, now)
		}, nf},
		{"cancel by the customer's id as restaurant", func(s *messages.OrderState) ([]proto.Message, error) {
			return decideCancelOrder(s, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_RESTAURANT, RequesterId: tCustomer}, cfg, now)
		}, nf},
	}
	for _, c := range others {
		for st := stagePending; st < numStages; st++ {
			if _, err := c.decide(orderIn(t, st)); codeOf(t, err) != c.want {
				t.Errorf("%s (%s): %v", c.name, st, err)
			}
		}
	}
}

// TestOrderPayment: the payment actions of delivery and rejection, and the outcomes of settlement attempts.
func TestOrderPayment(t *testing.T) {
	cfg := orderCfg
	cfg.PaymentRetryMin, cfg.PaymentRetryMax = time.Second, 5*time.Second
	s := orderIn(t, stageDelivered)
	pending := s.GetPayment().GetPending()
	if len(pending) != 1 || pending[0].GetKind() != messages.PaymentActionKind_PAYMENT_ACTION_CAPTURE || pending[0].GetAmountCents() != tTotal || pending[0].GetId() != tOrder+"/capture" {
		t.Fatalf("delivered: pending %v", pending)
	}
	if v := orderView(s, nil); v.GetPayment().GetStatus() != "SETTLING" {
		t.Errorf("view while settling: %v", v.GetPayment())
	}
	now := testNow.Add(time.Hour)
	if due := duePayments(s, now); len(due) != 1 {
		t.Fatalf("due: %v", due)
	}
	// Transient failures back off: 1 s, 2 s, 4 s, 5 s (capped).
	id := pending[0].GetId()
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		events := decidePaymentOutcome(s, id, fmt.Errorf("capture: %w", ErrPaymentUnavailable), cfg, now)
		d := splitOrder(t, events)
		if !d.set[timerPayment].Equal(now.Add(wait)) {
			t.Fatalf("attempt %d: timer %v, want +%v", i+1, d.set[timerPayment], wait)
		}
		s = foldOrder(t, s, events)
		a := s.GetPayment().GetPending()[0]
		if a.GetAttempts() != int32(i+1) || !a.GetNextAttemptAt().AsTime().Equal(now.Add(wait)) || a.GetLastError() == "" {
			t.Fatalf("attempt %d: %v", i+1, a)
		}
		if len(duePayments(s, now)) != 0 || len(duePayments(s, now.Add(wait))) != 1 {
			t.Fatalf("attempt %d: due before its time", i+1)
		}
	}
	events := decidePaymentOutcome(s, id, nil, cfg, now)
	if d := splitOrder(t, events); !d.clears[timerPayment] {
		t.Errorf("settled: timer not cleared: %v", d.raw)
	}
	s = foldOrder(t, s, events)
	if p := s.GetPayment(); len(p.GetPending()) != 0 || p.GetCapturedCents() != tTotal || p.GetReleasedCents() != 0 {
		t.Errorf("captured: %v", p)
	}
	if v := orderView(s, nil); v.GetPayment().GetStatus() != "CAPTURED" || v.GetPayment().GetCapturedCents() != tTotal {
		t.Errorf("view: %v", v.GetPayment())
	}
	if events := decidePaymentOutcome(s, id, nil, cfg, now); len(events) != 0 {
		t.Errorf("a second outcome of a settled action: %v", events)
	}

	// Rejection voids; a void that the gateway refuses for good is recorded as failed.
	r := orderIn(t, stageRejected)
	a := r.GetPayment().GetPending()[0]
	if a.GetKind() != messages.PaymentActionKind_PAYMENT_ACTION_VOID || r.GetRefundCents() != tTotal {
		t.Fatalf("rejected: %v", r)
	}
	voided := foldOrder(t, r, decidePaymentOutcome(r, a.GetId(), nil, cfg, now))
	if voided.GetPayment().GetReleasedCents() != tTotal || orderView(voided, nil).GetPayment().GetStatus() != "VOIDED" {
		t.Errorf("voided: %v", voided.GetPayment())
	}
	failed := foldOrder(t, r, decidePaymentOutcome(r, a.GetId(), refuse(messages.ErrorReason_FAILED_PRECONDITION, "captured"), cfg, now))
	if p := failed.GetPayment(); len(p.GetPending()) != 0 || len(p.GetFailed()) != 1 || orderView(failed, nil).GetPayment().GetStatus() != "FAILED" {
		t.Errorf("failed: %v", p)
	}

	// A partial refund captures the rest.
	c := orderIn(t, stageAccepted)
	events, err := decideCancelOrder(c, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: tCustomer}, cfg, now)
	c = mustOrder(t, c, events, err)
	a = c.GetPayment().GetPending()[0]
	c = foldOrder(t, c, decidePaymentOutcome(c, a.GetId(), nil, cfg, now))
	half := int64(math.Round(tTotal * DefaultCancelRefundShare))
	if p := c.GetPayment(); p.GetCapturedCents() != tTotal-half || p.GetReleasedCents() != half || c.GetRefundCents() != half {
		t.Errorf("partial refund: %v refund %d", p, c.GetRefundCents())
	}

	// A declined order owes nothing.
	declined := foldOrder(t, &messages.OrderState{}, mustOrderEvents(t)(decidePlaceOrder(&messages.OrderState{}, tOrder, validPlaceOrder(), authorization{declined: "no"}, cfg, now)))
	if settlement(declined, 0, cfg, now) != nil {
		t.Error("settlement of a declined order")
	}
}

func mustOrderEvents(t *testing.T) func([]proto.Message, error) []proto.Message {
	return func(events []proto.Message, err error) []proto.Message {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return events
	}
}

func TestRefundShare(t *testing.T) {
	for _, c := range []struct {
		share float64
		want  int64
	}{{0, 500}, {0.25, 250}, {-1, 0}, {2, 1000}, {1, 1000}, {0.3333, 333}} {
		cfg := WorkflowConfig{CancelRefundShare: c.share}.withDefaults()
		if got := refundFor(share, 1000, cfg); got != c.want {
			t.Errorf("share %v: %d, want %d", c.share, got, c.want)
		}
	}
	if refundFor(full, 1000, orderCfg) != 1000 || refundFor(none, 1000, orderCfg) != 0 {
		t.Error("full or none")
	}
}

func TestOrderFoldRefusesUnknownEvents(t *testing.T) {
	if err := applyOrder(&messages.OrderState{}, &messages.RestaurantCreated{}); err == nil {
		t.Error("a foreign event was folded")
	}
}

func TestStatusName(t *testing.T) {
	if StatusName(messages.OrderStatus_ORDER_STATUS_READY_FOR_PICKUP) != "READY_FOR_PICKUP" || StatusName(0) != "" {
		t.Error("StatusName")
	}
	var e *Error
	if err := stepRefusal(orderIn(t, stageDelivered), stepAccept, ""); !errors.As(err, &e) || !strings.Contains(e.Message, "DELIVERED") {
		t.Errorf("refusal message: %v", err)
	}
}

// TestOrderStatusView: the Status answer holds what the edge used to read from the whole view for GET
// /v1/orders/{id}/status — id, status, updated_at — and for its ownership check — customer, restaurant,
// dasher — in every stage, a released dasher and a declined payment included.
func TestOrderStatusView(t *testing.T) {
	states := map[string]*messages.OrderState{}
	for st := stageAbsent + 1; st < numStages; st++ {
		states[stageNames[st]] = orderIn(t, st)
	}
	assigned := orderIn(t, stageAssigned)
	events, err := runOrderStep(assigned, stepReleaseDasher, tDasher)
	states["released"] = mustOrder(t, assigned, events, err)
	events, err = runOrderStep(&messages.OrderState{}, stepPlaceDeclined, "")
	states["declined"] = mustOrder(t, &messages.OrderState{}, events, err)
	for name, s := range states {
		t.Run(name, func(t *testing.T) {
			v := orderView(s, nil)
			want := &messages.OrderStatusView{Id: v.GetId(), Status: v.GetStatus(), UpdatedAt: v.GetUpdatedAt(),
				CustomerId: v.GetCustomerId(), RestaurantId: v.GetRestaurantId(), DasherId: v.GetDasherId()}
			got := orderStatusView(s)
			if !proto.Equal(got, want) {
				t.Fatalf("status view %v, want %v", got, want)
			}
			// The edge takes an answer without a customer for one from an older node.
			if got.GetCustomerId() != tCustomer || got.GetRestaurantId() != tRestaurant || got.GetUpdatedAt() == nil {
				t.Fatalf("status view %v lacks the parties or updated_at", got)
			}
		})
	}
	if d := orderStatusView(states["assigned"]).GetDasherId(); d != tDasher {
		t.Errorf("assigned order answers dasher %q", d)
	}
	if d := orderStatusView(states["released"]).GetDasherId(); d != "" {
		t.Errorf("released order answers dasher %q", d)
	}
	// The answer is a copy: a caller changing it leaves the state alone.
	s := states["delivered"]
	before := proto.Clone(s)
	orderStatusView(s).GetUpdatedAt().Seconds++
	if !proto.Equal(s, before) {
		t.Error("the status view shares the state's updated_at")
	}
}

// BenchmarkOrderAnswer: the answer of Get (the whole view, copied) against the answer of Status, for a delivered
// order; a local caller receives the answer itself, a remote one its encoding (Marshal).
func BenchmarkOrderAnswer(b *testing.B) {
	s := orderIn(b, stageDelivered)
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = orderView(s, nil)
		}
	})
	b.Run("Status", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = orderStatusView(s)
		}
	})
	b.Run("GetMarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(orderView(s, nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StatusMarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(orderStatusView(s)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDasherStepsRefuseForeignDashers: a dasher step (release, delivered) from a dasher that is not the order's
// answers NOT_FOUND with the same message as a restaurant command from another restaurant, in every stage, so a
// foreign dasher cannot tell an order exists; the order's own dasher gets FAILED_PRECONDITION for a step out of
// order. Written against the rule, not the table.
func TestDasherStepsRefuseForeignDashers(t *testing.T) {
	foreign, err := decideAcceptOrder(orderIn(t, stagePending), &messages.AcceptOrder{CommandId: "k", RestaurantId: "r_other", PrepMinutes: 10}, orderCfg, testNow)
	var restaurantRefusal *Error
	if !errors.As(err, &restaurantRefusal) || restaurantRefusal.Code != nf || len(foreign) > 0 {
		t.Fatalf("another restaurant's accept: %v", err)
	}
	for _, step := range []orderStep{stepReleaseDasher, stepMarkDelivered} {
		for from := stageAbsent; from < numStages; from++ {
			s := orderIn(t, from)
			events, err := runOrderStep(s, step, tOther)
			var e *Error
			if !errors.As(err, &e) || e.Code != nf || e.Message != restaurantRefusal.Message || len(events) > 0 {
				t.Errorf("%s in %s by another dasher: %v with %d events, want NOT_FOUND %q", step, from, err, len(events), restaurantRefusal.Message)
			}
			if s.GetDasherId() != tDasher {
				continue // no dasher: every dasher is foreign (tDasher got the same answer as tOther above)
			}
			allowed := map[orderStep][]orderStage{
				stepReleaseDasher: {stageAssigned, stageReadyAssigned, stageCancelled},
				stepMarkDelivered: {stagePickedUp, stageDelivered},
			}[step]
			events, err = runOrderStep(s, step, tDasher)
			switch got := codeOf(t, err); {
			case slices.Contains(allowed, from) && got != 0:
				t.Errorf("%s in %s by the order's dasher: refused %s", step, from, got)
			case !slices.Contains(allowed, from) && (got != fp || len(events) > 0):
				t.Errorf("%s in %s by the order's dasher: %s with %d events, want FAILED_PRECONDITION", step, from, got, len(events))
			}
		}
	}
}

// TestDecidePaymentTimer: a firing starts the due actions without a call in flight and moves the timer to their
// lease; an action in flight is not started again (the lease moves); an action not due yet sets the timer to its
// next attempt; nothing pending sets nothing.
func TestDecidePaymentTimer(t *testing.T) {
	cfg := orderCfg
	cfg.PaymentTimeout, cfg.PaymentRetryMin = 10*time.Second, time.Second
	now := testNow.Add(time.Hour)
	lease := now.Add(11 * time.Second)
	s := orderIn(t, stageDelivered)
	id := s.GetPayment().GetPending()[0].GetId()

	events, start := decidePaymentTimer(s, nil, cfg, now)
	if len(start) != 1 || start[0].GetId() != id || !splitOrder(t, events).set[timerPayment].Equal(lease) {
		t.Fatalf("due: start %v, events %v; want %s started and the timer at %v", start, events, id, lease)
	}
	events, start = decidePaymentTimer(s, map[string]bool{id: true}, cfg, now)
	if len(start) != 0 || !splitOrder(t, events).set[timerPayment].Equal(lease) {
		t.Fatalf("in flight: start %v, events %v; want nothing started and the timer at %v", start, events, lease)
	}
	later := now.Add(3 * time.Second)
	s = foldOrder(t, s, decidePaymentOutcome(s, id, fmt.Errorf("capture: %w", ErrPaymentUnavailable), cfg, now.Add(2*time.Second)))
	events, start = decidePaymentTimer(s, nil, cfg, now)
	if len(start) != 0 || !splitOrder(t, events).set[timerPayment].Equal(later) {
		t.Fatalf("not due: start %v, events %v; want nothing started and the timer at %v", start, events, later)
	}
	s = foldOrder(t, s, decidePaymentOutcome(s, id, nil, cfg, now))
	if events, start = decidePaymentTimer(s, nil, cfg, now); len(events) != 0 || len(start) != 0 {
		t.Fatalf("settled: start %v, events %v; want nothing", start, events)
	}
}

// TestCancelPlacement: the customer's cancel of a placement that waits for the payment processor (the "placing"
// cell) records the order placed and cancelled at once with nothing authorised, queues the void that resolves the
// failed call's unknown authorisation, tells only the customer, and the placement that arrives later is refused;
// anyone else, or another customer, gets NOT_FOUND.
func TestCancelPlacement(t *testing.T) {
	now := testNow
	p := validPlaceOrder()
	c := &messages.CancelOrder{CommandId: "k", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: tCustomer, Reason: " too slow "}
	events, err := decideCancelPlacement(&messages.OrderState{}, tOrder, p, c, orderCfg, now)
	after := mustOrder(t, &messages.OrderState{}, events, err)
	d := splitOrder(t, events)
	if stageOf(after) != stageCancelled || after.GetCancelledBy() != messages.CancelledBy_CANCELLED_BY_CUSTOMER || after.GetReason() != "too slow" ||
		after.GetCustomerId() != tCustomer || after.GetTotalCents() != tTotal {
		t.Fatalf("after: %v", after)
	}
	// Nothing authorised, but the failed call's outcome is unknown: a void resolving it by its idempotency key is
	// queued (resolveAuthorisation) with the amount of the Authorize request, and the payment timer set at once.
	pending := after.GetPayment().GetPending()
	if pay := orderView(after, nil).GetPayment(); pay.GetStatus() != "SETTLING" || pay.GetAuthorizedCents() != 0 || pay.GetCapturedCents() != 0 ||
		after.GetPayment().GetAuthId() != "" || after.GetPayment().GetToken() != p.GetPaymentToken() {
		t.Errorf("payment: %v (state %v)", pay, after.GetPayment())
	}
	if len(pending) != 1 || pending[0].GetId() != tOrder+"/void" || pending[0].GetKind() != messages.PaymentActionKind_PAYMENT_ACTION_VOID ||
		pending[0].GetAmountCents() != tTotal || !pending[0].GetNextAttemptAt().AsTime().Equal(now) {
		t.Errorf("pending: %v, want one void of the unknown authorisation of %d cents", pending, tTotal)
	}
	if len(d.set) != 1 || !d.set[timerPayment].Equal(now) {
		t.Errorf("timers set: %v, want only the payment timer, due now", d.set)
	}
	if got := orderRecipients(d); strings.Join(got, " ") != "Customer/c_1:OrderCancelled" {
		t.Errorf("sends %v", got)
	}
	if _, err := decidePlaceOrder(after, tOrder, p, authorization{authID: "auth_1"}, orderCfg, now); codeOf(t, err) != ae {
		t.Errorf("the placement after the tombstone: %v, want ALREADY_EXISTS", err)
	}
	for name, c := range map[string]*messages.CancelOrder{
		"another customer": {CommandId: "k", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: "c_2"},
		"the restaurant":   {CommandId: "k", By: messages.CancelledBy_CANCELLED_BY_RESTAURANT, RequesterId: tRestaurant},
	} {
		if events, err := decideCancelPlacement(&messages.OrderState{}, tOrder, p, c, orderCfg, now); codeOf(t, err) != nf || len(events) > 0 {
			t.Errorf("%s: %v with %d events, want NOT_FOUND", name, err, len(events))
		}
	}
	if events, err := decideCancelPlacement(orderIn(t, stagePending), tOrder, p, c, orderCfg, now); codeOf(t, err) != nf || len(events) > 0 {
		t.Errorf("placed already: %v with %d events, want NOT_FOUND (the Cancel goes through the matrix)", err, len(events))
	}
}
