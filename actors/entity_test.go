package actors

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

func openTestJournal(t *testing.T) (*journal.Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.OpenBolt(path, journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, path
}

func testDeps(j journal.Journal) *Deps {
	d := Deps{Journal: j, Now: func() time.Time { return testNow }}.withDefaults()
	return &d
}

func loadRestaurant(t *testing.T, deps *Deps, stream string) *entity[*messages.RestaurantState] {
	t.Helper()
	e, err := loadEntity(context.Background(), deps, stream, &messages.RestaurantState{}, applyRestaurant)
	if err != nil {
		t.Fatalf("load %s: %v", stream, err)
	}
	return e
}

func create(e *entity[*messages.RestaurantState], cmd *messages.CreateRestaurant) error {
	return e.execute(context.Background(), cmd.GetCommandId(), cmd, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return decideCreateRestaurant(s, cmd, now)
	})
}

func updateMenu(e *entity[*messages.RestaurantState], cmd *messages.UpdateMenu) error {
	return e.execute(context.Background(), cmd.GetCommandId(), cmd, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return decideUpdateMenu(s, cmd, now)
	})
}

// eventTypes lists the types stored in stream.
func eventTypes(t *testing.T, j journal.Journal, stream string) []string {
	t.Helper()
	events, err := j.Events(context.Background(), stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	return types
}

func menuCommand(id string, prices ...int64) *messages.UpdateMenu {
	cmd := &messages.UpdateMenu{CommandId: id}
	for i, p := range prices {
		cmd.Items = append(cmd.Items, &messages.MenuItem{Id: fmt.Sprint("m", i), Name: "dish", PriceCents: p})
	}
	return cmd
}

func TestEntityRecordsCommandsAndDeduplicates(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	e := loadRestaurant(t, deps, "restaurant/r1")

	if err := create(e, validCreate()); err != nil {
		t.Fatalf("create: %v", err)
	}
	want := []string{"platter.CommandApplied", "platter.RestaurantCreated"}
	if got := eventTypes(t, j, "restaurant/r1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream = %v, want %v", got, want)
	}
	// The same command again: answered, nothing written.
	if err := create(e, validCreate()); err != nil {
		t.Fatalf("replayed create: %v", err)
	}
	// Another command id: decided, refused.
	other := validCreate()
	other.CommandId = "c-other"
	if got := codeOf(t, create(e, other)); got != messages.ErrorReason_ALREADY_EXISTS {
		t.Fatalf("second create: %v, want ALREADY_EXISTS", got)
	}
	// The same id with another command: refused.
	changed := validCreate()
	changed.Name = "Another name"
	if got := codeOf(t, create(e, changed)); got != messages.ErrorReason_IDEMPOTENCY_KEY_REUSED {
		t.Fatalf("reused command id: %v, want IDEMPOTENCY_KEY_REUSED", got)
	}
	// No id: refused.
	if got := codeOf(t, updateMenu(e, menuCommand("", 100))); got != messages.ErrorReason_INVALID_ARGUMENT {
		t.Fatalf("command without id: %v, want INVALID_ARGUMENT", got)
	}
	// A command that changes nothing is not recorded.
	if err := updateMenu(e, menuCommand("noop")); err != nil {
		t.Fatalf("empty menu on an empty menu: %v", err)
	}
	if got := eventTypes(t, j, "restaurant/r1"); len(got) != 2 {
		t.Fatalf("stream after replays and refusals = %v, want 2 events", got)
	}

	// A new activation remembers the applied command.
	e2 := loadRestaurant(t, deps, "restaurant/r1")
	if !proto.Equal(e2.state, e.state) || e2.seq != 2 {
		t.Fatalf("reloaded state %v at %d, want %v at 2", e2.state, e2.seq, e.state)
	}
	if err := create(e2, validCreate()); err != nil {
		t.Fatalf("create replayed after reload: %v", err)
	}
	if got := eventTypes(t, j, "restaurant/r1"); len(got) != 2 {
		t.Fatalf("stream after replay on a new activation = %v", got)
	}
}

