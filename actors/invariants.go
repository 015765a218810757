package actors

// The invariant checker: DESIGN.md's rule 6 checked over a whole journal, after the fact. Component tests run it at
// the end of every workflow scenario (restarts, kills, duplicate activations, races); an operator tool may run it
// over a copy of a node's journal. It reads only the journal, so it sees what survived, not what an actor believed.
//
// Rules (Violation.Rule):
//
//	transition    every Order event is a transition its table (orderTransitions) allows from the stage the order
//	              was in, and lands in the table's stage; a cancellation is allowed by the cancellation matrix
//	              for its canceller and refunds what the matrix says (with InvariantOptions.Workflow's share)
//	one-dasher    an order has at most one dasher at a time (its own stream), and every assignment a dasher holds
//	              was made by the order for that dasher
//	capacity      a dasher never holds more assignments than its capacity
//	acknowledged  every order whose placement was acknowledged (InvariantOptions.Acknowledged, and every order
//	              a customer's stream records as ordered) exists
//	stuck         every order waiting on a timeout policy holds its timer and a journal reminder no later than it:
//	              pending → "accept"; accepted without a dasher → "dispatch"; a payment action to settle →
//	              "payment". (An order with a dasher waits for people: the restaurant and the dasher.)
//	quiescent     with InvariantOptions.Quiescent: no outbox entry of any stream is unacknowledged, no payment
//	              action of any order is unsettled, and every dasher's assignments are orders it still holds

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// Violation is one broken invariant.
type Violation struct {
	Rule   string
	Stream string
	Seq    uint64 // the event that broke it (0: the stream as a whole)
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s@%d: %s", v.Rule, v.Stream, v.Seq, v.Detail)
}

// InvariantOptions tunes CheckInvariants.
type InvariantOptions struct {
	// Workflow is the configuration the nodes ran with (the refund share of the cancellation matrix). Zero fields
	// mean their defaults.
	Workflow WorkflowConfig
	// Acknowledged are order ids whose placement a caller saw acknowledged.
	Acknowledged []string
	// Quiescent says the workflow is at rest: every message delivered, every payment settled.
	Quiescent bool
}

