package actors

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// entity is the durable core every actor kind reuses: it loads the activation's journal stream, folds events into
// the kind's state, runs commands (de-duplicate → decide → fenced append → apply), remembers applied command ids
// and takes snapshots. It holds no lock: one activation uses it from its own goroutine.
//
// What it stores in the stream, per command that changed state: one messages.CommandApplied (command id, its
// fingerprint, the time) followed by the kind's events. Snapshots are messages.EntitySnapshot (the kind's state
// plus the remembered command ids), so de-duplication survives restarts and snapshots.
type entity[S proto.Message] struct {
	stream string
	deps   *Deps
	log    *slog.Logger

	state         S
	apply         func(S, proto.Message) error
	seq           uint64 // last sequence number applied (the fence for the next append)
	applied       commandLog
	sinceSnapshot int // events applied since the last snapshot

	// broken is set once this activation may no longer write: it lost the write race to another activation, or a
	// write failed and its outcome is unknown. The grain stops the activation; the next one reloads.
	broken bool

	// box is the messaging state (outbox, inbox marks, timers), folded by the entity itself from its own event
	// types; the kind's apply never sees them (see outbox.go).
	box mailbox
	// acked holds outbox entries acknowledged by their receivers and not yet recorded: the next append records
	// them (OutboxAcked) first. Losing them (a crash) only causes a redelivery the receiver ignores.
	acked map[uint64]bool
	// outboxDue is when the reminder should wake the stream for its outbox while entries are pending (zero when
	// none are): a little after the delivery in progress should have been acknowledged.
	outboxDue time.Time
	// reminder is the reminder the journal holds for the stream, as far as this activation knows.
	reminder reminderMark
}

// reminderMark is the reminder the journal holds: known is false until this activation wrote one (a fresh
// activation does not know), due is zero for none.
type reminderMark struct {
	known bool
	due   time.Time
}

// errStale is returned by execute when the fence refused the append: another activation wrote first.
var errStale = errors.New("stale activation: another activation appended first")

// loadEntity loads stream into state (a fresh, empty state value) with apply, the kind's event folder. apply must
// accept every event type the kind's decisions emit and refuse unknown ones.
func loadEntity[S proto.Message](ctx context.Context, deps *Deps, stream string, state S, apply func(S, proto.Message) error) (*entity[S], error) {
	e := &entity[S]{
		stream:  stream,
		deps:    deps,
		log:     deps.Logger.With(slog.String("stream", stream)),
		state:   state,
		apply:   apply,
		applied: newCommandLog(deps.RememberCommands),
		box:     newMailbox(),
		acked:   make(map[uint64]bool),
	}
	ctx, cancel := context.WithTimeout(ctx, deps.StoreTimeout)
	defer cancel()
	snap, events, err := deps.Journal.Load(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", stream, err)
	}
	if snap.Seq > 0 {
		if err := e.restore(snap); err != nil {
			return nil, fmt.Errorf("restore snapshot %d of %s: %w", snap.Seq, stream, err)
		}
	}
	for _, ev := range events {
		if ev.Seq != e.seq+1 {
			return nil, fmt.Errorf("load %s: event %d follows %d", stream, ev.Seq, e.seq)
		}
		msg, err := decodeEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", stream, err)
		}
		if err := e.applyOne(msg, ev.Seq); err != nil {
			return nil, fmt.Errorf("load %s: event %d: %w", stream, ev.Seq, err)
		}
		e.sinceSnapshot++
	}
	if len(e.box.outbox) > 0 {
		// The activation delivers its outbox at once; the reminder wakes the stream again if that fails.
		e.outboxDue = deps.Now().Add(deps.Workflow.DeliverTimeout)
	}
	e.log.Debug("entity loaded", slog.Uint64("seq", e.seq), slog.Uint64("snapshot_seq", snap.Seq))
	return e, nil
}

