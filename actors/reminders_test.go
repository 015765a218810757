package actors_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
)

// TestReminderScanPagesPastOthersReminders: with a journal shared by several nodes, a scanner wakes only the
// identities its node owns. Many more reminders than one scan batch, due earlier and owned by other nodes (which
// never wake them here: in this test they never do), must not starve this node's own reminders, which sort after
// them: the scan pages through every due reminder.
func TestReminderScanPagesPastOthersReminders(t *testing.T) {
	const batch = 4
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{
		noScanner: true,
		workflow:  func(w *actors.WorkflowConfig) { w.ReminderScanBatch = batch },
	})
	ctx := context.Background()
	var foreign, own []string
	for i := range 5 * batch {
		stream := fmt.Sprintf("restaurant/elsewhere_%02d", i)
		foreign = append(foreign, stream)
		if err := n.journal.SetReminder(ctx, stream, clock.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		stream := fmt.Sprintf("restaurant/r_%d", i)
		own = append(own, stream)
		if err := n.journal.SetReminder(ctx, stream, clock.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu    sync.Mutex
		asked = map[string]int{} // identity → times the scanner asked whether this node owns it
	)
	owns := func(kind, identity string) bool {
		mu.Lock()
		asked[identity]++
		mu.Unlock()
		return !strings.HasPrefix(identity, "elsewhere_")
	}
	c := n.cluster
	n.scanner = actors.StartReminderScanner(n.deps, func() *pcluster.Cluster { return c }, actors.WakeOwnedOnly(owns))

	waitFor(t, "this node's reminders to be woken and handled", 10*time.Second, func() bool {
		for _, stream := range own {
			if hasReminder(t, n.journal, stream, clock) {
				return false
			}
		}
		return true
	})
	// The others' reminders were all looked at, and left alone for their owners.
	due, err := n.journal.DueReminders(ctx, clock, journal.Reminder{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, r := range due {
		left = append(left, r.Stream)
	}
	if !slices.Equal(left, foreign) {
		t.Fatalf("due reminders left = %q, want the other nodes' %q", left, foreign)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, stream := range foreign {
		if id := strings.TrimPrefix(stream, "restaurant/"); asked[id] == 0 {
			t.Errorf("the scanner never looked at %s", stream)
		}
	}
}
