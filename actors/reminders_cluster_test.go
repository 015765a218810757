package actors_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster/clustertest"
)

// wakeLog records the scanner's "woken" logs of one member: identity → count.
type wakeLog struct {
	mu    sync.Mutex
	woken map[string]int
}

func (w *wakeLog) Enabled(context.Context, slog.Level) bool { return true }
func (w *wakeLog) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *wakeLog) WithGroup(string) slog.Handler            { return w }
func (w *wakeLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "woken" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "identity" {
			w.mu.Lock()
			w.woken[a.Value.String()]++
			w.mu.Unlock()
		}
		return true
	})
	return nil
}

func (w *wakeLog) count(identity string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.woken[identity]
}

// TestRemindersInCluster: three members share one journal (as PostgreSQL is shared by the nodes of a real
// cluster; here one bbolt file in one process), each with a reminder scanner that wakes only what its member
// owns. Every due reminder is woken exactly once, by the member that owns the identity; reminders of identities
// whose owner was killed are woken once, by the identity's new owner, after failover.
func TestRemindersInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-member cluster")
	}
	j, err := journal.OpenBolt(filepath.Join(t.TempDir(), "journal.db"), journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	deps := actors.Deps{Journal: j, Now: time.Now, Workflow: testWorkflow()}
	c := clustertest.New(t, 3, clustertest.WithKinds(func() []*pcluster.Kind { return actors.Kinds(deps) }))

	logs := make([]*wakeLog, 3)
	scanners := make([]*actors.ReminderScanner, 3)
	for i := range 3 {
		logs[i] = &wakeLog{woken: map[string]int{}}
		sd := deps
		sd.Logger = slog.New(logs[i])
		node := c.Node(i)
		scanners[i] = actors.StartReminderScanner(sd, node.Cluster, actors.WakeOwnedOnly(node.Owns))
	}
	t.Cleanup(func() {
		for _, s := range scanners {
			s.Stop()
		}
	})

	ctx := context.Background()
	remind := func(ids []string, due time.Time) {
		t.Helper()
		for _, id := range ids {
			if err := j.SetReminder(ctx, "restaurant/"+id, due); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitNoneDue := func(what string) {
		t.Helper()
		c.WaitFor(func() bool {
			due, err := j.DueReminders(ctx, time.Now().Add(time.Hour), 0)
			return err == nil && len(due) == 0
		}, 30*time.Second, what)
	}
	// checkOnce: each identity was woken once in all, by member want(id).
	checkOnce := func(ids []string, want func(id string) int) {
		t.Helper()
		for _, id := range ids {
			total, by := 0, -1
			for i, l := range logs {
				if n := l.count(id); n > 0 {
					total += n
					by = i
				}
			}
			if total != 1 || by != want(id) {
				t.Errorf("%s woken %d times, last by member %d; want once, by member %d", id, total, by, want(id))
			}
		}
	}
	owner := func(id string, among []int) int {
		for _, i := range among {
			if c.Node(i).Owns(actors.KindRestaurant, id) {
				return i
			}
		}
		return -1
	}

	var ids []string
	owners := map[string]int{}
	for k := range 60 {
		id := fmt.Sprintf("r_%02d", k)
		ids = append(ids, id)
		owners[id] = owner(id, []int{0, 1, 2})
		if owners[id] < 0 {
			t.Fatalf("no member owns %s", id)
		}
	}
	remind(ids, time.Now().Add(-time.Second))
	waitNoneDue("every due reminder to be woken")
	checkOnce(ids, func(id string) int { return owners[id] })

	// Reminders of identities owned by member 2, due shortly; member 2 dies before they are due.
	var orphans []string
	for k := 60; len(orphans) < 20; k++ {
		id := fmt.Sprintf("r_%02d", k)
		if owner(id, []int{0, 1, 2}) == 2 {
			orphans = append(orphans, id)
		}
	}
	remind(orphans, time.Now().Add(300*time.Millisecond))
	scanners[2].Stop()
	c.Kill(2)
	waitNoneDue("the dead owner's reminders to be woken by the survivors")
	for _, id := range orphans {
		if logs[2].count(id) != 0 {
			t.Errorf("%s was woken by the killed member", id)
		}
	}
	checkOnce(orphans, func(id string) int { return owner(id, []int{0, 1}) })
}