// execute runs one command. It answers a retried command (same id, same content) with nil and no new event;
// otherwise it calls decide on the current state and, if decide returns events, appends them fenced at the last
// seen sequence number (see commit), then applies them. command is only fingerprinted: a handler may pass a copy
// without secrets (see Customer.SetPaymentMethod). Errors: an *Error (refusal, nothing written), errStale (the
// fence refused: this activation must stop), or an infrastructure error (the activation must stop too, because
// the outcome of a failed write is unknown).
func (e *entity[S]) execute(ctx context.Context, commandID string, command proto.Message, decide func(state S, now time.Time) ([]proto.Message, error)) error {
	if replayed, err := e.replayed(commandID, command); replayed || err != nil {
		return err
	}
	fp, err := fingerprint(command)
	if err != nil {
		return fmt.Errorf("fingerprint command: %w", err)
	}
	now := e.deps.Now()
	events, err := decide(e.state, now)
	if err != nil {
		var refusal *Error
		if errors.As(err, &refusal) && e.behind(ctx) {
			return errStale
		}
		return err
	}
	if len(events) == 0 {
		return nil
	}
	marker := &messages.CommandApplied{CommandId: commandID, Fingerprint: fp, At: timestamppb.New(now)}
	_, err = e.commit(ctx, []proto.Message{marker}, events, now)
	if errors.Is(err, errStale) {
		e.log.Warn("activation lost the write race", slog.Uint64("seq", e.seq), slog.String("command_id", commandID))
	}
	return err
}

// behind reports whether the journal holds events after the last one this activation applied, and then marks it
// broken. The fence catches a stale activation when it writes, but a refusal writes nothing: during a membership
// change two activations of one identity can live for a moment, and the one that missed the other's write would
// refuse a step that is in fact allowed (picked up before ready, say). So a refusal is answered only after this
// check; a stale activation answers errStale instead, stops, and the retry reaches a fresh one. Refusals are rare,
// so the extra read is cheap. A read that fails counts as not behind: the refusal stands, as it did before.
func (e *entity[S]) behind(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, e.deps.StoreTimeout)
	defer cancel()
	newer, err := e.deps.Journal.Events(rctx, e.stream, e.seq, 1)
	if err != nil {
		e.log.Warn("freshness check before a refusal failed", slog.Any("error", err))
		return false
	}
	if len(newer) == 0 {
		return false
	}
	e.broken = true
	e.log.Warn("activation is behind the journal; refusing as moved", slog.Uint64("seq", e.seq), slog.Uint64("journal_seq", newer[0].Seq))
	return true
}

// replayed reports whether commandID was applied already with the same command (answer it again, without a
// second effect). It refuses a missing id (INVALID_ARGUMENT), an id reused for another command
// (IDEMPOTENCY_KEY_REUSED), and every command once the activation is broken (errStale). Handlers with a side
// effect outside the journal (a payment gateway call) call it before the side effect.
func (e *entity[S]) replayed(commandID string, command proto.Message) (bool, error) {
	if e.broken {
		return false, errStale
	}
	if commandID == "" {
		return false, refuse(messages.ErrorReason_INVALID_ARGUMENT, "command_id is required")
	}
	fp, err := fingerprint(command)
	if err != nil {
		return false, fmt.Errorf("fingerprint command: %w", err)
	}
	seen, ok := e.applied.get(commandID)
	if !ok {
		return false, nil
	}
	if string(seen) != string(fp) {
		return false, refuse(messages.ErrorReason_IDEMPOTENCY_KEY_REUSED, "command id %q was already used for a different request", commandID)
	}
	e.log.Debug("command replayed", slog.String("command_id", commandID))
	return true, nil
}

