package actors

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// ReminderScanner is the per-node half of durable timers (timers.go): every WorkflowConfig.ReminderScanInterval
// it reads all the journal's due reminders (page by page) and sends Wake, through the cluster, to each stream's actor (the kind is
// the stream's prefix, matched against the kinds the cluster hosts), so that the identity's owner fires its timers
// and delivers its outbox, after any restart. The woken actor moves or deletes the reminder; until it does, every
// scan wakes it again (at least once). A stream whose Wake is still in flight is not woken twice at once.
//
// With a journal shared by several nodes (PostgreSQL) every node's scanner reads every due reminder; WakeOwnedOnly
// makes each node wake only the identities it owns in its own view, so that each reminder is woken by one node,
// the owner, and, once a dead owner has left the views, by the identity's new owner.
//
// Concurrency: Start and Stop are for the node's wiring goroutine; the scanner runs on its own goroutines.
type ReminderScanner struct {
	deps    Deps
	cluster func() *pcluster.Cluster
	owns    func(kind, identity string) bool // nil: wake every due reminder
	log     *slog.Logger

	stop chan struct{}
	done sync.WaitGroup

	mu       sync.Mutex
	inFlight map[string]bool
	slots    chan struct{} // bounds concurrent Wake calls
}

// ReminderWakeParallelism is how many Wake calls one scanner has in flight at most.
const ReminderWakeParallelism = 16

// ReminderOption tunes a ReminderScanner.
type ReminderOption func(*ReminderScanner)

// WakeOwnedOnly makes the scanner wake only the due reminders of identities for which owns(kind, identity) is
// true: in a node, cluster.Node.Owns (the identities it owns in its own view; none while it drains or fences).
// The Wake still goes through the cluster, so a view a moment stale during a membership change can at worst
// wake an identity twice (timers fire once regardless: TimerFired removes the timer in the same append) or a
// moment late. owns must be safe for concurrent use.
func WakeOwnedOnly(owns func(kind, identity string) bool) ReminderOption {
	return func(s *ReminderScanner) { s.owns = owns }
}

// StartReminderScanner starts the node's scanner over deps.Journal. cluster returns the node's current protoactor
// cluster (it may change after a self-fence; nil while there is none: the scan is skipped). Stop it before
// closing the journal.
func StartReminderScanner(deps Deps, cluster func() *pcluster.Cluster, opts ...ReminderOption) *ReminderScanner {
	if deps.Journal == nil {
		panic("actors.StartReminderScanner: Deps.Journal is nil")
	}
	d := deps.withDefaults()
	s := &ReminderScanner{
		deps:     d,
		cluster:  cluster,
		log:      d.Logger.With(slog.String("component", "reminders")),
		stop:     make(chan struct{}),
		inFlight: make(map[string]bool),
		slots:    make(chan struct{}, ReminderWakeParallelism),
	}
	for _, o := range opts {
		o(s)
	}
	s.done.Add(1)
	go s.run()
	return s
}

// Stop ends the scanning and waits for the Wake calls in flight. Calling it again does nothing.
func (s *ReminderScanner) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.done.Wait()
}

func (s *ReminderScanner) run() {
	defer s.done.Done()
	t := time.NewTicker(s.deps.Workflow.ReminderScanInterval)
	defer t.Stop()
	for {
		s.scan()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// scan wakes the actors of the due reminders once: it pages through every reminder due now (ReminderScanBatch
// per journal read), not only the first page, so that reminders this node does not wake (owned by other nodes,
// of unknown kinds, or with a Wake in flight) never hide the ones it does, however many there are.
func (s *ReminderScanner) scan() {
	c := s.cluster()
	if c == nil {
		return
	}
	// Stream prefix → kind: the kinds Kinds registers (protoactor's GetClusterKinds is empty for a member started
	// without Cluster.StartMember, as package cluster starts them), plus whatever the cluster reports.
	kinds := make(map[string]string)
	for _, k := range append(hostedKinds(), c.GetClusterKinds()...) {
		kinds[strings.ToLower(k)] = k
	}
	now, limit := s.deps.Now(), s.deps.Workflow.ReminderScanBatch
	var after journal.Reminder
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.deps.StoreTimeout)
		due, err := s.deps.Journal.DueReminders(ctx, now, after, limit)
		cancel()
		if err != nil {
			s.log.Warn("reading due reminders failed", slog.Any("error", err))
			return
		}
		for _, r := range due {
			if !s.wakeDue(c, kinds, r) {
				return // stopping
			}
		}
		if len(due) < limit || limit <= 0 {
			return
		}
		after = due[len(due)-1]
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

// wakeDue starts the Wake of r's actor if this node wakes it and no Wake of it is in flight. It waits for a free
// Wake slot, and returns false when the scanner stops meanwhile.
func (s *ReminderScanner) wakeDue(c *pcluster.Cluster, kinds map[string]string, r journal.Reminder) bool {
	prefix, identity, ok := strings.Cut(r.Stream, "/")
	kind := kinds[prefix]
	if !ok || kind == "" || identity == "" {
		s.log.Debug("reminder of a stream no hosted kind owns", slog.String("stream", r.Stream))
		return true
	}
	if s.owns != nil && !s.owns(kind, identity) {
		return true // another node owns it and wakes it
	}
	s.mu.Lock()
	busy := s.inFlight[r.Stream]
	s.inFlight[r.Stream] = true
	s.mu.Unlock()
	if busy {
		return true
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.stop:
		s.release(r.Stream)
		return false
	}
	s.done.Add(1)
	go s.wake(c, kind, identity, r.Stream)
	return true
}

func (s *ReminderScanner) wake(c *pcluster.Cluster, kind, identity, stream string) {
	defer s.done.Done()
	defer func() { <-s.slots }()
	defer s.release(stream)
	if _, err := callGrain(c, kind, identity, "Wake", &messages.Wake{}, s.deps.Workflow.WakeTimeout); err != nil {
		s.log.Warn("wake failed", slog.String("kind", kind), slog.String("identity", identity), slog.Any("error", err))
		return
	}
	s.log.Debug("woken", slog.String("kind", kind), slog.String("identity", identity))
}

func (s *ReminderScanner) release(stream string) {
	s.mu.Lock()
	delete(s.inFlight, stream)
	s.mu.Unlock()
}

// hostedKinds are the kinds Kinds returns, whose streams the scanner wakes.
func hostedKinds() []string {
	return []string{KindAccount, KindRestaurant, KindOrder, KindCustomer, KindArea, KindDasher}
}
