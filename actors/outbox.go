package actors

// Messages between actors: the outbox (sender side) and the inbox (receiver side). See docs/workflow.md,
// "Messages between actors".
//
// Sender: a decision returns sendTo(kind, identity, payload) among its events. The OutboxAdded event is appended
// with the state change that caused it; its sequence number in the sender's stream is its out_seq. After the
// append the grain delivers the pending entries (courier, below): per destination one at a time in out_seq order,
// each as an Envelope to the receiver's Deliver rpc, from a goroutine that reports back to the actor, so the
// mailbox never blocks. A failed delivery is retried after an exponential back-off (WorkflowConfig.OutboxRetryMin
// .. OutboxRetryMax); acknowledged entries are recorded (OutboxAcked) with the next append. While entries are
// pending the stream keeps a journal reminder, so after a restart the reminder scanner wakes the sender and it
// delivers again.
//
// Receiver: the generic Deliver handler (grain.Deliver → entity.receive) keeps, per sender stream, the highest
// out_seq applied (InboxAdvanced, in the same append as the events the message caused). An envelope at or below
// that mark is a duplicate and is acknowledged without effect. With one delivery in flight per destination in
// out_seq order, every message is applied exactly once.

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// sendTo returns the event that puts payload in the deciding actor's outbox for the actor (kind, identity).
// Decisions return it among their events; the entity delivers it after the append (docs/workflow.md, "Messages
// between actors"). The error is an encoding failure (e.g. a string that is not UTF-8), a bug of the caller's
// validation.
func sendTo(kind, identity string, payload proto.Message) (*messages.OutboxAdded, error) {
	packed, err := anypb.New(payload)
	if err != nil {
		return nil, fmt.Errorf("pack %s for %s/%s: %w", payload.ProtoReflect().Descriptor().FullName(), kind, identity, err)
	}
	return &messages.OutboxAdded{ToKind: kind, ToIdentity: identity, Payload: packed}, nil
}

// deliverFunc is a kind's decision on a message another actor sent it: a pure function of the state, the sender's
// stream, the payload and the time, returning events (sends, timers, feed items included) or a refusal. It returns
// an error wrapping errUnexpectedPayload for a payload type the kind does not handle (the sender keeps retrying
// it, and the receiver logs it: a bug or a newer sender).
type deliverFunc[S proto.Message] func(state S, from string, payload proto.Message, now time.Time) ([]proto.Message, error)

// errUnexpectedPayload: a kind received a payload type it does not handle.
var errUnexpectedPayload = errors.New("unexpected payload")

// unexpectedPayload returns the error a deliverFunc returns for a payload it does not handle.
func unexpectedPayload(kind string, payload proto.Message) error {
	return fmt.Errorf("%s: %w %s", kind, errUnexpectedPayload, payloadName(payload))
}

func payloadName(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}

// ---- Mailbox: the messaging state of an entity ----

// mailbox is the messaging state of one entity: pending outbox entries by out_seq, inbox marks by sender stream,
// and timers by name. The entity folds its event types (OutboxAdded, OutboxAcked, InboxAdvanced, TimerSet,
// TimerCleared, TimerFired) into it and saves it in snapshots.
type mailbox struct {
	outbox map[uint64]*messages.OutboxAdded
	inbox  map[string]*messages.InboxMark
	timers map[string]time.Time
}

func newMailbox() mailbox {
	return mailbox{
		outbox: make(map[uint64]*messages.OutboxAdded),
		inbox:  make(map[string]*messages.InboxMark),
		timers: make(map[string]time.Time),
	}
}

// fold applies msg, appended at seq, if it is a mailbox event, and reports whether it was.
func (m *mailbox) fold(seq uint64, msg proto.Message) bool {
	switch ev := msg.(type) {
	case *messages.OutboxAdded:
		m.outbox[seq] = ev
	case *messages.OutboxAcked:
		for _, s := range ev.GetOutSeqs() {
			delete(m.outbox, s)
		}
	case *messages.InboxAdvanced:
		if cur, ok := m.inbox[ev.GetFromStream()]; !ok || ev.GetOutSeq() > cur.GetOutSeq() {
			m.inbox[ev.GetFromStream()] = &messages.InboxMark{OutSeq: ev.GetOutSeq(), At: ev.GetAt()}
		}
	case *messages.TimerSet:
		m.timers[ev.GetName()] = ev.GetDue().AsTime()
	case *messages.TimerCleared:
		delete(m.timers, ev.GetName())
	case *messages.TimerFired:
		delete(m.timers, ev.GetName())
	default:
		return false
	}
	return true
}

// forgetInboxBefore drops the inbox marks last advanced before t, so that an actor that hears from many senders
// (a restaurant from every order) does not keep a mark per sender forever. A sender retries an entry until it is
// acknowledged, with back-off capped at OutboxRetryMax, so a duplicate older than the retention does not come.
func (m *mailbox) forgetInboxBefore(t time.Time) {
	for from, mark := range m.inbox {
		if mark.GetAt() != nil && mark.GetAt().AsTime().Before(t) {
			delete(m.inbox, from)
		}
	}
}

