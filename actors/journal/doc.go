// Package journal is Platter's durable store: one event stream per actor identity, fenced appends, snapshots,
// a reminders index and per-recipient feeds. It replaces protoactor's persistence package, which keys state by
// PID and has no concurrency check (PROTOACTOR-NOTES.md trap 3).
//
// # Model
//
// A stream is named by the actor's cluster identity, "<kind>/<id>" in lower case (e.g. "restaurant/r_123",
// "order/o_9"). Its events are numbered 1, 2, 3, ... with no gaps. An actor activation loads its stream
// (newest snapshot + the events after it), and appends with the sequence number it last saw:
//
//	snap, events, err := j.Load(ctx, "order/o_9")
//	seq := journal.LastSeq(snap, events)
//	seq, err = j.Append(ctx, "order/o_9", seq, newEvents, journal.WithReminder(due))
//	if errors.Is(err, journal.ErrConflict) { /* another activation wrote first: stop, let the next one reload */ }
//
// The fence makes duplicate activations (which protoactor does create during membership changes) harmless: only
// one of two writers with the same expected sequence succeeds, and the loser learns it.
//
// Everything an actor decides in one step commits atomically with its events: Append takes options that set or
// delete the stream's reminder (WithReminder, WithoutReminder) and add feed entries (WithFeed).
//
// # De-duplication
//
// The journal has no idempotency table. Commands carry ids; an actor records the ids it applied in its own events
// and state (and so in its snapshots), and answers a retried command from that record without appending again
// (see package actors). Messages between actors are de-duplicated the same way, by (sender, sequence) in the
// receiver's state.
//
// # Reminders
//
// An actor keeps its timers in its own state and stores only the earliest due time here, one reminder per stream.
// A reminder scanner reads DueReminders, page by page with a (Due, Stream) cursor, and wakes the actors; the woken
// actor handles its due timers and moves or deletes its reminder in the same Append that records the effect. The
// scanner never deletes reminders, so a timer fires at least once, after any restart.
//
// # Feeds
//
// A feed is a recipient's notification list, addressed by dense cursors 1, 2, 3, ... that never change, so a
// client that comes back with its last cursor gets every entry it missed.
//
// # Retention
//
// Streams are kept until their owner deletes them. DeleteStream removes a stream (events, snapshot, reminder;
// not feeds) fenced on its last sequence number, like an Append, so a stream written since its owner looked at
// it survives, and two deleters of one stream never both succeed. A stream that should go some day carries
// expiry marks, added with WithExpiry atomically with its events; Expired lists the marks that have passed, by
// (At, Stream), paged like DueReminders, so that finding them reads only them, however many other streams there
// are. Marks are hints, only added and removed one by one (DeleteExpiry): the owner re-reads the stream and
// decides, then removes the mark (package http sweeps its idempotency records this way). The journal deletes
// nothing by itself.
//
// # Backends
//
// Bolt (OpenBolt) is the embedded backend: one bbolt file per node, every write fsync'd before it returns, with a
// committer goroutine that packs concurrent writes into one transaction (group commit), lingering up to
// BoltOptions.MaxBatchDelay for the writers its previous commit answered. Package journaltest is the
// conformance suite every backend passes.
package journal
