package actors_test

// Shared helpers for component tests: a one-member protoactor cluster (in-memory provider, disthash) hosting
// actors.Kinds over a temp-dir bbolt journal, with a reminder scanner, a settable clock, a log recorder and
// short workflow timings. Every kind's tests use them:
//
//	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{clock: newTestClock()})
//	view, err := n.customer("c_1").Create(...)
//	items := waitForFeed(t, n, actors.KindCustomer, "c_1", 0, 2)
//
// Only one member runs at a time in these tests: two protoactor remotes in one process race on grpc's global
// logger (remote.Start calls grpclog.SetLoggerV2). A restart is n.stop() (or n.leave()) and startNode again on
// the same file.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

// clock is the fixed time of tests that do not pass a testClock.
var clock = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testClock is a settable clock for Deps.Now, safe for concurrent use. It starts at clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: clock} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// testWorkflow is the workflow configuration of component tests: fast retries and scans.
func testWorkflow() actors.WorkflowConfig {
	return actors.WorkflowConfig{
		OutboxRetryMin:       10 * time.Millisecond,
		OutboxRetryMax:       100 * time.Millisecond,
		DeliverTimeout:       2 * time.Second,
		ReminderScanInterval: 20 * time.Millisecond,
		WakeTimeout:          2 * time.Second,
		FeedMaxWait:          10 * time.Second,
	}
}

// logRecorder is a slog handler that keeps (message, identity) pairs, for tests that wait on actor lifecycle.
type logRecorder struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct {
	msg, identity string
	level         slog.Level
}

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
	h.rec.records = append(h.rec.records, logRecord{r.Message, identity, r.Level})
	h.rec.mu.Unlock()
	return nil
}

// count returns how many records have message msg and identity (any identity when identity is "*").
func (r *logRecorder) count(msg, identity string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.msg == msg && (identity == "*" || rec.identity == identity) {
			n++
		}
	}
	return n
}

// node is a one-member protoactor cluster (in-memory provider, disthash) hosting actors.Kinds over a bbolt file,
// with the node's reminder scanner.
type node struct {
	cluster *pcluster.Cluster
	left    bool // cluster shut down
	journal *journal.Bolt
	logs    *logRecorder
	deps    actors.Deps
	scanner *actors.ReminderScanner
}

type nodeOptions struct {
	passivateAfter time.Duration
	// clock is Deps.Now; nil: the fixed clock.
	clock *testClock
	// workflow adjusts testWorkflow().
	workflow func(*actors.WorkflowConfig)
	// payments replaces the default simulated gateway.
	payments actors.PaymentGateway
	// kinds wraps the kinds before the member starts (fault injection).
	kinds func([]*pcluster.Kind) []*pcluster.Kind
	// noScanner starts no reminder scanner.
	noScanner bool
}

// nodeDeps opens the journal at path and returns Deps over it with a log recorder.
func nodeDeps(t *testing.T, path string, opts nodeOptions) (actors.Deps, *journal.Bolt, *logRecorder) {
	t.Helper()
	j, err := journal.OpenBolt(path, journal.BoltOptions{})
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	logs := &logRecorder{}
	now := func() time.Time { return clock }
	if opts.clock != nil {
		now = opts.clock.Now
	}
	wf := testWorkflow()
	if opts.workflow != nil {
		opts.workflow(&wf)
	}
	return actors.Deps{
		Journal:        j,
		Logger:         slog.New(recorderHandler{rec: logs}),
		Now:            now,
		PassivateAfter: opts.passivateAfter,
		Workflow:       wf,
		Payments:       opts.payments,
	}, j, logs
}

// startNode opens the journal at path and starts a member hosting every kind, and its reminder scanner.
func startNode(t *testing.T, path string, opts nodeOptions) *node {
	t.Helper()
	deps, j, logs := nodeDeps(t, path, opts)
	kinds := actors.Kinds(deps)
	if opts.kinds != nil {
		kinds = opts.kinds(kinds)
	}
	n := startMember(t, kinds, j, logs)
	n.deps = deps
	if !opts.noScanner {
		c := n.cluster
		n.scanner = actors.StartReminderScanner(deps, func() *pcluster.Cluster { return c })
	}
	return n
}