// CheckInvariants reads every Order, Dasher and Customer stream of j and returns the violations found (nil when
// none). The error is a failure to read the journal.
func CheckInvariants(ctx context.Context, j journal.Journal, opts InvariantOptions) ([]Violation, error) {
	c := &checker{ctx: ctx, j: j, cfg: opts.Workflow.withDefaults(), orders: map[string]*checkedOrder{}}
	if err := c.forStreams(streamOf(KindOrder, ""), c.order); err != nil {
		return nil, err
	}
	if err := c.forStreams(streamOf(KindDasher, ""), c.dasher); err != nil {
		return nil, err
	}
	if err := c.forStreams(streamOf(KindCustomer, ""), c.customer); err != nil {
		return nil, err
	}
	for _, id := range opts.Acknowledged {
		if o := c.orders[id]; o == nil || !o.state.GetCreated() {
			c.fail("acknowledged", streamOf(KindOrder, id), 0, "an acknowledged order does not exist")
		}
	}
	for _, id := range c.ordered {
		if o := c.orders[id.order]; (o == nil || !o.state.GetCreated()) && opts.Quiescent {
			c.fail("acknowledged", id.stream, 0, fmt.Sprintf("order %s was ordered but does not exist", id.order))
		}
	}
	if err := c.stuck(); err != nil {
		return nil, err
	}
	if opts.Quiescent {
		if err := c.quiescent(); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(c.out, func(a, b int) bool { return c.out[a].Stream < c.out[b].Stream })
	return c.out, nil
}

type checker struct {
	ctx context.Context
	j   journal.Journal
	cfg WorkflowConfig
	out []Violation

	orders  map[string]*checkedOrder
	held    map[string]map[string]bool // order id → dashers holding it at the end
	ordered []struct{ stream, order string }
}

// checkedOrder is an order stream folded: its state, its mailbox, and every dasher it assigned.
type checkedOrder struct {
	state    *messages.OrderState
	box      mailbox
	assigned map[string]bool
}

func (c *checker) fail(rule, stream string, seq uint64, detail string) {
	c.out = append(c.out, Violation{Rule: rule, Stream: stream, Seq: seq, Detail: detail})
}

// forStreams calls f with the decoded events of every stream with prefix.
func (c *checker) forStreams(prefix string, f func(stream string, events []journal.Event, msgs []proto.Message)) error {
	streams, err := c.j.Streams(c.ctx, prefix, "", 0)
	if err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	for _, stream := range streams {
		events, err := c.j.Events(c.ctx, stream, 0, 0)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		msgs := make([]proto.Message, len(events))
		for i, ev := range events {
			if msgs[i], err = decodeEvent(ev); err != nil {
				return fmt.Errorf("read %s: %w", stream, err)
			}
		}
		f(stream, events, msgs)
	}
	return nil
}

// order replays one order stream through the transition table.
func (c *checker) order(stream string, events []journal.Event, msgs []proto.Message) {
	o := &checkedOrder{state: &messages.OrderState{}, box: newMailbox(), assigned: map[string]bool{}}
	c.orders[strings.TrimPrefix(stream, streamOf(KindOrder, ""))] = o
	for i, msg := range msgs {
		seq := events[i].Seq
		if _, ok := msg.(*messages.CommandApplied); ok || o.box.fold(seq, msg) {
			continue
		}
		from := stageOf(o.state)
		want, ok := c.expectStage(stream, seq, o.state, from, msg)
		if err := applyOrder(o.state, msg); err != nil {
			c.fail("transition", stream, seq, err.Error())
			return // the rest of the stream cannot be replayed meaningfully
		}
		if ok && stageOf(o.state) != want {
			c.fail("transition", stream, seq, fmt.Sprintf("%s moved the order from %s to %s, the table says %s", payloadName(msg), from, stageOf(o.state), want))
		}
		if a, isAssign := msg.(*messages.DasherAssigned); isAssign {
			o.assigned[a.GetDasherId()] = true
		}
	}
}

// expectStage checks that msg is a transition the table allows from `from`, and returns the stage it must lead
// to (ok false for events that do not change the stage: payments).
func (c *checker) expectStage(stream string, seq uint64, s *messages.OrderState, from orderStage, msg proto.Message) (orderStage, bool) {
	var step orderStep
	var dasher string
	switch e := msg.(type) {
	case *messages.OrderCreated:
		step = stepPlace
	case *messages.OrderDeclined:
		step = stepPlaceDeclined
	case *messages.OrderAccepted:
		step = stepAccept
	case *messages.OrderRejected:
		step = stepReject
		if e.GetRefundCents() != s.GetTotalCents() {
			c.fail("transition", stream, seq, fmt.Sprintf("a rejection refunded %d of %d", e.GetRefundCents(), s.GetTotalCents()))
		}
	case *messages.FoodReady:
		step = stepMarkReady
	case *messages.OrderPickedUp:
		step = stepMarkPickedUp
	case *messages.DasherAssigned:
		step, dasher = stepAssignDasher, e.GetDasherId()
		if s.GetDasherId() != "" {
			c.fail("one-dasher", stream, seq, fmt.Sprintf("dasher %s assigned while %s holds the order", dasher, s.GetDasherId()))
		}
	case *messages.DasherReleased:
		step, dasher = stepReleaseDasher, e.GetDasherId()
	case *messages.OrderDelivered:
		step, dasher = stepMarkDelivered, e.GetDasherId()
	case *messages.OrderCancelled:
		return c.expectCancel(stream, seq, s, from, e)
	case *messages.PaymentQueued, *messages.PaymentAttemptFailed, *messages.PaymentSettled:
		if t := stageOf(s); t != stageDelivered && t != stageCancelled && t != stageRejected {
			c.fail("transition", stream, seq, fmt.Sprintf("%s on an order that is %s", payloadName(msg), t))
		}
		return from, false
	default:
		c.fail("transition", stream, seq, "unexpected event "+payloadName(msg))
		return from, false
	}
	cell := orderTransitions[step][from]
	if !cell.allows(dasher, s.GetDasherId()) || !cell.moves(from) {
		c.fail("transition", stream, seq, fmt.Sprintf("%s (%s) is not a transition from %s", payloadName(msg), step, from))
		return from, false
	}
	return cell.to, true
}

func (c *checker) expectCancel(stream string, seq uint64, s *messages.OrderState, from orderStage, e *messages.OrderCancelled) (orderStage, bool) {
	rules, ok := cancellationMatrix[e.GetBy()]
	if !ok {
		c.fail("transition", stream, seq, "a cancellation by "+e.GetBy().String())
		return from, false
	}
	rule := rules[from]
	if rule.code != 0 {
		c.fail("transition", stream, seq, fmt.Sprintf("cancelled by %s from %s, which the matrix refuses", e.GetBy(), from))
		return from, false
	}
	if e.GetBy() == messages.CancelledBy_CANCELLED_BY_SYSTEM &&
		!orderTransitions[stepAcceptTimeout][from].moves(from) && !orderTransitions[stepDispatchTimeout][from].moves(from) {
		c.fail("transition", stream, seq, "cancelled by the system from "+from.String()+", where no timer cancels")
	}
	if want := refundFor(rule, s.GetTotalCents(), c.cfg); e.GetRefundCents() != want {
		c.fail("transition", stream, seq, fmt.Sprintf("cancelled by %s from %s with refund %d, the matrix says %d", e.GetBy(), from, e.GetRefundCents(), want))
	}
	return stageCancelled, true
}

// dasher replays one dasher stream: capacity, and every assignment made by its order.
func (c *checker) dasher(stream string, events []journal.Event, msgs []proto.Message) {
	id := strings.TrimPrefix(stream, streamOf(KindDasher, ""))
	capacity := int32(1)
	holding := map[string]bool{}
	if c.held == nil {
		c.held = map[string]map[string]bool{}
	}
	for i, msg := range msgs {
		seq := events[i].Seq
		switch e := msg.(type) {
		case *messages.DasherCreated:
			if e.GetCapacity() > 0 {
				capacity = e.GetCapacity()
			}
		case *messages.AssignmentAdded:
			holding[e.GetOrderId()] = true
			if int32(len(holding)) > capacity {
				c.fail("capacity", stream, seq, fmt.Sprintf("holds %d orders, capacity %d", len(holding), capacity))
			}
			if o := c.orders[e.GetOrderId()]; o == nil || !o.assigned[id] {
				c.fail("one-dasher", stream, seq, fmt.Sprintf("holds order %s, which never assigned dasher %s", e.GetOrderId(), id))
			}
		case *messages.AssignmentEnded:
			delete(holding, e.GetOrderId())
		}
	}
	for order := range holding {
		if c.held[order] == nil {
			c.held[order] = map[string]bool{}
		}
		c.held[order][id] = true
	}
}

// customer collects the orders a customer's stream records as ordered.
func (c *checker) customer(stream string, _ []journal.Event, msgs []proto.Message) {
	for _, msg := range msgs {
		if e, ok := msg.(*messages.OrderRequested); ok && e.GetCartOrdered() {
			c.ordered = append(c.ordered, struct{ stream, order string }{stream, e.GetOrder().GetOrderId()})
		}
	}
}

// stuck checks that every order waiting on a timeout policy holds its timer, and the journal its reminder.
func (c *checker) stuck() error {
	for id, o := range c.orders {
		stream := streamOf(KindOrder, id)
		var need []string
		switch stageOf(o.state) {
		case stagePending:
			need = append(need, timerAccept)
		case stageAccepted, stageReady:
			need = append(need, timerDispatch)
		}
		if len(o.state.GetPayment().GetPending()) > 0 {
			need = append(need, timerPayment)
		}
		for _, name := range need {
			due, ok := o.box.timers[name]
			if !ok {
				c.fail("stuck", stream, 0, fmt.Sprintf("%s without its %q timer", StatusName(o.state.GetStatus()), name))
				continue
			}
			has, err := c.reminderBy(stream, due)
			if err != nil {
				return err
			}
			if !has {
				c.fail("stuck", stream, 0, fmt.Sprintf("timer %q due %s has no journal reminder at or before it", name, due.Format(time.RFC3339)))
			}
		}
	}
	return nil
}

// reminderBy reports whether the journal holds a reminder of stream due at or before due.
func (c *checker) reminderBy(stream string, due time.Time) (bool, error) {
	reminders, err := c.j.DueReminders(c.ctx, due, journal.Reminder{}, 0)
	if err != nil {
		return false, fmt.Errorf("read reminders: %w", err)
	}
	for _, r := range reminders {
		if r.Stream == stream {
			return true, nil
		}
	}
	return false, nil
}

// quiescent checks the rest state: outboxes drained, payments settled, assignments only of open orders.
func (c *checker) quiescent() error {
	err := c.forStreams("", func(stream string, events []journal.Event, msgs []proto.Message) {
		box := newMailbox()
		for i, msg := range msgs {
			box.fold(events[i].Seq, msg)
		}
		if n := len(box.outbox); n > 0 {
			c.fail("quiescent", stream, 0, fmt.Sprintf("%d outbox entries not acknowledged", n))
		}
	})
	if err != nil {
		return err
	}
	for id, o := range c.orders {
		stream := streamOf(KindOrder, id)
		if n := len(o.state.GetPayment().GetPending()); n > 0 {
			c.fail("quiescent", stream, 0, fmt.Sprintf("%d payment actions not settled", n))
		}
		terminal := stageOf(o.state) >= stageDelivered
		for dasher := range c.held[id] {
			if terminal || dasher != o.state.GetDasherId() {
				c.fail("quiescent", streamOf(KindDasher, dasher), 0, fmt.Sprintf("still holds order %s, which is %s with dasher %q",
					id, StatusName(o.state.GetStatus()), o.state.GetDasherId()))
			}
		}
	}
	return nil
}
