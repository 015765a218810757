package actors

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// Unit tests of the entity's mailbox: inbox de-duplication, outbox bookkeeping, timers and the stream's reminder,
// over a real bbolt journal without a cluster.

func env(t *testing.T, from string, seq uint64, payload proto.Message) *messages.Envelope {
	t.Helper()
	p, err := anypb.New(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &messages.Envelope{FromStream: from, OutSeq: seq, Payload: p}
}

// createdRestaurantEntity loads restaurant/r1 and creates it.
func createdRestaurantEntity(t *testing.T, deps *Deps) *entity[*messages.RestaurantState] {
	t.Helper()
	e := loadRestaurant(t, deps, "restaurant/r1")
	if err := create(e, validCreate()); err != nil {
		t.Fatal(err)
	}
	return e
}

func feedLen(t *testing.T, j journal.Journal, stream string) int {
	t.Helper()
	entries, err := j.ReadFeed(context.Background(), stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func reminderStreams(t *testing.T, j journal.Journal, at time.Time) []string {
	t.Helper()
	due, err := j.DueReminders(context.Background(), at, journal.Reminder{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range due {
		out = append(out, r.Stream)
	}
	return out
}

func TestEntityReceiveAppliesEachMessageOnce(t *testing.T) {
	j, _ := openTestJournal(t)
	e := createdRestaurantEntity(t, testDeps(j))
	placed := func(id string) *messages.OrderPlaced { return &messages.OrderPlaced{OrderId: id, RestaurantId: "r1"} }

	n, err := e.receive(context.Background(), env(t, "order/o_1", 5, placed("o_1")), decideDeliverRestaurant)
	if err != nil || n != 1 {
		t.Fatalf("first delivery: %d feed entries, %v", n, err)
	}
	before := eventTypes(t, j, "restaurant/r1")
	want := []string{"platter.CommandApplied", "platter.RestaurantCreated", "platter.InboxAdvanced", "platter.OpenOrderAdded"}
	if !slices.Equal(before, want) {
		t.Fatalf("stream %v, want %v", before, want)
	}
	// The same out_seq and an older one: acknowledged without effect.
	for _, seq := range []uint64{5, 4, 1} {
		if n, err := e.receive(context.Background(), env(t, "order/o_1", seq, placed("o_1")), decideDeliverRestaurant); err != nil || n != 0 {
			t.Fatalf("duplicate %d: %d, %v", seq, n, err)
		}
	}
	if got := eventTypes(t, j, "restaurant/r1"); len(got) != len(before) || feedLen(t, j, "restaurant/r1") != 1 {
		t.Fatalf("duplicates wrote: %v", got)
	}
	// Another sender has its own mark; a later message of the first sender applies.
	if _, err := e.receive(context.Background(), env(t, "order/o_2", 1, placed("o_2")), decideDeliverRestaurant); err != nil {
		t.Fatal(err)
	}
	if _, err := e.receive(context.Background(), env(t, "order/o_1", 9, &messages.OrderAccepted{OrderId: "o_1"}), decideDeliverRestaurant); err != nil {
		t.Fatal(err)
	}
	if got := e.state.GetOpenOrders(); len(got) != 2 || got["o_1"].GetStatus() != StatusAccepted {
		t.Fatalf("open orders %v", got)
	}
	// The marks survive a reload.
	e2 := loadRestaurant(t, e.deps, "restaurant/r1")
	if e2.box.inbox["order/o_1"].GetOutSeq() != 9 || e2.box.inbox["order/o_2"].GetOutSeq() != 1 {
		t.Fatalf("reloaded inbox %v", e2.box.inbox)
	}
	if n, err := e2.receive(context.Background(), env(t, "order/o_1", 9, placed("o_1")), decideDeliverRestaurant); err != nil || n != 0 {
		t.Fatalf("duplicate after reload: %d, %v", n, err)
	}
}

func TestEntityReceiveRefusalsAndErrors(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	e := loadRestaurant(t, deps, "restaurant/r1") // never created: the decision refuses every message

	n, err := e.receive(context.Background(), env(t, "order/o_1", 1, &messages.OrderPlaced{OrderId: "o_1"}), decideDeliverRestaurant)
	if err != nil || n != 0 {
		t.Fatalf("refused message: %d, %v; want applied without effect", n, err)
	}
	if got := eventTypes(t, j, "restaurant/r1"); !slices.Equal(got, []string{"platter.InboxAdvanced"}) {
		t.Fatalf("stream after a refused message %v", got)
	}

	// An unexpected payload is not applied: the sender must retry it.
	_, err = e.receive(context.Background(), env(t, "order/o_1", 2, &messages.Wake{}), decideDeliverRestaurant)
	if !errors.Is(err, errUnexpectedPayload) {
		t.Fatalf("unexpected payload: %v", err)
	}
	if e.box.inbox["order/o_1"].GetOutSeq() != 1 || len(eventTypes(t, j, "restaurant/r1")) != 1 || e.broken {
		t.Fatal("an unexpected payload advanced the inbox or broke the entity")
	}
	// A kind without a deliver decision refuses the same way.
	if _, err := e.receive(context.Background(), env(t, "order/o_1", 2, &messages.FoodReady{}), nil); !errors.Is(err, errUnexpectedPayload) {
		t.Fatalf("no decision: %v", err)
	}
	// Malformed envelopes.
	for _, bad := range []*messages.Envelope{
		{OutSeq: 3, Payload: env(t, "x", 1, &messages.FoodReady{}).GetPayload()},
		{FromStream: "order/o_1", Payload: env(t, "x", 1, &messages.FoodReady{}).GetPayload()},
		{FromStream: "order/o_1", OutSeq: 3},
	} {
		if _, err := e.receive(context.Background(), bad, decideDeliverRestaurant); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Fatalf("envelope %v: %v", bad, err)
		}
	}
	undecodable := &messages.Envelope{FromStream: "order/o_1", OutSeq: 3, Payload: &anypb.Any{TypeUrl: "type.googleapis.com/platter.Nope", Value: []byte{1}}}
	if _, err := e.receive(context.Background(), undecodable, decideDeliverRestaurant); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("undecodable payload: %v", err)
	}
}

// sendAndMenu is a command decision that changes the menu and sends two messages.
func sendAndMenu(t *testing.T, price int64) func(*messages.RestaurantState, time.Time) ([]proto.Message, error) {
	return func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		a, err := sendTo(KindCustomer, "c_1", &messages.FoodReady{OrderId: "o_1"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := sendTo(KindCustomer, "c_2", &messages.FoodReady{OrderId: "o_2"})
		if err != nil {
			t.Fatal(err)
		}
		return []proto.Message{&messages.MenuUpdated{Items: []*messages.MenuItem{{Id: "m", Name: "x", PriceCents: price}}}, a, b}, nil
	}
}

// Outbox entries are recorded with their state change, keep the stream's reminder while pending, and are removed
// by the OutboxAcked the next append records; the reminder goes with the last one.
func TestEntityOutboxBookkeeping(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	e := createdRestaurantEntity(t, deps)
	if err := e.execute(context.Background(), "send", menuCommand("send", 1), sendAndMenu(t, 1)); err != nil {
		t.Fatal(err)
	}
	pending := e.pendingOutbox()
	if len(pending) != 2 || pending[0].seq != 5 || pending[1].seq != 6 || pending[0].added.GetToIdentity() != "c_1" {
		t.Fatalf("pending %v", pending)
	}
	due := testNow.Add(deps.Workflow.DeliverTimeout)
	if got := reminderStreams(t, j, due); !slices.Equal(got, []string{"restaurant/r1"}) || len(reminderStreams(t, j, due.Add(-time.Millisecond))) != 0 {
		t.Fatalf("reminders %v, want restaurant/r1 due at %v", got, due)
	}
	// A reload sees the same pending entries (and keeps the reminder).
	if got := loadRestaurant(t, deps, "restaurant/r1").pendingOutbox(); len(got) != 2 {
		t.Fatalf("reloaded outbox %v", got)
	}

	e.ack(5)
	e.ack(42) // not in the outbox: ignored
	if got := e.pendingOutbox(); len(got) != 1 || got[0].seq != 6 {
		t.Fatalf("pending after an ack %v", got)
	}
	if _, err := e.commit(context.Background(), nil, nil, testNow); err != nil {
		t.Fatal(err)
	}
	if got := eventTypes(t, j, "restaurant/r1"); got[len(got)-1] != "platter.OutboxAcked" || len(e.box.outbox) != 1 {
		t.Fatalf("stream %v, outbox %v", got, e.box.outbox)
	}
	if got := reminderStreams(t, j, due); len(got) != 1 {
		t.Fatal("the reminder went while an entry is pending")
	}
	// The delivery waits for a retry: the reminder is moved behind it by syncReminder.
	later := testNow.Add(time.Minute)
	e.deferOutbox(later)
	if err := e.syncReminder(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(reminderStreams(t, j, later.Add(-time.Millisecond))) != 0 || len(reminderStreams(t, j, later)) != 1 {
		t.Fatal("syncReminder did not move the reminder")
	}
	seq := e.seq
	if err := e.syncReminder(context.Background()); err != nil || e.seq != seq {
		t.Fatal("syncReminder wrote without a change")
	}
	// The last ack goes with the next command's append, and the reminder with it.
	e.ack(6)
	if err := e.execute(context.Background(), "m2", menuCommand("m2", 2), func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return decideUpdateMenu(s, menuCommand("m2", 2), now)
	}); err != nil {
		t.Fatal(err)
	}
	if len(e.box.outbox) != 0 || len(e.acked) != 0 || len(reminderStreams(t, j, later.Add(time.Hour))) != 0 {
		t.Fatalf("after the last ack: outbox %v, acked %v, reminders %v", e.box.outbox, e.acked, reminderStreams(t, j, later.Add(time.Hour)))
	}
	types := eventTypes(t, j, "restaurant/r1")
	if want := []string{"platter.OutboxAcked", "platter.CommandApplied", "platter.MenuUpdated"}; !slices.Equal(types[len(types)-3:], want) {
		t.Fatalf("last events %v, want %v", types[len(types)-3:], want)
	}
}

// settableNow returns a clock for Deps.Now that a test moves.
func settableNow(start time.Time) (func() time.Time, func(time.Time)) {
	now := start
	return func() time.Time { return now }, func(t time.Time) { now = t }
}

func TestEntityTimers(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	now, set := settableNow(testNow)
	deps.Now = now
	e := createdRestaurantEntity(t, deps)
	// A decision sets three timers and clears one of them.
	err := e.execute(context.Background(), "timers", menuCommand("timers", 1), func(*messages.RestaurantState, time.Time) ([]proto.Message, error) {
		return []proto.Message{
			&messages.MenuUpdated{},
			setTimer("b", testNow.Add(2*time.Second)), setTimer("a", testNow.Add(time.Second)),
			setTimer("c", testNow.Add(time.Hour)), setTimer("gone", testNow), clearTimer("gone"),
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := reminderStreams(t, j, testNow.Add(time.Second)); len(got) != 1 || len(reminderStreams(t, j, testNow.Add(999*time.Millisecond))) != 0 {
		t.Fatal("the reminder is not at the earliest timer")
	}
	var fired []string
	decide := func(_ *messages.RestaurantState, name string, at time.Time) ([]proto.Message, error) {
		fired = append(fired, name)
		switch name {
		case "a": // re-arms itself, due at once: not fired again by the same call
			return []proto.Message{setTimer("a", at)}, nil
		case "b":
			return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "too late")
		}
		return nil, nil
	}
	// Nothing due yet.
	if n, _, err := e.fireDue(context.Background(), decide); n != 0 || err != nil {
		t.Fatalf("fired %d (%v) before any due time", n, err)
	}
	set(testNow.Add(5 * time.Second))
	n, _, err := e.fireDue(context.Background(), decide)
	if err != nil || n != 2 || !slices.Equal(fired, []string{"a", "b"}) {
		t.Fatalf("fired %v (%d, %v), want a then b", fired, n, err)
	}
	if _, ok := e.box.timers["b"]; ok {
		t.Fatal("a refused timer is still set")
	}
	if due, ok := e.box.timers["a"]; !ok || !due.Equal(testNow.Add(5*time.Second)) {
		t.Fatalf("re-armed timer a: %v %v", due, ok)
	}
	// The next call fires the re-armed one; "c" stays, and the reminder follows it.
	fired = nil
	if n, _, err := e.fireDue(context.Background(), decide); n != 1 || err != nil || !slices.Equal(fired, []string{"a"}) {
		t.Fatalf("second call fired %v", fired)
	}
	fired = nil
	decideOnce := func(_ *messages.RestaurantState, name string, _ time.Time) ([]proto.Message, error) {
		fired = append(fired, name)
		return nil, nil
	}
	if n, _, _ := e.fireDue(context.Background(), decideOnce); n != 1 || fired[0] != "a" {
		t.Fatalf("third call fired %v", fired)
	}
	if len(reminderStreams(t, j, testNow.Add(time.Hour-time.Millisecond))) != 0 || len(reminderStreams(t, j, testNow.Add(time.Hour))) != 1 {
		t.Fatal("the reminder is not at the last timer")
	}
	if got := countTypes(eventTypes(t, j, "restaurant/r1"), "platter.TimerFired"); got != 4 {
		t.Fatalf("%d TimerFired, want 4", got)
	}
	// Timers survive a reload; a kind without a timer decision removes a fired timer without effect.
	e2 := loadRestaurant(t, deps, "restaurant/r1")
	if len(e2.box.timers) != 1 || !e2.box.timers["c"].Equal(testNow.Add(time.Hour)) {
		t.Fatalf("reloaded timers %v", e2.box.timers)
	}
	set(testNow.Add(2 * time.Hour))
	if n, _, err := e2.fireDue(context.Background(), nil); n != 1 || err != nil {
		t.Fatalf("firing c without a decision: %d, %v", n, err)
	}
	if len(e2.box.timers) != 0 || len(reminderStreams(t, j, testNow.Add(100*time.Hour))) != 0 {
		t.Fatal("timers or reminder left after the last firing")
	}
}

func countTypes(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

// The mailbox (outbox, inbox marks, timers) travels in snapshots; inbox marks older than the retention are
// dropped when a snapshot is taken.
func TestEntityMailboxInSnapshots(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	deps.SnapshotEvery = 1
	now, set := settableNow(testNow)
	deps.Now = now
	e := createdRestaurantEntity(t, deps)
	if _, err := e.receive(context.Background(), env(t, "order/old", 3, &messages.FoodReady{OrderId: "x"}), decideDeliverRestaurant); err != nil {
		t.Fatal(err)
	}
	set(testNow.Add(deps.Workflow.InboxRetention + time.Hour))
	if _, err := e.receive(context.Background(), env(t, "order/new", 7, &messages.FoodReady{OrderId: "y"}), decideDeliverRestaurant); err != nil {
		t.Fatal(err)
	}
	if err := e.execute(context.Background(), "send", menuCommand("send", 1), func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		out, err := sendAndMenu(t, 1)(s, now)
		return append(out, setTimer("t", now.Add(time.Minute))), err
	}); err != nil {
		t.Fatal(err)
	}
	snap, events, err := j.Load(context.Background(), "restaurant/r1")
	if err != nil || len(events) != 0 || snap.Seq != e.seq {
		t.Fatalf("load: snapshot %d, %d events after it, %v; want a snapshot at %d", snap.Seq, len(events), err, e.seq)
	}
	e2 := loadRestaurant(t, deps, "restaurant/r1")
	if _, ok := e2.box.inbox["order/old"]; ok {
		t.Fatal("an inbox mark older than the retention survived the snapshot")
	}
	if e2.box.inbox["order/new"].GetOutSeq() != 7 || len(e2.pendingOutbox()) != 2 || !e2.box.timers["t"].Equal(now().Add(time.Minute)) {
		t.Fatalf("restored mailbox: inbox %v, outbox %v, timers %v", e2.box.inbox, e2.box.outbox, e2.box.timers)
	}
	for seq, added := range e.box.outbox {
		if !proto.Equal(added, e2.box.outbox[seq]) {
			t.Fatalf("outbox entry %d: %v, restored %v", seq, added, e2.box.outbox[seq])
		}
	}
}

func TestBackoff(t *testing.T) {
	cfg := WorkflowConfig{OutboxRetryMin: 100 * time.Millisecond, OutboxRetryMax: time.Second}
	for i := 0; i < 200; i++ {
		for failures, base := range map[int]time.Duration{1: 100, 2: 200, 3: 400, 4: 800, 5: 1000, 30: 1000} {
			base *= time.Millisecond
			d := backoff(cfg, failures)
			if d < base-base/5 || d > base+base/5 {
				t.Fatalf("backoff after %d failures = %v, want %v ± 20%%", failures, d, base)
			}
		}
	}
}

func TestNotifyFeedItems(t *testing.T) {
	item, err := notify(&messages.DasherAssigned{OrderId: "o_1", DasherId: "d_1"}, testNow)
	if err != nil || item.GetType() != "DASHER_ASSIGNED" || item.GetOrderId() != "o_1" || !item.GetAt().AsTime().Equal(testNow) {
		t.Fatalf("notify: %v, %v", item, err)
	}
	var back messages.DasherAssigned
	if err := item.GetData().UnmarshalTo(&back); err != nil || back.GetDasherId() != "d_1" {
		t.Fatalf("data %v: %v", &back, err)
	}
	if _, err := notify(&messages.Wake{}, testNow); err == nil {
		t.Fatal("notify accepted a message that is not a workflow message")
	}
	for name, typ := range feedTypes {
		if typ == "" || name == "" {
			t.Fatalf("feed type table entry %q → %q", name, typ)
		}
	}
	entry, err := feedEntry(item)
	if err != nil {
		t.Fatal(err)
	}
	entry.Cursor = 7
	back2, err := feedItem(entry)
	if err != nil || back2.GetCursor() != 7 || back2.GetType() != "DASHER_ASSIGNED" {
		t.Fatalf("feed entry round trip: %v, %v", back2, err)
	}
}
