package journal

import (
	"context"
	"time"
)

// Journal stores the state of every actor identity as a stream of events, plus the indexes the workflow needs
// around them: snapshots, one reminder per stream, and per-recipient feeds.
//
// Concurrency: a Journal is safe for concurrent use by any number of goroutines (one per actor activation, plus
// reminder scanners and feed readers). Appends to one stream are serialised by the fence, not by the caller: when
// two writers race with the same expected sequence, exactly one succeeds and the other gets ErrConflict. Reads see
// only committed writes. Close waits for writes in flight; every call after Close returns ErrClosed.
//
// Durability: when Append, SaveSnapshot, SetReminder, DeleteReminder or AppendFeed return nil, the write is on
// stable storage (fsync'd for bbolt, committed for SQL backends).
type Journal interface {
	// Load returns the newest snapshot of stream (zero Snapshot if none) and every event after it, oldest first.
	// The stream's last sequence number is the last event's Seq, or the snapshot's Seq when no event follows it;
	// a stream never written loads as (Snapshot{}, nil, nil).
	Load(ctx context.Context, stream string) (Snapshot, []Event, error)

	// Events returns up to limit events of stream with Seq > after, oldest first (for tools, invariant checks and
	// an actor's freshness check before it refuses a command; actors load with Load). limit <= 0 means no limit.
	Events(ctx context.Context, stream string, after uint64, limit int) ([]Event, error)

	// Append writes events to stream as Seq expectedSeq+1, expectedSeq+2, ... and returns the new last sequence
	// number. It is fenced: if the stream's last sequence number is not expectedSeq, nothing is written and it
	// returns ErrConflict, so a stale activation can never overwrite or interleave with a newer one. Events'
	// Seq fields are ignored (assigned here). The options add writes committed atomically with the events
	// (reminder, feed entries): all or nothing. An empty events slice only checks the fence and applies options.
	Append(ctx context.Context, stream string, expectedSeq uint64, events []Event, opts ...AppendOption) (uint64, error)

	// SaveSnapshot stores snap as the newest snapshot of stream. snap.Seq must not be beyond the stream's last
	// sequence number (ErrInvalid). A snapshot older than the stored one is ignored, so a stale activation cannot
	// move a stream back; snapshots need no fence because any activation's state at Seq n is derived from the
	// same committed events 1..n. Events are kept after a snapshot (audit, invariant checks).
	SaveSnapshot(ctx context.Context, stream string, snap Snapshot) error

	// Streams lists up to limit stream names that start with prefix and sort after `after`, in byte order.
	// limit <= 0 means no limit.
	Streams(ctx context.Context, prefix, after string, limit int) ([]string, error)

	// SetReminder sets (or moves) the one reminder of stream to due. The actor keeps its timers in its own state
	// and stores here only the earliest due time, so that a reminder scanner can wake it after any restart.
	// Prefer WithReminder on Append, which commits the reminder atomically with the events that set the timer.
	SetReminder(ctx context.Context, stream string, due time.Time) error

	// DeleteReminder removes the reminder of stream, if any.
	DeleteReminder(ctx context.Context, stream string) error

	// DueReminders returns up to limit reminders with Due <= now that come after `after` in (Due, Stream) order,
	// ordered by Due then Stream. The zero Reminder starts at the earliest; the last reminder of a page is the
	// `after` of the next, so that a scanner pages through every due reminder however many there are (a scanner
	// that wakes only some of them, e.g. those its node owns, must not stop at the first page). It does not remove
	// them: the woken actor moves or deletes its reminder once it has handled its timers, so a reminder fires at
	// least once even if the node dies while firing it. limit <= 0 means no limit.
	DueReminders(ctx context.Context, now time.Time, after Reminder, limit int) ([]Reminder, error)

	// AppendFeed appends entries to recipient's feed, assigning each the next cursor (1, 2, 3, ... per recipient,
	// dense and never reused), and returns the last cursor assigned. Prefer WithFeed on Append when the entry
	// results from an event, so that the entry and the event commit together.
	AppendFeed(ctx context.Context, recipient string, entries []FeedEntry) (uint64, error)

	// ReadFeed returns up to limit entries of recipient's feed with Cursor > after, oldest first.
	// limit <= 0 means no limit.
	ReadFeed(ctx context.Context, recipient string, after uint64, limit int) ([]FeedEntry, error)

	// DeleteStream removes stream: its events, snapshot and reminder, so that it loads as a stream never written
	// (and its next Append is at 0 again). It is fenced like Append: if the stream's last sequence number is not
	// expectedSeq, nothing is removed and it returns ErrConflict, so a stream somebody wrote after the caller
	// looked at it is never deleted, and of two callers deleting one stream, the second learns it (ErrConflict,
	// or nil with expectedSeq 0 for a stream already gone). Expiry marks stay (the owner removes them with
	// DeleteExpiry); feeds stay: they are addressed by recipient, not by stream, and their cursors are never reused.
	DeleteStream(ctx context.Context, stream string, expectedSeq uint64) error

	// Expired returns up to limit expiry marks (set by WithExpiry) with At <= now that come after `after` in
	// (At, Stream) order, ordered by At then Stream, as DueReminders pages reminders. A mark says when its
	// stream's owner should look at the stream again, to delete it or to mark it later; the journal deletes
	// nothing by itself. limit <= 0 means no limit.
	Expired(ctx context.Context, now time.Time, after Expiry, limit int) ([]Expiry, error)

	// DeleteExpiry removes the expiry mark e (exactly that stream and time), if it is there.
	DeleteExpiry(ctx context.Context, e Expiry) error

	// Close waits for writes in flight and releases the storage. Calling it again returns nil.
	Close() error
}

