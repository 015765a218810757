package actors_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/actors/journal/pgtest"
	"github.com/platterhq/platter/cluster/clustertest"
	"github.com/platterhq/platter/messages"
)

// TestMain stops the private PostgreSQL server of the PostgreSQL tests once the package's tests have run.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestDuplicateActivationsOnPostgres: two nodes that do not know each other (a split brain, the worst a
// membership change can produce) share one PostgreSQL journal, each with its own connection pool, and both
// activate the same Restaurant. Writes are fenced: of two activations that loaded the same state, the first to
// write wins; the other's write is refused (it logs that it lost the write race, answers UNAVAILABLE: retry, and
// stops; the refused write may be a command's or the record of its outbox's acknowledgements), and the retry
// through it reloads the stream and applies the command on the newest state. (The cluster itself retries an
// attempt that outlived AttemptTimeout, so on a loaded machine the caller may see the retry's success only.) The
// stream ends dense, with every acknowledged command exactly once, in the order the writes won.
func TestDuplicateActivationsOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("PostgreSQL and two cluster members")
	}
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	open := func() *journal.Postgres {
		j, err := journal.OpenPostgres(ctx, dsn, journal.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = j.Close() })
		return j
	}
	j1, j2 := open(), open()
	node := func(j journal.Journal, logs *logRecorder) *messages.RestaurantGrainClient {
		deps := actors.Deps{Journal: j, Now: time.Now, Workflow: testWorkflow(), Logger: slog.New(recorderHandler{rec: logs})}
		c := clustertest.New(t, 1, clustertest.WithKinds(func() []*pcluster.Kind { return actors.Kinds(deps) }))
		return messages.GetRestaurantGrainClient(c.Node(0).Cluster(), "r_fence")
	}
	logsA, logsB := &logRecorder{}, &logRecorder{}
	a, b := node(j1, logsA), node(j2, logsB)
	const lost = "activation lost the write race"
	menu := func(id, item string) *messages.UpdateMenu {
		return &messages.UpdateMenu{CommandId: id, Items: []*messages.MenuItem{{Id: item, Name: item, PriceCents: 1000}}}
	}
	items := func(v *messages.RestaurantView) []string {
		var out []string
		for _, it := range v.GetMenu() {
			out = append(out, it.GetId())
		}
		return out
	}

	if _, err := a.Create(createCommand()); err != nil {
		t.Fatalf("create through A: %v", err)
	}
	if _, err := b.Get(&messages.GetRestaurant{}); err != nil { // B's activation loads the stream as it is now
		t.Fatalf("get through B: %v", err)
	}
	// B's activation may itself write first (it delivers the outbox Create left and records the acknowledgements),
	// and then A's activation is the stale one: UNAVAILABLE, retry.
	if _, err := untilAvailable(t, func() (*messages.RestaurantView, error) { return a.UpdateMenu(menu("menu-1", "one")) }); err != nil {
		t.Fatalf("menu-1 through A: %v", err)
	}
	// B's state is stale: its write is fenced out, and it says so; the retry reaches a fresh activation on B,
	// which reloads the stream. (UNAVAILABLE means "retry": a retry may still meet the stopping activation, as a
	// client's may.)
	v, err := untilAvailable(t, func() (*messages.RestaurantView, error) { return b.UpdateMenu(menu("menu-2", "two")) })
	if err != nil || !slices.Equal(items(v), []string{"two"}) {
		t.Fatalf("menu-2 through B: %v %v", v, err)
	}
	if logsB.count(lost, "*") == 0 {
		t.Fatal("B's stale activation did not lose its write")
	}
	// Now A's activation is the stale one.
	if v, err = untilAvailable(t, func() (*messages.RestaurantView, error) { return a.UpdateMenu(menu("menu-3", "three")) }); err != nil || !slices.Equal(items(v), []string{"three"}) {
		t.Fatalf("menu-3 through A: %v %v", v, err)
	}
	if logsA.count(lost, "*") == 0 {
		t.Fatal("A's stale activation did not lose its write")
	}
	// A retry of an acknowledged command through the other node is answered from the journal, not applied again.
	if _, err = untilAvailable(t, func() (*messages.RestaurantView, error) { return b.UpdateMenu(menu("menu-1", "one")) }); err != nil {
		t.Fatalf("menu-1 replayed through B: %v", err)
	}

	events, err := j1.Events(ctx, "restaurant/r_fence", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var applied []string
	for i, e := range events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: the stream is not dense", i, e.Seq)
		}
		if e.Type == "platter.CommandApplied" {
			var ca messages.CommandApplied
			if err := proto.Unmarshal(e.Data, &ca); err != nil {
				t.Fatal(err)
			}
			applied = append(applied, ca.GetCommandId())
		}
	}
	if want := []string{"create-1", "menu-1", "menu-2", "menu-3"}; !slices.Equal(applied, want) {
		t.Fatalf("commands applied %v, want %v (each acknowledged command once, in the order the writes won)", applied, want)
	}
}

// untilAvailable calls fn until it answers something other than UNAVAILABLE (the code that tells a caller to
// retry), for at most 10 s, and returns its last answer.
func untilAvailable[T any](t *testing.T, fn func() (T, error)) (T, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := fn()
		if actors.ErrorCode(err) != messages.ErrorReason_UNAVAILABLE.String() || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(20 * time.Millisecond) // back-off between retries, as a client's
	}
}