// commit appends, fenced at e.seq and atomically: the record of acknowledged outbox entries (OutboxAcked), head
// (the entity's own records: CommandApplied, InboxAdvanced, TimerFired), and a decision's output. Output items of
// type *messages.FeedItem are not events: they go to the stream's feed (journal.WithFeed) in the same write. The
// stream's reminder is moved in the same write when the timers or the outbox change it. Then it applies the
// events, and returns how many feed entries it appended. Nothing to write → no write.
func (e *entity[S]) commit(ctx context.Context, head, output []proto.Message, now time.Time) (int, error) {
	if e.broken {
		return 0, errStale
	}
	events := make([]proto.Message, 0, len(head)+len(output)+1)
	if len(e.acked) > 0 {
		events = append(events, &messages.OutboxAcked{OutSeqs: sortedSeqs(e.acked)})
	}
	events = append(events, head...)
	var feed []journal.FeedEntry
	for _, msg := range output {
		if item, ok := msg.(*messages.FeedItem); ok {
			entry, err := feedEntry(item)
			if err != nil {
				return 0, err
			}
			feed = append(feed, entry)
			continue
		}
		events = append(events, msg)
	}
	due, outboxDue := e.reminderAfter(events, now)
	var opts []journal.AppendOption
	moveReminder := !e.reminder.known || !e.reminder.due.Equal(due)
	if moveReminder {
		if due.IsZero() {
			opts = append(opts, journal.WithoutReminder())
		} else {
			opts = append(opts, journal.WithReminder(due))
		}
	}
	if len(feed) > 0 {
		opts = append(opts, journal.WithFeed(e.stream, feed...))
	}
	if len(events) == 0 && len(opts) == 0 {
		return 0, nil
	}
	records := make([]journal.Event, 0, len(events))
	for _, msg := range events {
		rec, err := encodeEvent(msg)
		if err != nil {
			return 0, err
		}
		records = append(records, rec)
	}

	actx, cancel := context.WithTimeout(ctx, e.deps.StoreTimeout)
	defer cancel()
	seq, err := e.deps.Journal.Append(actx, e.stream, e.seq, records, opts...)
	if err != nil {
		e.broken = true
		if errors.Is(err, journal.ErrConflict) {
			return 0, errStale
		}
		return 0, fmt.Errorf("append to %s: %w", e.stream, err)
	}
	clear(e.acked)
	e.reminder = reminderMark{known: true, due: due}
	e.outboxDue = outboxDue
	for _, msg := range events {
		if err := e.applyOne(msg, e.seq+1); err != nil {
			// A decision emitted an event its own fold refuses: a bug. The events are durable, so stop here.
			e.broken = true
			return 0, fmt.Errorf("apply %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	if e.seq != seq {
		e.broken = true
		return 0, fmt.Errorf("journal returned seq %d after applying up to %d", seq, e.seq)
	}
	e.sinceSnapshot += len(records)
	e.maybeSnapshot(ctx)
	return len(feed), nil
}

// reminderAfter returns the reminder the stream needs once events are applied (zero: none) and the outbox due
// time then: the earliest timer, or the outbox due time if entries stay pending and it is earlier.
func (e *entity[S]) reminderAfter(events []proto.Message, now time.Time) (due, outboxDue time.Time) {
	timers := maps.Clone(e.box.timers)
	pending := make(map[uint64]bool, len(e.box.outbox))
	for seq := range e.box.outbox {
		pending[seq] = true
	}
	added := 0
	for _, ev := range events {
		switch m := ev.(type) {
		case *messages.TimerSet:
			timers[m.GetName()] = m.GetDue().AsTime()
		case *messages.TimerCleared:
			delete(timers, m.GetName())
		case *messages.TimerFired:
			delete(timers, m.GetName())
		case *messages.OutboxAdded:
			added++
		case *messages.OutboxAcked:
			for _, seq := range m.GetOutSeqs() {
				delete(pending, seq)
			}
		}
	}
	for _, t := range timers {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	if len(pending)+added > 0 {
		outboxDue = e.outboxDue
		if outboxDue.IsZero() {
			outboxDue = now.Add(e.deps.Workflow.DeliverTimeout)
		}
		if due.IsZero() || outboxDue.Before(due) {
			due = outboxDue
		}
	}
	return due, outboxDue
}

// syncReminder writes the reminder the stream needs now when the journal may hold another one (an empty,
// fenced append). The grain calls it after a Wake, so that a reminder that has done its work stops waking the
// stream at every scan.
func (e *entity[S]) syncReminder(ctx context.Context) error {
	due, _ := e.reminderAfter(nil, e.deps.Now())
	if e.reminder.known && e.reminder.due.Equal(due) {
		return nil
	}
	_, err := e.commit(ctx, nil, nil, e.deps.Now())
	return err
}

// deferOutbox moves the outbox due time to t (the grain calls it when a delivery waits for a retry), so that the
// reminder does not wake the stream before its own retry. It writes nothing itself; see syncReminder.
func (e *entity[S]) deferOutbox(t time.Time) {
	if len(e.box.outbox) > 0 && t.After(e.outboxDue) {
		e.outboxDue = t
	}
}

// ack records that the receiver acknowledged the outbox entry outSeq; it is written with the next append.
func (e *entity[S]) ack(outSeq uint64) {
	if _, ok := e.box.outbox[outSeq]; ok {
		e.acked[outSeq] = true
	}
}

// pendingOutbox returns the outbox entries not acknowledged yet, oldest first.
func (e *entity[S]) pendingOutbox() []pendingSend {
	out := make([]pendingSend, 0, len(e.box.outbox))
	for seq, added := range e.box.outbox {
		if !e.acked[seq] {
			out = append(out, pendingSend{seq: seq, added: added})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// pendingSend is an unacknowledged outbox entry.
type pendingSend struct {
	seq   uint64
	added *messages.OutboxAdded
}

// receive applies one delivered envelope exactly once: an out_seq at or below the sender's inbox mark is a
// duplicate and changes nothing; otherwise decide (the kind's decision on the payload) runs and its output is
// appended together with InboxAdvanced. A refusal (*Error) of the decision is logged and the envelope counts as
// applied without effect: a fact another actor reports cannot be refused, and retrying it would never succeed.
// Other errors (an undecodable or unexpected payload, a store failure) leave the envelope unapplied, so the
// sender retries it. It returns how many feed entries were appended.
func (e *entity[S]) receive(ctx context.Context, env *messages.Envelope, decide deliverFunc[S]) (int, error) {
	if e.broken {
		return 0, errStale
	}
	from, seq := env.GetFromStream(), env.GetOutSeq()
	if from == "" || seq == 0 || env.GetPayload() == nil {
		return 0, refuse(messages.ErrorReason_INVALID_ARGUMENT, "an envelope needs from_stream, out_seq and payload")
	}
	if mark, ok := e.box.inbox[from]; ok && seq <= mark.GetOutSeq() {
		e.log.Debug("duplicate delivery ignored", slog.String("from", from), slog.Uint64("out_seq", seq))
		return 0, nil
	}
	payload, err := env.GetPayload().UnmarshalNew()
	if err != nil {
		return 0, fmt.Errorf("decode payload %s from %s: %w", env.GetPayload().GetTypeUrl(), from, err)
	}
	if decide == nil {
		return 0, fmt.Errorf("%w: %s from %s (the kind receives no messages)", errUnexpectedPayload, payloadName(payload), from)
	}
	now := e.deps.Now()
	output, err := decide(e.state, from, payload, now)
	var refusal *Error
	switch {
	case errors.As(err, &refusal):
		e.log.Warn("delivery refused by the decision; applied without effect", slog.String("from", from),
			slog.Uint64("out_seq", seq), slog.String("payload", payloadName(payload)), slog.String("code", refusal.Code.String()),
			slog.String("reason", refusal.Message))
		output = nil
	case err != nil:
		return 0, err
	}
	head := &messages.InboxAdvanced{FromStream: from, OutSeq: seq, At: timestamppb.New(now)}
	return e.commit(ctx, []proto.Message{head}, output, now)
}

// fireDue fires every timer due now, earliest first, each in its own append: TimerFired (which removes the timer)
// followed by the output of decide (the kind's decision on the timer). A refusal of the decision is logged and
// the timer counts as fired. A timer that a firing sets again is not fired again by the same call. It returns how
// many timers fired and how many feed entries were appended.
func (e *entity[S]) fireDue(ctx context.Context, decide timerFunc[S]) (fired, feed int, err error) {
	done := make(map[string]bool)
	for {
		if e.broken {
			return fired, feed, errStale
		}
		now := e.deps.Now()
		name, due, ok := e.box.nextDue(now, done)
		if !ok {
			return fired, feed, nil
		}
		done[name] = true
		var output []proto.Message
		if decide != nil {
			output, err = decide(e.state, name, now)
			var refusal *Error
			switch {
			case errors.As(err, &refusal):
				e.log.Warn("timer refused by the decision; removed without effect", slog.String("timer", name),
					slog.String("code", refusal.Code.String()), slog.String("reason", refusal.Message))
				output = nil
			case err != nil:
				return fired, feed, err
			}
		}
		head := &messages.TimerFired{Name: name, Due: timestamppb.New(due), FiredAt: timestamppb.New(now)}
		n, err := e.commit(ctx, []proto.Message{head}, output, now)
		if err != nil {
			return fired, feed, err
		}
		fired++
		feed += n
		e.log.Debug("timer fired", slog.String("timer", name), slog.Time("due", due))
	}
}

// applyOne folds one event (the entity's own CommandApplied, a mailbox event, or a kind event) and advances seq.
func (e *entity[S]) applyOne(msg proto.Message, seq uint64) error {
	if m, ok := msg.(*messages.CommandApplied); ok {
		e.applied.add(m.GetCommandId(), m.GetFingerprint())
	} else if e.box.fold(seq, msg) {
		if len(e.box.outbox) == 0 {
			e.outboxDue = time.Time{}
		}
	} else if err := e.apply(e.state, msg); err != nil {
		return err
	}
	e.seq = seq
	return nil
}

// maybeSnapshot saves a snapshot every SnapshotEvery events. A failure is logged and retried after the next
// command: snapshots only shorten loading.
func (e *entity[S]) maybeSnapshot(ctx context.Context) {
	if e.deps.SnapshotEvery <= 0 || e.sinceSnapshot < e.deps.SnapshotEvery {
		return
	}
	snap, err := e.snapshot()
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, e.deps.StoreTimeout)
		err = e.deps.Journal.SaveSnapshot(sctx, e.stream, snap)
		cancel()
	}
	if err != nil {
		e.log.Warn("snapshot failed", slog.Uint64("seq", e.seq), slog.Any("error", err))
		return
	}
	e.sinceSnapshot = 0
	e.log.Debug("snapshot saved", slog.Uint64("seq", e.seq))
}

func (e *entity[S]) snapshot() (journal.Snapshot, error) {
	state, err := anypb.New(e.state)
	if err != nil {
		return journal.Snapshot{}, fmt.Errorf("pack state: %w", err)
	}
	e.box.forgetInboxBefore(e.deps.Now().Add(-e.deps.Workflow.InboxRetention))
	data, err := proto.Marshal(&messages.EntitySnapshot{State: state, Applied: e.applied.list(), Mailbox: e.box.snapshot()})
	if err != nil {
		return journal.Snapshot{}, fmt.Errorf("encode snapshot: %w", err)
	}
	return journal.Snapshot{Seq: e.seq, Type: string((&messages.EntitySnapshot{}).ProtoReflect().Descriptor().FullName()), Data: data}, nil
}

func (e *entity[S]) restore(snap journal.Snapshot) error {
	var s messages.EntitySnapshot
	if err := proto.Unmarshal(snap.Data, &s); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if err := s.GetState().UnmarshalTo(e.state); err != nil {
		return fmt.Errorf("unpack state: %w", err)
	}
	for _, c := range s.GetApplied() {
		e.applied.add(c.GetCommandId(), c.GetFingerprint())
	}
	e.box.restore(s.GetMailbox())
	e.seq = snap.Seq
	return nil
}

// unexpectedEvent is the error a kind's fold returns for an event it does not know.
func unexpectedEvent(kind string, event proto.Message) error {
	return fmt.Errorf("%s: unexpected event %s", strings.ToLower(kind), event.ProtoReflect().Descriptor().FullName())
}

// encodeEvent stores a protobuf event as its full name and bytes.
func encodeEvent(msg proto.Message) (journal.Event, error) {
	data, err := proto.Marshal(msg)
	if err != nil {
		return journal.Event{}, fmt.Errorf("encode %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return journal.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: data}, nil
}

// decodeEvent finds the event's type among the linked protobuf messages and decodes it.
func decodeEvent(ev journal.Event) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ev.Type))
	if err != nil {
		return nil, fmt.Errorf("event %d: unknown type %q: %w", ev.Seq, ev.Type, err)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(ev.Data, msg); err != nil {
		return nil, fmt.Errorf("event %d: decode %s: %w", ev.Seq, ev.Type, err)
	}
	return msg, nil
}

// fingerprint hashes a command without its command_id field, so that a retry with the same id is recognised and a
// different command under a reused id is refused.
func fingerprint(command proto.Message) ([]byte, error) {
	c := proto.Clone(command)
	if fd := c.ProtoReflect().Descriptor().Fields().ByName("command_id"); fd != nil {
		c.ProtoReflect().Clear(fd)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return sum[:16], nil
}

// commandLog remembers the last max applied command ids (and their fingerprints), oldest evicted first.
type commandLog struct {
	max   int
	byID  map[string][]byte
	order []string
}

func newCommandLog(max int) commandLog {
	return commandLog{max: max, byID: make(map[string][]byte)}
}

func (l *commandLog) get(id string) ([]byte, bool) {
	fp, ok := l.byID[id]
	return fp, ok
}

func (l *commandLog) add(id string, fp []byte) {
	if _, ok := l.byID[id]; ok {
		return
	}
	l.byID[id] = fp
	l.order = append(l.order, id)
	for len(l.order) > l.max {
		delete(l.byID, l.order[0])
		l.order = l.order[1:]
	}
}

func (l *commandLog) list() []*messages.AppliedCommand {
	out := make([]*messages.AppliedCommand, len(l.order))
	for i, id := range l.order {
		out[i] = &messages.AppliedCommand{CommandId: id, Fingerprint: l.byID[id]}
	}
	return out
}
