package actors_test

// Component tests of the messaging machinery every kind shares (outbox, inbox, timers, feeds) in a one-node
// cluster over a temp-dir bbolt. The receiver in the outbox tests is a probe kind registered as "Order"
// (actors.ProbeKind, export_test.go): the shared grain machinery with a decision that records every applied
// message as a feed entry, so "applied exactly once" is "exactly one feed entry".

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// startProbeNode starts a node whose "Order" kind is a probe over the node's own Deps.
func startProbeNode(t *testing.T, path string, opts nodeOptions, sw *actors.ProbeSwitch) *node {
	t.Helper()
	return startProbeNodeWith(t, path, opts, sw, actors.ProbeKind)
}

func startProbeNodeWith(t *testing.T, path string, opts nodeOptions, sw *actors.ProbeSwitch,
	probe func(actors.Deps, string, *actors.ProbeSwitch) *pcluster.Kind) *node {
	t.Helper()
	deps, j, logs := nodeDeps(t, path, opts)
	kinds := slices.DeleteFunc(actors.Kinds(deps), func(k *pcluster.Kind) bool { return k.Kind == actors.KindOrder })
	kinds = append(kinds, probe(deps, actors.KindOrder, sw))
	n := startMember(t, kinds, j, logs)
	n.deps = deps
	if !opts.noScanner {
		c := n.cluster
		n.scanner = actors.StartReminderScanner(deps, func() *pcluster.Cluster { return c })
	}
	return n
}

// readyCustomer creates customer id with an address, a card and one cart line, through the grain.
func readyCustomer(t *testing.T, n *node, id string) {
	t.Helper()
	c := n.customer(id)
	steps := []func() error{
		func() error {
			_, err := c.Create(&messages.CreateCustomer{CommandId: "create", Name: "Ada", Email: "ada@example.com"})
			return err
		},
		func() error {
			_, err := c.SetAddress(&messages.SetAddress{CommandId: "addr", Address: &messages.Address{
				Line1: "1 Market St", City: "San Francisco", Position: &messages.Position{Lat: 37.79, Lng: -122.39}}})
			return err
		},
		func() error {
			_, err := c.SetPaymentMethod(&messages.SetPaymentMethod{CommandId: "card", CardNumber: actors.TestCardVisa,
				ExpMonth: 12, ExpYear: 2030, Cvc: "123"})
			return err
		},
		func() error {
			_, err := c.AddToCart(&messages.AddToCart{CommandId: "add", RestaurantId: "r_1", RestaurantName: "Thai Corner",
				Pickup: &messages.Position{Lat: 37.77, Lng: -122.41}, Quantity: 2,
				Item: &messages.MenuItem{Id: "m1", Name: "Pad thai", PriceCents: 1250}})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("customer setup step %d: %v", i, err)
		}
	}
}

