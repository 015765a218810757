package actors_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

func createCommand() *messages.CreateRestaurant {
	return &messages.CreateRestaurant{CommandId: "create-1", Name: "Thai Corner", Cuisine: "thai",
		Position: &messages.Position{Lat: 37.77, Lng: -122.41}}
}

func menuCommand() *messages.UpdateMenu {
	return &messages.UpdateMenu{CommandId: "menu-1", Items: []*messages.MenuItem{
		{Id: "m1", Name: "Pad thai", PriceCents: 1250, Tags: []string{"noodles"}},
		{Id: "m2", Name: "Green curry", Description: "hot", PriceCents: 1400},
	}}
}

func TestRestaurantInCluster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	n := startNode(t, path, nodeOptions{})
	const id = "r_1"
	r := n.restaurant(id)

	// A read never creates.
	_, err := r.Get(&messages.GetRestaurant{})
	wantCode(t, "get before create", err, messages.ErrorReason_NOT_FOUND)
	if got := domainLen(t, n.journal, "restaurant/"+id); got != 0 {
		t.Fatalf("get wrote %d events", got)
	}
	// The empty activation stops; a request that reached its mailbox behind the stop would be dropped by protoactor
	// and wait out its whole timeout with the test provider's request path, so wait for the stop.
	waitFor(t, "the empty activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) == 1 })

	view, err := r.Create(createCommand())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	want := &messages.RestaurantView{Id: id, Name: "Thai Corner", Cuisine: "thai",
		Position: &messages.Position{Lat: 37.77, Lng: -122.41}}
	if view.GetCreatedAt().AsTime() != clock {
		t.Fatalf("created_at = %v, want %v", view.GetCreatedAt().AsTime(), clock)
	}
	view.CreatedAt = nil
	if !proto.Equal(view, want) {
		t.Fatalf("create answered %v, want %v", view, want)
	}

	// Retried (same command id): the same answer, no second event.
	again, err := r.Create(createCommand())
	if err != nil || again.GetName() != "Thai Corner" {
		t.Fatalf("retried create: %v, %v", again, err)
	}
	if got := domainLen(t, n.journal, "restaurant/"+id); got != 2 {
		t.Fatalf("stream has %d events after a retried create, want 2 (CommandApplied, RestaurantCreated)", got)
	}
	other := createCommand()
	other.CommandId = "create-2"
	_, err = r.Create(other)
	wantCode(t, "second create", err, messages.ErrorReason_ALREADY_EXISTS)
	reused := createCommand()
	reused.Name = "Different"
	_, err = r.Create(reused)
	wantCode(t, "create with a reused command id", err, messages.ErrorReason_IDEMPOTENCY_KEY_REUSED)

	// Menu.
	bad := menuCommand()
	bad.Items[1].PriceCents = 0
	_, err = r.UpdateMenu(bad)
	wantCode(t, "invalid menu", err, messages.ErrorReason_INVALID_ARGUMENT)
	view, err = r.UpdateMenu(menuCommand())
	if err != nil || len(view.GetMenu()) != 2 || view.GetMenu()[1].GetName() != "Green curry" {
		t.Fatalf("update menu: %v, %v", view, err)
	}
	if _, err := r.UpdateMenu(menuCommand()); err != nil {
		t.Fatalf("retried update menu: %v", err)
	}
	got, err := r.Get(&messages.GetRestaurant{})
	if err != nil || len(got.GetMenu()) != 2 || got.GetName() != "Thai Corner" {
		t.Fatalf("get: %v, %v", got, err)
	}
	if n := domainLen(t, n.journal, "restaurant/"+id); n != 4 {
		t.Fatalf("stream has %d events, want 4", n)
	}
	// Menu update of a restaurant never created.
	_, err = n.restaurant("r_none").UpdateMenu(menuCommand())
	wantCode(t, "menu of an unknown restaurant", err, messages.ErrorReason_NOT_FOUND)

	// Restart: stop the member, reopen the same file in a new member.
	n.stop()
	n2 := startNode(t, path, nodeOptions{})
	r2 := n2.restaurant(id)
	reloaded, err := r2.Get(&messages.GetRestaurant{})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if !proto.Equal(reloaded, got) {
		t.Fatalf("after restart %v, want %v", reloaded, got)
	}
	// Commands applied before the restart are still recognised.
	if _, err := r2.Create(createCommand()); err != nil {
		t.Fatalf("create retried after restart: %v", err)
	}
	if n := domainLen(t, n2.journal, "restaurant/"+id); n != 4 {
		t.Fatalf("stream has %d events after restart and retry, want 4", n)
	}
}