func (m *mailbox) snapshot() *messages.EntityMailbox {
	out := &messages.EntityMailbox{}
	for seq, added := range m.outbox {
		out.Outbox = append(out.Outbox, &messages.OutboxEntry{OutSeq: seq, Added: added})
	}
	if len(m.inbox) > 0 {
		out.Inbox = make(map[string]*messages.InboxMark, len(m.inbox))
		for from, mark := range m.inbox {
			out.Inbox[from] = mark
		}
	}
	if len(m.timers) > 0 {
		out.Timers = make(map[string]*timestamppb.Timestamp, len(m.timers))
		for name, due := range m.timers {
			out.Timers[name] = timestamppb.New(due)
		}
	}
	return out
}

func (m *mailbox) restore(s *messages.EntityMailbox) {
	for _, e := range s.GetOutbox() {
		m.outbox[e.GetOutSeq()] = e.GetAdded()
	}
	for from, mark := range s.GetInbox() {
		m.inbox[from] = mark
	}
	for name, due := range s.GetTimers() {
		m.timers[name] = due.AsTime()
	}
}

func sortedSeqs(set map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	for i := 1; i < len(out); i++ { // small sets: insertion sort
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ---- Courier: the grain side of delivery ----

// courier delivers an activation's pending outbox entries. It lives in the activation and is used only from the
// actor's goroutine; the calls themselves run on goroutines that report back with deliveryDone.
type courier struct {
	dests map[string]*destination // by key (kind + "/" + identity), the name the activation's messages carry
	// targets finds a destination by (kind, identity) without building its key: pump looks one up per pending
	// entry on every pass. Made on first use.
	targets map[target]*destination
}

// target names a receiver.
type target struct{ kind, identity string }

// destination is the delivery state of one receiver: the entry in flight (0: none), consecutive failures, and the
// retry timer while it waits.
type destination struct {
	kind, identity string
	key            string // kind + "/" + identity, built once
	sending        uint64
	failures       int
	retry          *time.Timer
}

// destination returns the delivery state of the receiver (kind, identity), made on first use.
func (c *courier) destination(kind, identity string) *destination {
	if d := c.targets[target{kind, identity}]; d != nil {
		return d
	}
	if c.targets == nil {
		c.targets = make(map[target]*destination)
	}
	d := &destination{kind: kind, identity: identity, key: kind + "/" + identity}
	c.targets[target{kind, identity}] = d
	c.dests[d.key] = d
	return d
}

// Messages an activation sends itself (local only; never cross the network).
type (
	// deliveryDone reports the outcome of one Deliver call.
	deliveryDone struct {
		dest   string
		outSeq uint64
		err    error
	}
	// retryDestination says a destination's back-off has passed.
	retryDestination struct{ dest string }
)

// backoff returns the delay before the next attempt after failures consecutive failures: OutboxRetryMin doubled
// per failure, capped at OutboxRetryMax, with ±20 % jitter so that many senders of a receiver that comes back do
// not retry in step.
func backoff(cfg WorkflowConfig, failures int) time.Duration {
	d := cfg.OutboxRetryMin
	for i := 1; i < failures && d < cfg.OutboxRetryMax; i++ {
		d *= 2
	}
	d = min(d, cfg.OutboxRetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}

// pump starts a delivery for every destination that has pending entries, none in flight and no retry waiting.
func (g *grain[S]) pump() {
	if g.entity == nil || g.entity.broken || g.stopping {
		return
	}
	for _, p := range g.entity.pendingOutbox() {
		d := g.courier.destination(p.added.GetToKind(), p.added.GetToIdentity())
		if d.sending != 0 || d.retry != nil {
			continue // busy: entries of one destination go one at a time, in out_seq order
		}
		d.sending = p.seq
		env := &messages.Envelope{FromStream: g.entity.stream, OutSeq: p.seq, Payload: p.added.GetPayload()}
		c, system, self, timeout := g.cluster, g.system, g.self, g.deps.Workflow.DeliverTimeout
		go func() {
			_, err := callGrain(c, d.kind, d.identity, "Deliver", env, timeout)
			system.Root.Send(self, deliveryDone{dest: d.key, outSeq: env.GetOutSeq(), err: err})
		}()
	}
}

// delivered handles the outcome of one delivery: an acknowledged entry is recorded for the next append (written
// at once when nothing else is in flight), a failed one is retried after a back-off.
func (g *grain[S]) delivered(m deliveryDone) {
	d := g.courier.dests[m.dest]
	if d == nil || d.sending != m.outSeq || g.entity == nil {
		return
	}
	d.sending = 0
	if m.err == nil {
		d.failures = 0
		g.entity.ack(m.outSeq)
	} else {
		d.failures++
		delay := backoff(g.deps.Workflow, d.failures)
		level := slog.LevelWarn
		if d.failures > 1 {
			level = slog.LevelDebug // the first failure says it; the rest would flood the log while a receiver is down
		}
		g.log.Log(g.bg(), level, "delivery failed; retrying", slog.String("to_kind", d.kind), slog.String("to_identity", d.identity),
			slog.Uint64("out_seq", m.outSeq), slog.Int("failures", d.failures), slog.Duration("retry_in", delay), slog.Any("error", m.err))
		system, self, key := g.system, g.self, m.dest
		d.retry = time.AfterFunc(delay, func() { system.Root.Send(self, retryDestination{dest: key}) })
		g.entity.deferOutbox(g.deps.Now().Add(delay + g.deps.Workflow.DeliverTimeout))
	}
	g.pump()
	if !g.delivering() || len(g.entity.acked) >= maxUnrecordedAcks {
		g.flush()
	}
}

// maxUnrecordedAcks bounds the acknowledged entries an activation keeps before recording them even while other
// deliveries are in flight.
const maxUnrecordedAcks = 64

// delivering reports whether a delivery call is in flight.
func (g *grain[S]) delivering() bool {
	for _, d := range g.courier.dests {
		if d.sending != 0 {
			return true
		}
	}
	return false
}

// retried handles the end of a destination's back-off.
func (g *grain[S]) retried(m retryDestination) {
	if d := g.courier.dests[m.dest]; d != nil {
		d.retry = nil
	}
	g.pump()
}

// flush records acknowledged entries and moves the reminder where the outbox and timers need it. A failure is
// logged; the activation stops when it may no longer write.
func (g *grain[S]) flush() {
	if g.entity == nil || g.entity.broken {
		return
	}
	var err error
	if len(g.entity.acked) > 0 {
		_, err = g.entity.commit(g.bg(), nil, nil, g.deps.Now())
	} else {
		err = g.entity.syncReminder(g.bg())
	}
	switch {
	case errors.Is(err, errStale): // another activation wrote first: this one stops, as after a command's fenced write
		g.log.Warn("activation lost the write race", slog.Uint64("seq", g.entity.seq), slog.String("while", "recording the outbox"))
	case err != nil:
		g.log.Error("recording the outbox failed", slog.Any("error", err))
	}
	g.afterWrite(0)
}

// stopCourier cancels the retry timers (the activation is stopping; the next one resumes from the journal).
func (c *courier) stop() {
	for _, d := range c.dests {
		if d.retry != nil {
			d.retry.Stop()
			d.retry = nil
		}
	}
}

// ---- Calling a grain method by name ----

// methodIndexes caches the index of (kind, method) in the kind's grain service (platter.<Kind>): the generated
// grain code dispatches GrainRequest by that index. It is read on every call between grains, so a lookup builds no
// string and takes no lock: the map is replaced, never changed, when a pair is added (a few dozen pairs in all).
var methodIndexes atomic.Pointer[map[methodKey]int32]

type methodKey struct{ kind, method string }

// methodIndex returns the index of method in the grain service of kind, or an error when the kind has no such
// service or method.
func methodIndex(kind, method string) (int32, error) {
	if known := methodIndexes.Load(); known != nil {
		if idx, ok := (*known)[methodKey{kind, method}]; ok {
			return idx, nil
		}
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("platter." + kind))
	if err != nil {
		return 0, fmt.Errorf("no grain service for kind %q: %w", kind, err)
	}
	svc, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return 0, fmt.Errorf("platter.%s is not a service", kind)
	}
	m := svc.Methods().ByName(protoreflect.Name(method))
	if m == nil {
		return 0, fmt.Errorf("service platter.%s has no method %s", kind, method)
	}
	idx := int32(m.Index())
	for {
		old := methodIndexes.Load()
		next := make(map[methodKey]int32, 1)
		if old != nil {
			next = maps.Clone(*old)
		}
		next[methodKey{kind, method}] = idx
		if methodIndexes.CompareAndSwap(old, &next) {
			return idx, nil
		}
	}
}

// callGrain calls method of the grain (kind, identity) through the cluster, as the generated client would, and
// returns its answer: the response message, or an error (a *pcluster.GrainErrorResponse for an answered error).
func callGrain(c *pcluster.Cluster, kind, identity, method string, req proto.Message, timeout time.Duration) (proto.Message, error) {
	idx, err := methodIndex(kind, method)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", payloadName(req), err)
	}
	resp, err := c.Request(identity, kind, &pcluster.GrainRequest{MethodIndex: idx, MessageData: data}, pcluster.WithTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("call %s/%s %s: %w", kind, identity, method, err)
	}
	switch r := resp.(type) {
	case *pcluster.GrainErrorResponse:
		return nil, r
	case proto.Message:
		return r, nil
	default:
		return nil, fmt.Errorf("call %s/%s %s: unexpected answer %T", kind, identity, method, resp)
	}
}