// outboxSeqs returns the sequence numbers of the OutboxAdded events of stream.
func outboxSeqs(t *testing.T, j journal.Journal, stream string) []uint64 {
	t.Helper()
	events, err := j.Events(context.Background(), stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range events {
		if e.Type == "platter.OutboxAdded" {
			out = append(out, e.Seq)
		}
	}
	return out
}

func envelope(t *testing.T, from string, seq uint64, payload proto.Message) *messages.Envelope {
	t.Helper()
	p, err := anypb.New(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &messages.Envelope{FromStream: from, OutSeq: seq, Payload: p}
}

func deliverTo(t *testing.T, n *node, kind, id string, env *messages.Envelope) {
	t.Helper()
	var err error
	switch kind {
	case actors.KindOrder:
		_, err = messages.GetOrderGrainClient(n.cluster, id).Deliver(env)
	case actors.KindCustomer:
		_, err = n.customer(id).Deliver(env)
	case actors.KindRestaurant:
		_, err = n.restaurant(id).Deliver(env)
	default:
		t.Fatalf("deliverTo: kind %s", kind)
	}
	if err != nil {
		t.Fatalf("deliver %s/%d to %s/%s: %v", env.GetFromStream(), env.GetOutSeq(), kind, id, err)
	}
}

// The customer orders while the Order's receiver is down: the PlaceOrder stays in the outbox (with a reminder) and
// is retried with back-off; once the receiver is up it is applied exactly once, acknowledged, and the reminder is
// gone. A duplicate Envelope (the same sender and out_seq, or an older one) is acknowledged without effect.
func TestOutboxDeliversExactlyOnceAcrossReceiverOutage(t *testing.T) {
	sw := &actors.ProbeSwitch{}
	sw.SetDown("*", true)
	clk := newTestClock()
	n := startProbeNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{clock: clk}, sw)
	readyCustomer(t, n, "c_1")
	const stream = "customer/c_1"

	view, err := n.customer("c_1").OrderCart(&messages.OrderCart{CommandId: "order-1"})
	if err != nil {
		t.Fatalf("order cart: %v", err)
	}
	orderID := actors.OrderIDFor("c_1", "order-1")
	if view.GetLastOrder().GetOrderId() != orderID || view.GetLastOrder().GetTotalCents() != 2500 || view.GetCart() != nil {
		t.Fatalf("order cart answered %v", view)
	}
	waitFor(t, "three refused deliveries", 10*time.Second, func() bool { return sw.Refused() >= 3 })
	if !hasReminder(t, n.journal, stream, clk.Now().Add(time.Hour)) {
		t.Fatal("a sender with a pending outbox has no reminder")
	}
	if got := readFeed(t, n, actors.KindOrder, orderID, 0); len(got) != 0 {
		t.Fatalf("a down receiver applied %d messages", len(got))
	}

	sw.SetDown("*", false)
	items := waitForFeed(t, n, actors.KindOrder, orderID, 0, 1)
	waitOutboxDrained(t, n.journal, stream)
	var place messages.PlaceOrder
	if err := items[0].GetData().UnmarshalTo(&place); err != nil {
		t.Fatal(err)
	}
	if place.GetCommandId() != orderID || place.GetCustomerId() != "c_1" || place.GetRestaurantId() != "r_1" ||
		len(place.GetLines()) != 1 || place.GetLines()[0].GetQuantity() != 2 || place.GetPaymentToken() == "" ||
		place.GetDropoff().GetLat() != 37.79 || place.GetPickup().GetLat() != 37.77 {
		t.Fatalf("the Order received %v", &place)
	}
	if hasReminder(t, n.journal, stream, clk.Now().Add(time.Hour)) {
		t.Fatal("the reminder survived the acknowledgement")
	}

	// Duplicates: the same envelope again, and an older out_seq of the same sender.
	seqs := outboxSeqs(t, n.journal, stream)
	if len(seqs) != 1 {
		t.Fatalf("customer outbox entries %v, want 1", seqs)
	}
	payload, _ := anypb.New(&place)
	deliverTo(t, n, actors.KindOrder, orderID, &messages.Envelope{FromStream: stream, OutSeq: seqs[0], Payload: payload})
	deliverTo(t, n, actors.KindOrder, orderID, &messages.Envelope{FromStream: stream, OutSeq: seqs[0] - 1, Payload: payload})
	if got := readFeed(t, n, actors.KindOrder, orderID, 0); len(got) != 1 {
		t.Fatalf("after duplicates the receiver applied %d messages, want 1", len(got))
	}
	if got := countType(t, n.journal, "order/"+orderID, "platter.InboxAdvanced"); got != 1 {
		t.Fatalf("receiver recorded %d InboxAdvanced, want 1", got)
	}
	// A retried OrderCart names the same order and sends nothing new.
	again, err := n.customer("c_1").OrderCart(&messages.OrderCart{CommandId: "order-1"})
	if err != nil || again.GetLastOrder().GetOrderId() != orderID {
		t.Fatalf("retried order cart: %v, %v", again, err)
	}
	if got := outboxSeqs(t, n.journal, stream); len(got) != 1 {
		t.Fatalf("a retried OrderCart added outbox entries: %v", got)
	}
}

// Two entries to one destination go one at a time, in out_seq order, each applied once, across an outage of the
// destination.
func TestOutboxKeepsOrderPerDestination(t *testing.T) {
	for name, probe := range map[string]func(actors.Deps, string, *actors.ProbeSwitch) *pcluster.Kind{
		"routed":   actors.ProbeKind,
		"unrouted": actors.ProbeKindUnrouted, // a kind without the Receive override still delivers
	} {
		t.Run(name, func(t *testing.T) { testOutboxOrder(t, probe) })
	}
}

func testOutboxOrder(t *testing.T, probe func(actors.Deps, string, *actors.ProbeSwitch) *pcluster.Kind) {
	sw := &actors.ProbeSwitch{}
	sw.SetDown("sink-relay1", true)
	n := startProbeNodeWith(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{}, sw, probe)

	deliverTo(t, n, actors.KindOrder, "relay1", envelope(t, "test/src", 1, &messages.FoodReady{OrderId: "x"}))
	deliverTo(t, n, actors.KindOrder, "relay1", envelope(t, "test/src", 2, &messages.FoodReady{OrderId: "y"}))
	waitFor(t, "refused deliveries to the sink", 10*time.Second, func() bool { return sw.Refused() >= 2 })
	sw.SetDown("sink-relay1", false)

	items := waitForFeed(t, n, actors.KindOrder, "sink-relay1", 0, 4)
	waitOutboxDrained(t, n.journal, "order/relay1")
	var got []string
	for _, it := range readFeed(t, n, actors.KindOrder, "sink-relay1", 0) {
		got = append(got, it.GetOrderId())
	}
	if want := []string{"x-a", "x-b", "y-a", "y-b"}; !slices.Equal(got, want) || len(items) != 4 {
		t.Fatalf("sink applied %v, want %v", got, want)
	}
}

// A pending outbox survives a restart: the reminder scanner of the restarted node wakes the sender, which
// delivers; the receiver applies the message once.
func TestOutboxRedeliversAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	clk := newTestClock()
	down := &actors.ProbeSwitch{}
	down.SetDown("*", true)
	n := startProbeNode(t, path, nodeOptions{clock: clk}, down)
	readyCustomer(t, n, "c_1")
	if _, err := n.customer("c_1").OrderCart(&messages.OrderCart{CommandId: "order-1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a refused delivery", 10*time.Second, func() bool { return down.Refused() >= 1 })
	n.stop()

	n2 := startProbeNode(t, path, nodeOptions{clock: clk}, &actors.ProbeSwitch{})
	orderID := actors.OrderIDFor("c_1", "order-1")
	// Nothing wakes the customer before its reminder is due (DeliverTimeout after the append, by the test clock).
	if got := n2.logs.count("activated", "c_1"); got != 0 {
		t.Fatalf("customer activated %d times before its reminder was due", got)
	}
	clk.Advance(3 * time.Second)
	waitForFeed(t, n2, actors.KindOrder, orderID, 0, 1)
	waitOutboxDrained(t, n2.journal, "customer/c_1")
	if got := readFeed(t, n2, actors.KindOrder, orderID, 0); len(got) != 1 {
		t.Fatalf("receiver applied %d messages, want 1", len(got))
	}
	if n2.logs.count("woken", "*") == 0 {
		t.Fatal("the customer was not woken by the reminder scanner")
	}
	if hasReminder(t, n2.journal, "customer/c_1", clk.Now().Add(time.Hour)) {
		t.Fatal("the reminder survived the acknowledgement")
	}
}

// Timers are durable: set, then the node stops; one timer falls due while the node is down and fires at once
// after the restart, the other fires when its due time comes, each exactly once.
func TestTimersFireAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	clk := newTestClock()
	start := clk.Now()
	n := startProbeNode(t, path, nodeOptions{clock: clk}, nil)
	const id, stream = "timers", "order/timers"
	deliverTo(t, n, actors.KindOrder, id, envelope(t, "test/src", 1, &messages.TimerSet{Name: "soon", Due: timestamppb.New(start.Add(10 * time.Second))}))
	deliverTo(t, n, actors.KindOrder, id, envelope(t, "test/src", 2, &messages.TimerSet{Name: "later", Due: timestamppb.New(start.Add(time.Minute))}))
	if !hasReminder(t, n.journal, stream, start.Add(10*time.Second)) || hasReminder(t, n.journal, stream, start.Add(9*time.Second)) {
		t.Fatal("the reminder is not at the earliest timer")
	}
	n.stop()

	clk.Advance(30 * time.Second) // "soon" falls due while the node is down
	n2 := startProbeNode(t, path, nodeOptions{clock: clk}, nil)
	items := waitForFeed(t, n2, actors.KindOrder, id, 0, 3)
	if items[2].GetType() != actors.ProbeFired || items[2].GetOrderId() != "soon" {
		t.Fatalf("third entry %v, want the late timer fired", items[2])
	}
	// The reminder moved to "later"; "later" has not fired.
	waitFor(t, "the reminder to move to the next timer", 5*time.Second, func() bool {
		return !hasReminder(t, n2.journal, stream, clk.Now())
	})
	if !hasReminder(t, n2.journal, stream, start.Add(time.Minute)) {
		t.Fatal("no reminder for the remaining timer")
	}
	if got := readFeed(t, n2, actors.KindOrder, id, 0); len(got) != 3 {
		t.Fatalf("feed %v before the second timer's due time", feedTypes(got))
	}

	clk.Set(start.Add(time.Minute))
	items = waitForFeed(t, n2, actors.KindOrder, id, 0, 4)
	if items[3].GetType() != actors.ProbeFired || items[3].GetOrderId() != "later" {
		t.Fatalf("fourth entry %v, want the timer fired at its due time", items[3])
	}
	waitFor(t, "the reminder to go", 5*time.Second, func() bool {
		return !hasReminder(t, n2.journal, stream, clk.Now().Add(time.Hour))
	})
	if got := countType(t, n2.journal, stream, "platter.TimerFired"); got != 2 {
		t.Fatalf("%d TimerFired events, want 2", got)
	}
	if got := readFeed(t, n2, actors.KindOrder, id, 0); len(got) != 4 {
		t.Fatalf("feed %v, want 2 received and 2 fired", feedTypes(got))
	}
}