func TestEntitySnapshots(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	deps.SnapshotEvery = 4
	e := loadRestaurant(t, deps, "restaurant/r1")
	if err := create(e, validCreate()); err != nil { // seq 1-2
		t.Fatal(err)
	}
	if err := updateMenu(e, menuCommand("m1", 100)); err != nil { // seq 3-4: snapshot at 4
		t.Fatal(err)
	}
	if err := updateMenu(e, menuCommand("m2", 200)); err != nil { // seq 5-6
		t.Fatal(err)
	}
	snap, events, err := j.Load(context.Background(), "restaurant/r1")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Seq != 4 || snap.Type != "platter.EntitySnapshot" || len(events) != 2 {
		t.Fatalf("load = snapshot %d (%s) + %d events, want snapshot 4 + 2 events", snap.Seq, snap.Type, len(events))
	}
	e2 := loadRestaurant(t, deps, "restaurant/r1")
	if !proto.Equal(e2.state, e.state) || e2.seq != 6 {
		t.Fatalf("state from snapshot = %v at %d, want %v at 6", e2.state, e2.seq, e.state)
	}
	// Commands applied before the snapshot are still recognised.
	if err := create(e2, validCreate()); err != nil {
		t.Fatalf("replay of a command covered by the snapshot: %v", err)
	}
	if err := updateMenu(e2, menuCommand("m1", 100)); err != nil {
		t.Fatalf("replay of m1: %v", err)
	}
	if got := eventTypes(t, j, "restaurant/r1"); len(got) != 6 {
		t.Fatalf("replays appended: %v", got)
	}
}

func TestEntityForgetsOldestCommands(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	deps.RememberCommands = 2
	e := loadRestaurant(t, deps, "restaurant/r1")
	if err := create(e, validCreate()); err != nil {
		t.Fatal(err)
	}
	for i, price := range []int64{100, 200} {
		if err := updateMenu(e, menuCommand(fmt.Sprint("m", i), price)); err != nil {
			t.Fatal(err)
		}
	}
	// c1 is no longer remembered: a retry is decided again (and refused, the restaurant exists).
	if got := codeOf(t, create(e, validCreate())); got != messages.ErrorReason_ALREADY_EXISTS {
		t.Fatalf("forgotten command: %v, want ALREADY_EXISTS", got)
	}
	// m1 still is.
	if err := updateMenu(e, menuCommand("m1", 200)); err != nil {
		t.Fatalf("remembered command: %v", err)
	}
}

// Two activations of one identity load the same stream and write concurrently: exactly one append wins, the other
// learns it is stale and writes nothing, and keeps refusing afterwards.
func TestEntityDuplicateActivationsOneWriteWins(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	for round := range 20 {
		stream := fmt.Sprintf("restaurant/dup%d", round)
		a, b := loadRestaurant(t, deps, stream), loadRestaurant(t, deps, stream)
		cmdA, cmdB := validCreate(), validCreate()
		cmdA.CommandId, cmdB.CommandId = "from-a", "from-b"
		cmdB.Name = "B's name"
		var (
			wg         sync.WaitGroup
			errA, errB error
		)
		wg.Add(2)
		go func() { defer wg.Done(); errA = create(a, cmdA) }()
		go func() { defer wg.Done(); errB = create(b, cmdB) }()
		wg.Wait()

		winner, loser, loserErr := a, b, errB
		if errA != nil {
			winner, loser, loserErr = b, a, errA
		}
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: errA=%v errB=%v, want exactly one success", round, errA, errB)
		}
		if !errors.Is(loserErr, errStale) || !loser.broken || winner.broken {
			t.Fatalf("round %d: loser error %v (broken %v), winner broken %v", round, loserErr, loser.broken, winner.broken)
		}
		if got := eventTypes(t, j, stream); len(got) != 2 {
			t.Fatalf("round %d: stream = %v, want the winner's 2 events", round, got)
		}
		// The loser never writes again, even a command that would be valid on its stale state.
		if err := updateMenu(loser, menuCommand("late", 100)); !errors.Is(err, errStale) {
			t.Fatalf("round %d: stale activation wrote: %v", round, err)
		}
		// A fresh activation sees the winner's state.
		fresh := loadRestaurant(t, deps, stream)
		if !proto.Equal(fresh.state, winner.state) {
			t.Fatalf("round %d: fresh state %v, want the winner's %v", round, fresh.state, winner.state)
		}
	}
}