// Expiry is a mark saying that Stream's owner should look at it again from At on (to delete it, typically). A
// stream has as many marks as distinct times were set for it; they are hints, not state: an owner re-reads the
// stream before it acts on one. As the cursor of Expired, the zero value means "from the start".
type Expiry struct {
	Stream string
	At     time.Time
}

// IsZero reports whether e is the zero Expiry (the start of Expired's order).
func (e Expiry) IsZero() bool { return e.Stream == "" && e.At.IsZero() }

// Event is one entry of a stream. The journal does not interpret Type or Data.
type Event struct {
	// Seq is the position in the stream, from 1, contiguous. Assigned by Append.
	Seq uint64
	// Type names the payload's type; actors store the protobuf full name (e.g. "platter.RestaurantCreated").
	// Required.
	Type string
	// Data is the encoded payload.
	Data []byte
}

// Snapshot is an actor's state after applying events 1..Seq of its stream. The zero value means "no snapshot".
type Snapshot struct {
	Seq  uint64
	Type string
	Data []byte
}

// Reminder says that the actor owning Stream has a timer due at Due. As the cursor of DueReminders, the zero
// value means "from the start".
type Reminder struct {
	Stream string
	Due    time.Time
}

// IsZero reports whether r is the zero Reminder (the start of DueReminders' order).
func (r Reminder) IsZero() bool { return r.Stream == "" && r.Due.IsZero() }

// FeedEntry is one notification in a recipient's feed. The journal does not interpret Type or Data.
type FeedEntry struct {
	// Cursor is the entry's position in the feed, from 1, contiguous. Assigned by the journal.
	Cursor uint64
	Type   string
	Data   []byte
}

// AppendOption adds a write to an Append, committed in the same transaction as its events.
type AppendOption func(*AppendOptions)

// AppendOptions is the resolved set of extra writes of one Append; backends read it with ResolveOptions.
type AppendOptions struct {
	// Reminder, when non-nil, replaces the stream's reminder; a zero time deletes it.
	Reminder *time.Time
	// Feeds are entries appended to recipients' feeds (cursors assigned as by AppendFeed).
	Feeds []FeedAppend
	// Expiry, when non-nil, adds an expiry mark of the stream at that time (see Journal.Expired); never zero.
	Expiry *time.Time
}

// FeedAppend is a batch of entries for one recipient's feed.
type FeedAppend struct {
	Recipient string
	Entries   []FeedEntry
}

// WithReminder sets the appended stream's reminder to due together with the events.
func WithReminder(due time.Time) AppendOption {
	return func(o *AppendOptions) { o.Reminder = &due }
}

// WithoutReminder deletes the appended stream's reminder together with the events.
func WithoutReminder() AppendOption {
	return func(o *AppendOptions) { o.Reminder = &time.Time{} }
}

// WithExpiry adds an expiry mark of the appended stream at at, together with the events, for the stream's owner,
// who lists marks with Journal.Expired and deletes streams with Journal.DeleteStream (see package http's
// idempotency records). Marks are only added: one set earlier stays until DeleteExpiry. at must not be zero.
func WithExpiry(at time.Time) AppendOption {
	return func(o *AppendOptions) { o.Expiry = &at }
}

// WithFeed appends entries to recipient's feed together with the events.
func WithFeed(recipient string, entries ...FeedEntry) AppendOption {
	return func(o *AppendOptions) {
		o.Feeds = append(o.Feeds, FeedAppend{Recipient: recipient, Entries: entries})
	}
}

// ResolveOptions applies opts in order.
func ResolveOptions(opts []AppendOption) AppendOptions {
	var o AppendOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// LastSeq returns the last sequence number of a stream loaded as (snap, events).
func LastSeq(snap Snapshot, events []Event) uint64 {
	if len(events) > 0 {
		return events[len(events)-1].Seq
	}
	return snap.Seq
}