// pollFeed calls the customer's PollFeed through the cluster with the timeout a caller should use.
func pollFeed(n *node, id string, after uint64, wait time.Duration) (*messages.FeedPage, time.Duration, error) {
	req := &messages.PollFeed{After: after, WaitMs: wait.Milliseconds()}
	start := time.Now()
	page, err := n.customer(id).PollFeed(req, pcluster.WithTimeout(actors.PollFeedTimeout(req)))
	return page, time.Since(start), err
}

// Long polls: entries after the cursor come back at once; a poll with nothing to read is parked and answered when
// an entry arrives; a poll whose wait ends gets an empty page; after a restart the feed resumes from the cursor.
func TestFeedLongPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	n := startNode(t, path, nodeOptions{})
	const id = "c_feed"
	if _, err := n.customer(id).Create(&messages.CreateCustomer{CommandId: "create", Name: "Bo", Email: "bo@example.com"}); err != nil {
		t.Fatal(err)
	}
	from := "order/o_1"
	deliverTo(t, n, actors.KindCustomer, id, envelope(t, from, 1, &messages.OrderPlaced{OrderId: "o_1", CustomerId: id, RestaurantId: "r_1", TotalCents: 900}))

	// Entries waiting: answered at once, although the poll may wait 20 s.
	page, took, err := pollFeed(n, id, 0, 20*time.Second)
	if err != nil || len(page.GetEntries()) != 1 || page.GetNextCursor() != 1 {
		t.Fatalf("poll with an entry waiting: %v, %v", page, err)
	}
	if e := page.GetEntries()[0]; e.GetCursor() != 1 || e.GetType() != "ORDER_PLACED" || e.GetOrderId() != "o_1" {
		t.Fatalf("entry %v", e)
	}
	if took > 10*time.Second {
		t.Fatalf("a poll with an entry waiting took %v", took)
	}

	// Nothing after cursor 1: the poll is parked, then woken by the next entry.
	type result struct {
		page *messages.FeedPage
		took time.Duration
		err  error
	}
	parked := make(chan result, 1)
	go func() {
		p, d, err := pollFeed(n, id, 1, 20*time.Second)
		parked <- result{p, d, err}
	}()
	waitFor(t, "the poll to park", 5*time.Second, func() bool { return n.logs.count("poll parked", id) == 1 })
	deliverTo(t, n, actors.KindCustomer, id, envelope(t, from, 2, &messages.OrderAccepted{OrderId: "o_1", CustomerId: id}))
	var r result
	select {
	case r = <-parked:
	case <-time.After(15 * time.Second):
		t.Fatal("the parked poll was not answered when an entry arrived")
	}
	if r.err != nil || len(r.page.GetEntries()) != 1 || r.page.GetEntries()[0].GetCursor() != 2 || r.page.GetEntries()[0].GetType() != "ORDER_ACCEPTED" {
		t.Fatalf("woken poll: %v, %v", r.page, r.err)
	}

	// Nothing arrives: an empty page when the wait ends.
	page, took, err = pollFeed(n, id, 2, 300*time.Millisecond)
	if err != nil || len(page.GetEntries()) != 0 || page.GetNextCursor() != 2 {
		t.Fatalf("poll that waited in vain: %v, %v", page, err)
	}
	if took < 300*time.Millisecond {
		t.Fatalf("an empty poll answered after %v, before its wait of 300ms", took)
	}

	// Restart: the cursor still addresses the same entries; new entries continue the numbering.
	n.stop()
	n2 := startNode(t, path, nodeOptions{})
	page, _, err = pollFeed(n2, id, 1, 0)
	if err != nil || len(page.GetEntries()) != 1 || page.GetEntries()[0].GetType() != "ORDER_ACCEPTED" || page.GetNextCursor() != 2 {
		t.Fatalf("poll after restart: %v, %v", page, err)
	}
	deliverTo(t, n2, actors.KindCustomer, id, envelope(t, from, 2, &messages.OrderAccepted{OrderId: "o_1", CustomerId: id})) // duplicate
	deliverTo(t, n2, actors.KindCustomer, id, envelope(t, from, 3, &messages.OrderCancelled{OrderId: "o_1", By: messages.CancelledBy_CANCELLED_BY_CUSTOMER}))
	page, _, err = pollFeed(n2, id, 2, 5*time.Second)
	if err != nil || len(page.GetEntries()) != 1 || page.GetEntries()[0].GetCursor() != 3 || page.GetEntries()[0].GetType() != "ORDER_CANCELLED" {
		t.Fatalf("poll after restart and a new entry: %v, %v", page, err)
	}
	orders, err := n2.customer(id).ListOrders(&messages.ListCustomerOrders{})
	if err != nil || len(orders.GetOrders()) != 1 || orders.GetOrders()[0].GetStatus() != actors.StatusCancelled {
		t.Fatalf("orders index: %v, %v", orders, err)
	}
}