// startMember starts a one-member cluster hosting kinds.
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

// stop shuts the member down without the graceful path's fixed 2 s sleep (PROTOACTOR-NOTES.md trap 6), stops the
// scanner and closes the journal. Safe to call twice.
func (n *node) stop() {
	n.leave()
	_ = n.journal.Close()
}

// leave stops the scanner, shuts the member down and keeps the journal open.
func (n *node) leave() {
	if n.scanner != nil {
		n.scanner.Stop()
		n.scanner = nil
	}
	if !n.left {
		n.left = true
		n.cluster.Shutdown(false)
	}
}

func (n *node) restaurant(id string) *messages.RestaurantGrainClient {
	return messages.GetRestaurantGrainClient(n.cluster, id)
}

func (n *node) customer(id string) *messages.CustomerGrainClient {
	return messages.GetCustomerGrainClient(n.cluster, id)
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

// mailboxTypes are the event types the entity records for messaging and timers.
var mailboxTypes = map[string]bool{
	"platter.OutboxAdded": true, "platter.OutboxAcked": true, "platter.InboxAdvanced": true,
	"platter.TimerSet": true, "platter.TimerCleared": true, "platter.TimerFired": true,
}

// domainLen counts the events of stream other than the mailbox's (outbox, inbox, timers): what a kind's commands
// wrote (CommandApplied included).
func domainLen(t *testing.T, j journal.Journal, stream string) int {
	t.Helper()
	n := 0
	for _, typ := range streamTypes(t, j, stream) {
		if !mailboxTypes[typ] {
			n++
		}
	}
	return n
}

// waitOutboxDrained waits until every outbox entry of stream is acknowledged and recorded, and returns the
// stream's last sequence number then.
func waitOutboxDrained(t *testing.T, j journal.Journal, stream string) uint64 {
	t.Helper()
	var last uint64
	waitFor(t, "the outbox of "+stream+" to drain", 10*time.Second, func() bool {
		events, err := j.Events(context.Background(), stream, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		pending := map[uint64]bool{}
		for _, e := range events {
			switch e.Type {
			case "platter.OutboxAdded":
				pending[e.Seq] = true
			case "platter.OutboxAcked":
				var acked messages.OutboxAcked
				if err := proto.Unmarshal(e.Data, &acked); err != nil {
					t.Fatal(err)
				}
				for _, s := range acked.GetOutSeqs() {
					delete(pending, s)
				}
			}
			last = e.Seq
		}
		return len(pending) == 0
	})
	return last
}

// streamTypes lists the event types of stream.
func streamTypes(t *testing.T, j journal.Journal, stream string) []string {
	t.Helper()
	events, err := j.Events(context.Background(), stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

// countType counts the events of type typ in stream.
func countType(t *testing.T, j journal.Journal, stream, typ string) int {
	t.Helper()
	n := 0
	for _, s := range streamTypes(t, j, stream) {
		if s == typ {
			n++
		}
	}
	return n
}

// readFeed reads the whole feed of (kind, id) after cursor from the journal.
func readFeed(t *testing.T, n *node, kind, id string, after uint64) []*messages.FeedItem {
	t.Helper()
	items, err := actors.ReadFeed(context.Background(), n.journal, kind, id, after, 0)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// waitForFeed waits until the feed of (kind, id) holds at least want entries after cursor and returns them.
func waitForFeed(t *testing.T, n *node, kind, id string, after uint64, want int) []*messages.FeedItem {
	t.Helper()
	var items []*messages.FeedItem
	waitFor(t, fmt.Sprintf("%d feed entries of %s/%s", want, kind, id), 10*time.Second, func() bool {
		items = readFeed(t, n, kind, id, after)
		return len(items) >= want
	})
	return items
}

// feedTypes lists the types of feed items.
func feedTypes(items []*messages.FeedItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.GetType()
	}
	return out
}

// hasReminder reports whether stream has a reminder due at or before at.
func hasReminder(t *testing.T, j journal.Journal, stream string, at time.Time) bool {
	t.Helper()
	due, err := j.DueReminders(context.Background(), at, journal.Reminder{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range due {
		if r.Stream == stream {
			return true
		}
	}
	return false
}
