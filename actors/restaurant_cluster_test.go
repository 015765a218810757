package actors_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

var clock = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// logRecorder is a slog handler that keeps (message, identity) pairs, for tests that wait on actor lifecycle.
type logRecorder struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct{ msg, identity string }

type recorderHandler struct {
	rec   *logRecorder
	attrs []slog.Attr
}

func (h recorderHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recorderHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return recorderHandler{rec: h.rec, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}
func (h recorderHandler) WithGroup(string) slog.Handler { return h }
func (h recorderHandler) Handle(_ context.Context, r slog.Record) error {
	var identity string
	for _, a := range h.attrs {
		if a.Key == "identity" {
			identity = a.Value.String()
		}
	}
	h.rec.mu.Lock()
	h.rec.records = append(h.rec.records, logRecord{r.Message, identity})
	h.rec.mu.Unlock()
	return nil
}

func (r *logRecorder) count(msg, identity string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.msg == msg && rec.identity == identity {
			n++
		}
	}
	return n
}

// node is a one-member protoactor cluster (in-memory provider, disthash) hosting actors.Kinds over a bbolt file.
type node struct {
	cluster *pcluster.Cluster
	left    bool // cluster shut down
	journal *journal.Bolt
	logs    *logRecorder
}

type nodeOptions struct {
	passivateAfter time.Duration
}

// nodeDeps opens the journal at path and returns Deps over it with a log recorder.
func nodeDeps(t *testing.T, path string, opts nodeOptions) (actors.Deps, *journal.Bolt, *logRecorder) {
	t.Helper()
	j, err := journal.OpenBolt(path, journal.BoltOptions{})
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	logs := &logRecorder{}
	return actors.Deps{
		Journal:        j,
		Logger:         slog.New(recorderHandler{rec: logs}),
		Now:            func() time.Time { return clock },
		PassivateAfter: opts.passivateAfter,
	}, j, logs
}

func startNode(t *testing.T, path string, opts nodeOptions) *node {
	t.Helper()
	deps, j, logs := nodeDeps(t, path, opts)
	return startMember(t, actors.Kinds(deps), j, logs)
}

// startMember starts a one-member cluster hosting kinds. Only one member runs at a time in these tests: two
// protoactor remotes in one process race on grpc's global logger (remote.Start calls grpclog.SetLoggerV2).
func startMember(t *testing.T, kinds []*pcluster.Kind, j *journal.Bolt, logs *logRecorder) *node {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	config := pcluster.Configure("actors-test", test.NewTestProvider(test.NewInMemAgent()), disthash.New(),
		remote.Configure("127.0.0.1", 0), pcluster.WithKinds(kinds...), pcluster.WithRequestTimeout(5*time.Second))
	c := pcluster.New(system, config)
	c.StartMember()
	n := &node{cluster: c, journal: j, logs: logs}
	t.Cleanup(n.stop)
	return n
}

// stop shuts the member down without the graceful path's fixed 2 s sleep (PROTOACTOR-NOTES.md trap 6) and closes
// the journal. Safe to call twice.
func (n *node) stop() {
	n.leave()
	_ = n.journal.Close()
}

// leave shuts the member down and keeps the journal open.
func (n *node) leave() {
	if !n.left {
		n.left = true
		n.cluster.Shutdown(false)
	}
}

func (n *node) restaurant(id string) *messages.RestaurantGrainClient {
	return messages.GetRestaurantGrainClient(n.cluster, id)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, total time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", total, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantCode(t *testing.T, what string, err error, code messages.ErrorReason) {
	t.Helper()
	if got := actors.ErrorCode(err); got != code.String() {
		t.Fatalf("%s: code %q (err %v), want %s", what, got, err, code)
	}
}

func streamLen(t *testing.T, j journal.Journal, stream string) int {
	t.Helper()
	events, err := j.Events(context.Background(), stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(events)
}

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
	if got := streamLen(t, n.journal, "restaurant/"+id); got != 0 {
		t.Fatalf("get wrote %d events", got)
	}

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
	if got := streamLen(t, n.journal, "restaurant/"+id); got != 2 {
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
	if n := streamLen(t, n.journal, "restaurant/"+id); n != 4 {
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
	if n := streamLen(t, n2.journal, "restaurant/"+id); n != 4 {
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
	// The other activation's write: a command record and a menu, at seq 3-4.
	marker, _ := proto.Marshal(&messages.CommandApplied{CommandId: "elsewhere"})
	menu, _ := proto.Marshal(&messages.MenuUpdated{Items: []*messages.MenuItem{{Id: "x", Name: "Elsewhere soup", PriceCents: 500}}})
	if _, err := n.journal.Append(context.Background(), stream, 2, []journal.Event{
		{Type: "platter.CommandApplied", Data: marker}, {Type: "platter.MenuUpdated", Data: menu},
	}); err != nil {
		t.Fatal(err)
	}

	_, err := r.UpdateMenu(menuCommand())
	wantCode(t, "update by the stale activation", err, messages.ErrorReason_UNAVAILABLE)
	if got := streamLen(t, n.journal, stream); got != 4 {
		t.Fatalf("stream has %d events after the refused write, want 4", got)
	}
	waitFor(t, "the stale activation to stop", 5*time.Second, func() bool { return n.logs.count("deactivated", id) == 1 })

	// The caller retries with the same command id: a fresh activation applies it after the other's events.
	view, err := r.UpdateMenu(menuCommand())
	if err != nil || len(view.GetMenu()) != 2 {
		t.Fatalf("retried update: %v, %v", view, err)
	}
	if got := streamLen(t, n.journal, stream); got != 6 {
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
	if na, nb := streamLen(t, ja, "restaurant/r_1"), streamLen(t, jb, "restaurant/r_1"); na != 2 || nb != 0 {
		t.Fatalf("node A's create wrote %d events to A's journal and %d to B's; want 2 and 0", na, nb)
	}
	a.leave() // keep A's journal open: B must not touch it

	b := startMember(t, kindsB, jb, logsB)
	_, err := b.restaurant("r_1").Get(&messages.GetRestaurant{})
	wantCode(t, "get on node B", err, messages.ErrorReason_NOT_FOUND)
	other := createCommand()
	other.Name = "Other Place"
	if _, err := b.restaurant("r_1").Create(other); err != nil {
		t.Fatal(err)
	}
	got, err := b.restaurant("r_1").Get(&messages.GetRestaurant{})
	if err != nil || got.GetName() != "Other Place" {
		t.Fatalf("get on node B = %v, %v", got, err)
	}
	if na, nb := streamLen(t, ja, "restaurant/r_1"), streamLen(t, jb, "restaurant/r_1"); na != 2 || nb != 2 {
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