// A parked poll is answered with an empty page when its activation stops (here: passivation), and the client
// polls again from the same cursor.
func TestParkedPollAnsweredWhenTheActivationStops(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{passivateAfter: 200 * time.Millisecond})
	const id = "c_idle"
	if _, err := n.customer(id).Create(&messages.CreateCustomer{CommandId: "create", Name: "Cy", Email: "cy@example.com"}); err != nil {
		t.Fatal(err)
	}
	page, took, err := pollFeed(n, id, 0, 8*time.Second)
	if err != nil || len(page.GetEntries()) != 0 || page.GetNextCursor() != 0 {
		t.Fatalf("poll of a passivating actor: %v, %v", page, err)
	}
	if took >= 8*time.Second {
		t.Fatalf("the poll waited its whole wait (%v) although the activation stopped", took)
	}
	waitFor(t, "the activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) >= 1 })
}

// The restaurant receives the Order's messages: open orders and its feed, duplicates ignored.
func TestRestaurantReceivesOrderMessages(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{})
	const id = "r_wf"
	if _, err := n.restaurant(id).Create(createCommand()); err != nil {
		t.Fatal(err)
	}
	from := "order/o_7"
	placed := envelope(t, from, 1, &messages.OrderPlaced{OrderId: "o_7", CustomerId: "c_1", RestaurantId: id, TotalCents: 1250,
		Lines: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 1, PriceCents: 1250}}})
	deliverTo(t, n, actors.KindRestaurant, id, placed)
	deliverTo(t, n, actors.KindRestaurant, id, placed) // duplicate
	open, err := n.restaurant(id).ListOrders(&messages.ListRestaurantOrders{})
	if err != nil || len(open.GetOrders()) != 1 || open.GetOrders()[0].GetStatus() != actors.StatusPendingAcceptance {
		t.Fatalf("open orders: %v, %v", open, err)
	}
	deliverTo(t, n, actors.KindRestaurant, id, envelope(t, from, 2, &messages.OrderAccepted{OrderId: "o_7"}))
	deliverTo(t, n, actors.KindRestaurant, id, envelope(t, from, 3, &messages.DasherAssigned{OrderId: "o_7", DasherId: "d_1"}))
	open, _ = n.restaurant(id).ListOrders(&messages.ListRestaurantOrders{})
	if o := open.GetOrders()[0]; o.GetStatus() != actors.StatusDasherAssigned || o.GetDasherId() != "d_1" {
		t.Fatalf("open order after assignment: %v", o)
	}
	deliverTo(t, n, actors.KindRestaurant, id, envelope(t, from, 4, &messages.OrderDelivered{OrderId: "o_7", DasherId: "d_1"}))
	open, _ = n.restaurant(id).ListOrders(&messages.ListRestaurantOrders{})
	if len(open.GetOrders()) != 0 {
		t.Fatalf("open orders after delivery: %v", open)
	}
	want := []string{"ORDER_PLACED", "DASHER_ASSIGNED", "ORDER_DELIVERED"}
	if got := feedTypes(readFeed(t, n, actors.KindRestaurant, id, 0)); !slices.Equal(got, want) {
		t.Fatalf("restaurant feed %v, want %v", got, want)
	}
}

