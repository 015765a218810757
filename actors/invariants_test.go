package actors

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// appendTestEvents writes msgs to stream after its last event, with the reminder (zero: none).
func appendTestEvents(t *testing.T, j journal.Journal, stream string, reminder time.Time, msgs ...proto.Message) {
	t.Helper()
	ctx := context.Background()
	old, err := j.Events(ctx, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	records := make([]journal.Event, len(msgs))
	for i, m := range msgs {
		if records[i], err = encodeEvent(m); err != nil {
			t.Fatal(err)
		}
	}
	var opts []journal.AppendOption
	if !reminder.IsZero() {
		opts = append(opts, journal.WithReminder(reminder))
	}
	if _, err := j.Append(ctx, stream, uint64(len(old)), records, opts...); err != nil {
		t.Fatal(err)
	}
}

// orderDecisions runs the happy path's decisions up to stage (as orderIn does) and returns every event, mailbox
// events included, as the entity would append them.
func orderDecisions(t *testing.T, stage orderStage) []proto.Message {
	t.Helper()
	var all []proto.Message
	s := &messages.OrderState{}
	for _, step := range []orderStep{stepPlace, stepAccept, stepAssignDasher, stepMarkReady, stepMarkPickedUp, stepMarkDelivered} {
		if stageOf(s) == stage {
			break
		}
		events, err := runOrderStep(s, step, tDasher)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		all = append(all, events...)
		s = foldOrder(t, s, events)
	}
	return all
}

func violationRules(vs []Violation) string {
	var rules []string
	for _, v := range vs {
		rules = append(rules, v.Rule)
	}
	return strings.Join(rules, " ")
}

func TestCheckInvariants(t *testing.T) {
	ctx := context.Background()
	far := testNow // a reminder no later than any timer the decisions set

	t.Run("clean", func(t *testing.T) {
		j, _ := openTestJournal(t)
		appendTestEvents(t, j, "order/o_1", far, orderDecisions(t, stageDelivered)...)
		appendTestEvents(t, j, "order/o_2", far, orderDecisions(t, stagePending)...)
		appendTestEvents(t, j, "dasher/d_1", time.Time{}, &messages.DasherCreated{Capacity: 1},
			&messages.AssignmentAdded{OrderId: "o_1"}, &messages.AssignmentEnded{OrderId: "o_1"})
		vs, err := CheckInvariants(ctx, j, InvariantOptions{Acknowledged: []string{"o_1", "o_2"}})
		if err != nil || len(vs) != 0 {
			t.Fatalf("violations %v, err %v", vs, err)
		}
	})

	cases := []struct {
		name  string
		write func(t *testing.T, j journal.Journal)
		opts  InvariantOptions
		want  string
	}{
		{"a transition outside the table", func(t *testing.T, j journal.Journal) {
			placed := orderDecisions(t, stagePending)
			appendTestEvents(t, j, "order/o_1", far, append(placed, &messages.OrderPickedUp{OrderId: tOrder})...)
		}, InvariantOptions{}, "transition"},
		{"a cancellation the matrix refuses", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, append(orderDecisions(t, stageAssigned),
				&messages.OrderCancelled{By: messages.CancelledBy_CANCELLED_BY_SYSTEM, RefundCents: tTotal})...)
		}, InvariantOptions{}, "transition"},
		{"a wrong refund", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, append(orderDecisions(t, stageAssigned),
				&messages.OrderCancelled{By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RefundCents: 1})...)
		}, InvariantOptions{}, "transition"},
		{"two dashers", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, append(orderDecisions(t, stageAssigned),
				&messages.DasherAssigned{OrderId: tOrder, DasherId: tOther})...)
		}, InvariantOptions{}, "one-dasher transition"},
		{"a dasher holding an order never assigned to it", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, orderDecisions(t, stageAssigned)...)
			appendTestEvents(t, j, "dasher/d_2", time.Time{}, &messages.DasherCreated{}, &messages.AssignmentAdded{OrderId: "o_1"})
		}, InvariantOptions{}, "one-dasher"},
		{"over capacity", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, orderDecisions(t, stageAssigned)...)
			appendTestEvents(t, j, "dasher/d_1", time.Time{}, &messages.DasherCreated{Capacity: 1},
				&messages.AssignmentAdded{OrderId: "o_1"}, &messages.AssignmentAdded{OrderId: "o_9"})
		}, InvariantOptions{}, "capacity one-dasher"},
		{"an acknowledged order missing", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, orderDecisions(t, stageDelivered)...)
		}, InvariantOptions{Acknowledged: []string{"o_1", "o_lost"}}, "acknowledged"},
		{"an order a customer ordered missing", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "customer/c_1", time.Time{}, &messages.OrderRequested{CartOrdered: true, Order: &messages.CustomerOrder{OrderId: "o_lost"}})
		}, InvariantOptions{Quiescent: true}, "acknowledged"},
		{"a pending order without its timer", func(t *testing.T, j journal.Journal) {
			var events []proto.Message
			for _, e := range orderDecisions(t, stagePending) {
				if _, timer := e.(*messages.TimerSet); !timer {
					events = append(events, e)
				}
			}
			appendTestEvents(t, j, "order/o_1", far, events...)
		}, InvariantOptions{}, "stuck"},
		{"a timer without a reminder", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", time.Time{}, orderDecisions(t, stageAccepted)...)
		}, InvariantOptions{}, "stuck"},
		{"an outbox not drained", func(t *testing.T, j journal.Journal) {
			appendTestEvents(t, j, "order/o_1", far, orderDecisions(t, stageAccepted)...)
		}, InvariantOptions{Quiescent: true}, "quiescent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, _ := openTestJournal(t)
			c.write(t, j)
			vs, err := CheckInvariants(ctx, j, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := violationRules(vs); got != c.want {
				t.Fatalf("violations %q, want %q: %v", got, c.want, vs)
			}
		})
	}
}
