package actors

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
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
	e.log.Debug("entity loaded", slog.Uint64("seq", e.seq), slog.Uint64("snapshot_seq", snap.Seq))
	return e, nil
}

// execute runs one command. It answers a retried command (same id, same content) with nil and no new event;
// otherwise it calls decide on the current state and, if decide returns events, appends them fenced at the last
// seen sequence number with opts, then applies them. Errors: an *Error (refusal, nothing written), errStale (the
// fence refused: this activation must stop), or an infrastructure error (the activation must stop too, because the
// outcome of a failed write is unknown).
func (e *entity[S]) execute(ctx context.Context, commandID string, command proto.Message, decide func(state S, now time.Time) ([]proto.Message, error), opts ...journal.AppendOption) error {
	if e.broken {
		return errStale
	}
	if commandID == "" {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "command_id is required")
	}
	fp, err := fingerprint(command)
	if err != nil {
		return fmt.Errorf("fingerprint command: %w", err)
	}
	if seen, ok := e.applied.get(commandID); ok {
		if string(seen) != string(fp) {
			return refuse(messages.ErrorReason_IDEMPOTENCY_KEY_REUSED, "command id %q was already used for a different request", commandID)
		}
		e.log.Debug("command replayed", slog.String("command_id", commandID))
		return nil
	}
	now := e.deps.Now()
	events, err := decide(e.state, now)
	if err != nil || len(events) == 0 {
		return err
	}
	marker := &messages.CommandApplied{CommandId: commandID, Fingerprint: fp, At: timestamppb.New(now)}
	records := make([]journal.Event, 0, len(events)+1)
	for _, msg := range append([]proto.Message{marker}, events...) {
		rec, err := encodeEvent(msg)
		if err != nil {
			return err
		}
		records = append(records, rec)
	}

	actx, cancel := context.WithTimeout(ctx, e.deps.StoreTimeout)
	defer cancel()
	seq, err := e.deps.Journal.Append(actx, e.stream, e.seq, records, opts...)
	if err != nil {
		e.broken = true
		if errors.Is(err, journal.ErrConflict) {
			e.log.Warn("activation lost the write race", slog.Uint64("seq", e.seq), slog.String("command_id", commandID))
			return errStale
		}
		return fmt.Errorf("append to %s: %w", e.stream, err)
	}
	if err := e.applyOne(marker, e.seq+1); err != nil {
		e.broken = true
		return err
	}
	for _, msg := range events {
		if err := e.applyOne(msg, e.seq+1); err != nil {
			// A decision emitted an event its own fold refuses: a bug. The events are durable, so stop here.
			e.broken = true
			return fmt.Errorf("apply %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	if e.seq != seq {
		e.broken = true
		return fmt.Errorf("journal returned seq %d after applying up to %d", seq, e.seq)
	}
	e.sinceSnapshot += len(records)
	e.maybeSnapshot(ctx)
	return nil
}

// applyOne folds one event (the entity's own CommandApplied, or a kind event) and advances seq.
func (e *entity[S]) applyOne(msg proto.Message, seq uint64) error {
	if m, ok := msg.(*messages.CommandApplied); ok {
		e.applied.add(m.GetCommandId(), m.GetFingerprint())
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
	data, err := proto.Marshal(&messages.EntitySnapshot{State: state, Applied: e.applied.list()})
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
	e.seq = snap.Seq
	return nil
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