// Beyond WorkflowConfig.FeedMaxParked parked polls, the oldest is ended with an empty page; the others are
// answered when an entry arrives.
func TestParkedPollsAreBounded(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{workflow: func(w *actors.WorkflowConfig) { w.FeedMaxParked = 2 }})
	const id = "c_many"
	if _, err := n.customer(id).Create(&messages.CreateCustomer{CommandId: "create", Name: "Di", Email: "di@example.com"}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		i    int
		page *messages.FeedPage
		err  error
	}
	results := make(chan result, 3)
	for i := range 3 {
		go func() {
			p, _, err := pollFeed(n, id, 0, 20*time.Second)
			results <- result{i, p, err}
		}()
		waitFor(t, "the poll to park", 5*time.Second, func() bool { return n.logs.count("poll parked", id) == i+1 })
	}
	first := <-results
	if first.i != 0 || first.err != nil || len(first.page.GetEntries()) != 0 {
		t.Fatalf("first answer: poll %d, %v, %v; want poll 0 ended empty", first.i, first.page, first.err)
	}
	deliverTo(t, n, actors.KindCustomer, id, envelope(t, "order/o_1", 1, &messages.OrderPlaced{OrderId: "o_1", CustomerId: id}))
	for range 2 {
		r := <-results
		if r.err != nil || len(r.page.GetEntries()) != 1 {
			t.Fatalf("poll %d: %v, %v", r.i, r.page, r.err)
		}
	}
}
