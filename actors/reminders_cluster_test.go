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

// wakeLog records the scanner's wakes of one member: identity → Wake calls answered ("woken") and Wake calls
// that got no answer in time ("wake failed": possibly applied; the next scan tries again if the reminder stays).
type wakeLog struct {
	mu     sync.Mutex
	woken  map[string]int
	failed map[string]int
}

func (w *wakeLog) Enabled(context.Context, slog.Level) bool { return true }
func (w *wakeLog) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *wakeLog) WithGroup(string) slog.Handler            { return w }
func (w *wakeLog) Handle(_ context.Context, r slog.Record) error {
	var m map[string]int
	switch r.Message {
	case "woken":
		m = w.woken
	case "wake failed":
		m = w.failed
	default:
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "identity" {
			w.mu.Lock()
			m[a.Value.String()]++
			w.mu.Unlock()
		}
		return true
	})
	return nil
}

// count returns the Wake calls for identity: answered, and attempted in all.
func (w *wakeLog) count(identity string) (woken, attempts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.woken[identity], w.woken[identity] + w.failed[identity]
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
		logs[i] = &wakeLog{woken: map[string]int{}, failed: map[string]int{}}
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
			due, err := j.DueReminders(ctx, time.Now().Add(time.Hour), journal.Reminder{}, 0)
			return err == nil && len(due) == 0
		}, 30*time.Second, what)
	}
	// checkOnce: each identity was woken by member want(id) only, and answered once. (A Wake that got no answer in
	// time, on a loaded machine, may have been applied all the same, or be tried again at the next scan: each
	// reminder is woken at least once; it is woken exactly once whenever Wake answers in time.)
	checkOnce := func(ids []string, want func(id string) int) {
		t.Helper()
		// A Wake's log line follows the actor's answer, which follows the reminder's removal.
		c.WaitFor(func() bool {
			for _, id := range ids {
				attempts := 0
				for _, l := range logs {
					_, a := l.count(id)
					attempts += a
				}
				if attempts == 0 {
					return false
				}
			}
			return true
		}, 10*time.Second, "every Wake call to be logged")
		once := 0
		for _, id := range ids {
			woken, attempts := 0, 0
			var by []int
			for i, l := range logs {
				if w, a := l.count(id); a > 0 {
					woken, attempts = woken+w, attempts+a
					by = append(by, i)
				}
			}
			if attempts == 0 || len(by) != 1 || by[0] != want(id) || woken > 1 {
				t.Errorf("%s: %d Wake calls (%d answered) by members %v; want calls by member %d only, answered at most once",
					id, attempts, woken, by, want(id))
			}
			if attempts == 1 && woken == 1 {
				once++
			}
		}
		t.Logf("%d of %d reminders woken by exactly one Wake call, by their owner", once, len(ids))
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
	for k := range 60 {
		ids = append(ids, fmt.Sprintf("r_%02d", k))
	}
	// The members agree on the owners once each has installed the three-member view (a moment after memberlist
	// converged): then every identity has exactly one owner.
	owners := map[string]int{}
	c.WaitFor(func() bool {
		for _, id := range ids {
			n := 0
			for i := range 3 {
				if c.Node(i).Owns(actors.KindRestaurant, id) {
					owners[id] = i
					n++
				}
			}
			if n != 1 {
				return false
			}
		}
		return true
	}, 10*time.Second, "the members to agree on every owner")
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
		if _, a := logs[2].count(id); a != 0 {
			t.Errorf("%s was woken by the killed member", id)
		}
	}
	checkOnce(orphans, func(id string) int { return owner(id, []int{0, 1}) })
}
