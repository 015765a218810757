package http_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// TestPollFeedHoldsOneGoroutine: the cluster backend waits for a parked poll's answer, or its caller's going away,
// without a goroutine of its own per poll (a held poll's memory, issue 7); a cancelled caller gets the empty page
// at once.
func TestPollFeedHoldsOneGoroutine(t *testing.T) {
	n := startLiveNode(t, filepath.Join(t.TempDir(), "journal.db"))
	backend := http.NewClusterBackend(n.node, fakeStoreOK{}, n.journal, http.DefaultIdempotencyRetention)
	const polls = 50
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		page *messages.FeedPage
		err  error
	}
	answers := make(chan answer, polls)
	var wg sync.WaitGroup
	for i := range polls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c_00000000-0000-0000-0000-%012d", i)
			page, err := backend.Actors.PollFeed(ctx, "Customer", id, &messages.PollFeed{After: 7, WaitMs: 20_000})
			answers <- answer{page, err}
		}()
	}
	// Every caller waits in PollFeed's select; none has a helper goroutine blocked on its future.
	var parked, waiters int
	deadline := time.Now().Add(15 * time.Second)
	for {
		parked, waiters = pollGoroutines()
		if parked == polls || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if parked != polls {
		t.Fatalf("%d of %d polls waiting in PollFeed", parked, polls)
	}
	if waiters != 0 {
		t.Fatalf("%d goroutines blocked on a poll's future besides the %d callers", waiters, polls)
	}
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled polls did not return")
	}
	close(answers)
	for a := range answers {
		if a.err != nil || len(a.page.GetEntries()) != 0 || a.page.GetNextCursor() != 7 {
			t.Fatalf("a cancelled poll answered %v, %v; want an empty page at cursor 7", a.page, a.err)
		}
	}
}

// pollGoroutines counts the goroutines waiting in clusterActors.PollFeed's own select (the innermost frame is
// PollFeed: not still resolving the activation), and those blocked in a protoactor future's wait on behalf of
// PollFeed. (Runtime frames are not in the dump: a goroutine's state is in its header line.)
func pollGoroutines() (parked, waiters int) {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "http.clusterActors.PollFeed") {
			continue
		}
		lines := strings.SplitN(g, "\n", 3)
		switch {
		case strings.Contains(g, "Future).wait"):
			waiters++
		case len(lines) > 1 && strings.Contains(lines[0], " [select") && strings.HasPrefix(lines[1], "github.com/platterhq/platter/http.clusterActors.PollFeed("):
			parked++
		}
	}
	return parked, waiters
}