// A refusal decided on stale state must not reach the client: an activation that missed another activation's write
// answers errStale (the retry reaches a fresh activation) instead of refusing a step that is allowed.
func TestEntityStaleActivationDoesNotRefuse(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	stream := "restaurant/stale-refusal"
	a, b := loadRestaurant(t, deps, stream), loadRestaurant(t, deps, stream)
	if err := create(a, validCreate()); err != nil {
		t.Fatalf("create: %v", err)
	}
	// b still believes the restaurant does not exist: its decision refuses NOT_FOUND, which would be wrong.
	if err := updateMenu(b, menuCommand("menu-from-b", 100)); !errors.Is(err, errStale) || !b.broken {
		t.Fatalf("stale activation answered %v (broken %v), want errStale", err, b.broken)
	}
	// A refusal by an up-to-date activation stands and leaves it working.
	again := validCreate()
	again.CommandId = "create-again"
	var refusal *Error
	if err := create(a, again); !errors.As(err, &refusal) || refusal.Code != messages.ErrorReason_ALREADY_EXISTS || a.broken {
		t.Fatalf("fresh activation answered %v (broken %v), want ALREADY_EXISTS", err, a.broken)
	}
	if err := updateMenu(a, menuCommand("menu-from-a", 100)); err != nil {
		t.Fatalf("fresh activation after its refusal: %v", err)
	}
}

func TestEntityStoreFailureStopsWriting(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	e := loadRestaurant(t, deps, "restaurant/r1")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	err := create(e, validCreate())
	var refusal *Error
	if err == nil || errors.As(err, &refusal) || !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("create on a closed journal: %v, want an infrastructure error", err)
	}
	if !e.broken {
		t.Fatal("entity still writable after a failed write")
	}
	if _, err := loadEntity(context.Background(), deps, "restaurant/r2", &messages.RestaurantState{}, applyRestaurant); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("load on a closed journal: %v", err)
	}
}

func TestEntityRefusesUnknownEvents(t *testing.T) {
	j, _ := openTestJournal(t)
	deps := testDeps(j)
	if _, err := j.Append(context.Background(), "restaurant/r1", 0, []journal.Event{{Type: "platter.FromTheFuture", Data: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadEntity(context.Background(), deps, "restaurant/r1", &messages.RestaurantState{}, applyRestaurant); err == nil {
		t.Fatal("loaded a stream with an unknown event type")
	}
	// A known type of another kind is refused by the fold.
	created, _ := encodeEvent(&messages.RestaurantState{})
	if _, err := j.Append(context.Background(), "restaurant/r2", 0, []journal.Event{created}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadEntity(context.Background(), deps, "restaurant/r2", &messages.RestaurantState{}, applyRestaurant); err == nil {
		t.Fatal("loaded a stream with a foreign event")
	}
}

func TestFingerprintIgnoresCommandID(t *testing.T) {
	a, b := validCreate(), validCreate()
	b.CommandId = "another"
	fa, _ := fingerprint(a)
	fb, _ := fingerprint(b)
	if string(fa) != string(fb) {
		t.Fatal("fingerprint depends on command_id")
	}
	b.Cuisine = "french"
	if fb, _ = fingerprint(b); string(fa) == string(fb) {
		t.Fatal("fingerprint ignores a field")
	}
	if a.GetCommandId() != "c1" {
		t.Fatal("fingerprint changed the command")
	}
}