// Another activation of the same identity (elsewhere) appends behind this one's back: this activation's next
// write is refused by the fence, the caller gets UNAVAILABLE, the activation stops, and the retried command is
// applied by a fresh activation on top of the other's events.
func TestRestaurantLosingTheWriteRaceStopsTheActivation(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{})
	const id, stream = "r_race", "restaurant/r_race"
	r := n.restaurant(id)
	if _, err := r.Create(createCommand()); err != nil {
		t.Fatal(err)
	}
	// The other activation's write: a command record and a menu, after this activation's last write (its outbox,
	// the listing sent to the areas, is acknowledged first, so that the activation writes nothing meanwhile).
	last := waitOutboxDrained(t, n.journal, stream)
	marker, _ := proto.Marshal(&messages.CommandApplied{CommandId: "elsewhere"})
	menu, _ := proto.Marshal(&messages.MenuUpdated{Items: []*messages.MenuItem{{Id: "x", Name: "Elsewhere soup", PriceCents: 500}}})
	if _, err := n.journal.Append(context.Background(), stream, last, []journal.Event{
		{Type: "platter.CommandApplied", Data: marker}, {Type: "platter.MenuUpdated", Data: menu},
	}); err != nil {
		t.Fatal(err)
	}

	_, err := r.UpdateMenu(menuCommand())
	wantCode(t, "update by the stale activation", err, messages.ErrorReason_UNAVAILABLE)
	if got := domainLen(t, n.journal, stream); got != 4 {
		t.Fatalf("stream has %d events after the refused write, want 4", got)
	}
	waitFor(t, "the stale activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) == 1 })

	// The caller retries with the same command id: a fresh activation applies it after the other's events.
	view, err := r.UpdateMenu(menuCommand())
	if err != nil || len(view.GetMenu()) != 2 {
		t.Fatalf("retried update: %v, %v", view, err)
	}
	if got := domainLen(t, n.journal, stream); got != 6 {
		t.Fatalf("stream has %d events after the retry, want 6", got)
	}
	if a := n.logs.count("activated", id); a != 2 {
		t.Fatalf("%d activations, want 2", a)
	}
}

func TestRestaurantPassivatesAndReactivates(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{passivateAfter: 100 * time.Millisecond})
	const id = "r_idle"
	if _, err := n.restaurant(id).Create(createCommand()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) == 1 })
	got, err := n.restaurant(id).Get(&messages.GetRestaurant{})
	if err != nil || got.GetName() != "Thai Corner" {
		t.Fatalf("get after passivation: %v, %v", got, err)
	}
	if a := n.logs.count("activated", id); a != 2 {
		t.Fatalf("%d activations, want 2 (before and after passivation)", a)
	}
}

func TestGetOfUnknownRestaurantLeavesNothingBehind(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{})
	const id = "r_unknown"
	_, err := n.restaurant(id).Get(&messages.GetRestaurant{})
	wantCode(t, "get", err, messages.ErrorReason_NOT_FOUND)
	waitFor(t, "the empty activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) == 1 })
	names, err := n.journal.Streams(context.Background(), "", "", 0)
	if err != nil || len(names) != 0 {
		t.Fatalf("streams after a get = %v, %v", names, err)
	}
}

// Two nodes' kinds built in one process, each over its own Deps and file: a node's activations use its own journal
// (no Deps in a global, where the last Kinds call would win), and Kinds can be called again for the same Deps.
func TestKindsKeepDepsPerNode(t *testing.T) {
	dir := t.TempDir()
	depsA, ja, logsA := nodeDeps(t, filepath.Join(dir, "a.db"), nodeOptions{})
	depsB, jb, logsB := nodeDeps(t, filepath.Join(dir, "b.db"), nodeOptions{})
	kindsA := actors.Kinds(depsA)
	_ = actors.Kinds(depsA) // again, as after a self-fence: harmless
	kindsB := actors.Kinds(depsB)

	a := startMember(t, kindsA, ja, logsA)
	if _, err := a.restaurant("r_1").Create(createCommand()); err != nil {
		t.Fatal(err)
	}
	if na, nb := domainLen(t, ja, "restaurant/r_1"), domainLen(t, jb, "restaurant/r_1"); na != 2 || nb != 0 {
		t.Fatalf("node A's create wrote %d events to A's journal and %d to B's; want 2 and 0", na, nb)
	}
	a.leave() // keep A's journal open: B must not touch it

	b := startMember(t, kindsB, jb, logsB)
	_, err := b.restaurant("r_1").Get(&messages.GetRestaurant{})
	wantCode(t, "get on node B", err, messages.ErrorReason_NOT_FOUND)
	waitFor(t, "the empty activation to stop", 5*time.Second, func() bool { return logsB.count("deactivated", "r_1") == 1 })
	other := createCommand()
	other.Name = "Other Place"
	if _, err := b.restaurant("r_1").Create(other); err != nil {
		t.Fatal(err)
	}
	got, err := b.restaurant("r_1").Get(&messages.GetRestaurant{})
	if err != nil || got.GetName() != "Other Place" {
		t.Fatalf("get on node B = %v, %v", got, err)
	}
	if na, nb := domainLen(t, ja, "restaurant/r_1"), domainLen(t, jb, "restaurant/r_1"); na != 2 || nb != 2 {
		t.Fatalf("journals hold %d and %d events; want 2 and 2", na, nb)
	}
	if logsA.count("activated", "r_1") != 1 || logsB.count("activated", "r_1") != 2 {
		t.Fatalf("activations logged to A: %d, to B: %d; want 1 and 2 (each node's own logger)",
			logsA.count("activated", "r_1"), logsB.count("activated", "r_1"))
	}
}

func TestKindsPanicsWithoutJournal(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Kinds accepted Deps without a journal")
		}
	}()
	actors.Kinds(actors.Deps{})
}
