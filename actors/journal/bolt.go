package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltOptions configures the bbolt backend. The zero value of a field means its default.
type BoltOptions struct {
	// MaxBatchSize caps how many writes (appends, reminder and feed writes) share one commit, i.e. one fsync.
	// Default 256.
	MaxBatchSize int

	// MaxBatchDelay is how long the committer lingers for more writes, at most, while it holds fewer writes than
	// its previous commit had. Writes that arrive while a commit is in progress always join the next commit, so
	// under load batches form without any delay; but the writers answered together by one commit come back a
	// moment apart, and without a linger the first of them would take the next commit alone. A commit's fixed
	// cost (two fdatasyncs, the root, freelist and bucket root pages) is most of its cost when batches are small,
	// so the linger cuts the journal's CPU per write when a few writers are active (about half, measured with
	// BenchmarkBoltWorkflow/Writers4). A lone writer (previous commit of one write) never waits. Default 200 µs;
	// a negative value means no linger.
	MaxBatchDelay time.Duration

	// LockTimeout is how long OpenBolt waits for another process to release the file before failing with
	// ErrLocked. Default 1 s.
	LockTimeout time.Duration

	// FileMode is the permission of a newly created file. Default 0600.
	FileMode os.FileMode
}

// DefaultBoltOptions returns the options used for zero fields.
func DefaultBoltOptions() BoltOptions {
	return BoltOptions{
		MaxBatchSize:  256,
		MaxBatchDelay: 200 * time.Microsecond,
		LockTimeout:   time.Second,
		FileMode:      0o600,
	}
}

func (o BoltOptions) withDefaults() BoltOptions {
	d := DefaultBoltOptions()
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = d.MaxBatchSize
	}
	if o.MaxBatchDelay == 0 {
		o.MaxBatchDelay = d.MaxBatchDelay
	} else if o.MaxBatchDelay < 0 {
		o.MaxBatchDelay = 0
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = d.LockTimeout
	}
	if o.FileMode == 0 {
		o.FileMode = d.FileMode
	}
	return o
}

// Bolt is the embedded Journal: one bbolt file per node. Writes go through one committer goroutine that packs every
// write queued at that moment into a single bbolt transaction (group commit), so concurrent appends from many actors
// share one fsync; it lingers briefly (MaxBatchDelay) for the writers its previous commit answered. A write that fails
// inside a batch (not a fence conflict, which is a normal result and leaves the batch intact) makes the committer
// re-run each write of that batch in its own transaction, so one bad write never fails the others.
//
// File layout (buckets):
//
//	meta              "format" → "1"
//	streams/<stream>  seq (8 bytes, big endian) → event
//	snapshots         stream → snapshot
//	reminders         stream → due (8 bytes)
//	reminders_due     due (8 bytes) ‖ stream → ""   (ordered by due, then stream)
//	feeds/<recipient> cursor (8 bytes, big endian) → feed entry
//	expiry_marks      at (8 bytes) ‖ stream → ""    expiry marks, ordered by at, then stream (bolt_retention.go)
type Bolt struct {
	db   *bolt.DB
	opts BoltOptions

	mu      sync.RWMutex // guards closed; held shared by every call so that Close waits for them
	closed  bool
	writes  chan *writeRequest
	stopped chan struct{}
	commits atomic.Uint64 // group commits run (batches), for tests of the batching
}

var _ Journal = (*Bolt)(nil)

var (
	bucketMeta         = []byte("meta")
	bucketStreams      = []byte("streams")
	bucketSnapshots    = []byte("snapshots")
	bucketReminders    = []byte("reminders")
	bucketRemindersDue = []byte("reminders_due")
	bucketFeeds        = []byte("feeds")

	keyFormat   = []byte("format")
	valueFormat = []byte("1")
)

// OpenBolt opens (creating if needed) the journal file at path. It fails with ErrLocked when another process holds
// the file, and with the operating system's error when the directory cannot be created or written.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create journal directory: %w", err)
	}
	db, err := bolt.Open(path, opts.FileMode, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open journal %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketStreams, bucketSnapshots, bucketReminders, bucketRemindersDue, bucketFeeds, bucketExpiries} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch format := meta.Get(keyFormat); {
		case format == nil:
			return meta.Put(keyFormat, valueFormat)
		case !bytes.Equal(format, valueFormat):
			return fmt.Errorf("unsupported journal format %q (this build reads %q)", format, valueFormat)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise journal %s: %w", path, err)
	}
	b := &Bolt{
		db:      db,
		opts:    opts,
		writes:  make(chan *writeRequest, opts.MaxBatchSize),
		stopped: make(chan struct{}),
	}
	go b.commitLoop()
	return b, nil
}

// Path returns the file's path.
func (b *Bolt) Path() string { return b.db.Path() }

// Close waits for queued writes to commit, then closes the file. Calling it again returns nil.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.writes)
	b.mu.Unlock()
	<-b.stopped
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close journal: %w", err)
	}
	return nil
}

// Load implements Journal.
func (b *Bolt) Load(ctx context.Context, stream string) (Snapshot, []Event, error) {
	if err := checkName("stream", stream); err != nil {
		return Snapshot{}, nil, err
	}
	var (
		snap   Snapshot
		events []Event
	)
	err := b.read(ctx, func(tx *bolt.Tx) error {
		snap, events = Snapshot{}, nil
		if v := tx.Bucket(bucketSnapshots).Get([]byte(stream)); v != nil {
			s, err := decodeSnapshot(v)
			if err != nil {
				return err
			}
			snap = s
		}
		var err error
		events, err = readEvents(tx, stream, snap.Seq, 0)
		return err
	})
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("load %s: %w", stream, err)
	}
	return snap, events, nil
}

// Events implements Journal.
func (b *Bolt) Events(ctx context.Context, stream string, after uint64, limit int) ([]Event, error) {
	if err := checkName("stream", stream); err != nil {
		return nil, err
	}
	var events []Event
	err := b.read(ctx, func(tx *bolt.Tx) error {
		var err error
		events, err = readEvents(tx, stream, after, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", stream, err)
	}
	return events, nil
}

func readEvents(tx *bolt.Tx, stream string, after uint64, limit int) ([]Event, error) {
	sb := tx.Bucket(bucketStreams).Bucket([]byte(stream))
	if sb == nil {
		return nil, nil
	}
	var events []Event
	c := sb.Cursor()
	for k, v := c.Seek(encodeUint(after + 1)); k != nil; k, v = c.Next() {
		if limit > 0 && len(events) >= limit {
			break
		}
		typ, data, err := decodeRecord(v)
		if err != nil {
			return nil, fmt.Errorf("decode event %d: %w", decodeUint(k), err)
		}
		events = append(events, Event{Seq: decodeUint(k), Type: typ, Data: data})
	}
	return events, nil
}

// Append implements Journal.
func (b *Bolt) Append(ctx context.Context, stream string, expectedSeq uint64, events []Event, opts ...AppendOption) (uint64, error) {
	if err := checkName("stream", stream); err != nil {
		return 0, err
	}
	if err := checkEvents(events); err != nil {
		return 0, err
	}
	o := ResolveOptions(opts)
	if err := checkOptions(o); err != nil {
		return 0, err
	}
	// Encode outside the transaction: the committer's time is everybody's latency.
	key := []byte(stream)
	records := make([][]byte, len(events))
	for i := range events {
		records[i] = encodeRecord(events[i].Type, events[i].Data)
	}
	feeds := encodeFeeds(o.Feeds)

	var (
		newSeq   uint64
		conflict bool
	)
	err := b.write(ctx, func(tx *bolt.Tx) error {
		// This function may run twice (alone, after its batch failed): reset what it reports.
		newSeq, conflict = 0, false
		last, sb, err := lastSeq(tx, key)
		if err != nil {
			return err
		}
		if last != expectedSeq {
			// A conflict is a result, not a failure: returning nil keeps the rest of the batch committed.
			conflict = true
			return nil
		}
		if len(records) > 0 {
			if sb == nil {
				if sb, err = tx.Bucket(bucketStreams).CreateBucket(key); err != nil {
					return err
				}
			}
			sb.FillPercent = 1 // append-only keys: pack pages full
			for i, rec := range records {
				if err := sb.Put(encodeUint(last+1+uint64(i)), rec); err != nil {
					return err
				}
			}
		}
		if o.Reminder != nil {
			if err := putReminder(tx, key, *o.Reminder); err != nil {
				return err
			}
		}
		if o.Expiry != nil {
			if err := tx.Bucket(bucketExpiries).Put(concat(encodeTime(*o.Expiry), key), []byte{}); err != nil {
				return err
			}
		}
		for _, f := range feeds {
			if _, err := appendFeed(tx, f.recipient, f.records); err != nil {
				return err
			}
		}
		newSeq = last + uint64(len(records))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", stream, err)
	}
	if conflict {
		return 0, fmt.Errorf("append to %s at %d: %w", stream, expectedSeq, ErrConflict)
	}
	return newSeq, nil
}

// lastSeq is the stream's last sequence number: its last event, or its snapshot if that is newer (it never is
// while events are kept, but a future compaction may drop events covered by a snapshot). It also returns the
// stream's events bucket, nil when the stream has no events. It reads only the snapshot's sequence number: a
// snapshot can be large, and every append of a stream that has one reads it.
func lastSeq(tx *bolt.Tx, key []byte) (uint64, *bolt.Bucket, error) {
	var last uint64
	sb := tx.Bucket(bucketStreams).Bucket(key)
	if sb != nil {
		if k, _ := sb.Cursor().Last(); k != nil {
			last = decodeUint(k)
		}
	}
	if v := tx.Bucket(bucketSnapshots).Get(key); v != nil {
		seq, err := snapshotSeq(v)
		if err != nil {
			return 0, nil, err
		}
		last = max(last, seq)
	}
	return last, sb, nil
}

// SaveSnapshot implements Journal.
func (b *Bolt) SaveSnapshot(ctx context.Context, stream string, snap Snapshot) error {
	if err := checkName("stream", stream); err != nil {
		return err
	}
	if snap.Seq == 0 || snap.Type == "" {
		return fmt.Errorf("%w: snapshot needs a sequence number and a type", ErrInvalid)
	}
	key := []byte(stream)
	rec := encodeSnapshot(snap)
	var (
		beyond bool
		last   uint64
	)
	err := b.write(ctx, func(tx *bolt.Tx) error {
		beyond = false
		var err error
		if last, _, err = lastSeq(tx, key); err != nil {
			return err
		}
		if snap.Seq > last {
			beyond = true
			return nil
		}
		snapshots := tx.Bucket(bucketSnapshots)
		if v := snapshots.Get(key); v != nil {
			oldSeq, err := snapshotSeq(v)
			if err != nil {
				return err
			}
			if oldSeq >= snap.Seq {
				return nil // never move a stream's snapshot back
			}
		}
		return snapshots.Put(key, rec)
	})
	if err != nil {
		return fmt.Errorf("save snapshot of %s: %w", stream, err)
	}
	if beyond {
		return fmt.Errorf("%w: snapshot at %d is beyond the end of %s (%d)", ErrInvalid, snap.Seq, stream, last)
	}
	return nil
}

// Streams implements Journal.
func (b *Bolt) Streams(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	var names []string
	err := b.read(ctx, func(tx *bolt.Tx) error {
		names = nil
		c := tx.Bucket(bucketStreams).Cursor()
		start := prefix
		if after > start {
			start = after
		}
		for k, _ := c.Seek([]byte(start)); k != nil; k, _ = c.Next() {
			if !bytes.HasPrefix(k, []byte(prefix)) {
				break
			}
			if string(k) == after {
				continue
			}
			if limit > 0 && len(names) >= limit {
				break
			}
			names = append(names, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return names, nil
}

// SetReminder implements Journal.
func (b *Bolt) SetReminder(ctx context.Context, stream string, due time.Time) error {
	if err := checkName("stream", stream); err != nil {
		return err
	}
	if due.IsZero() {
		return fmt.Errorf("%w: zero reminder time (use DeleteReminder)", ErrInvalid)
	}
	key := []byte(stream)
	if err := b.write(ctx, func(tx *bolt.Tx) error { return putReminder(tx, key, due) }); err != nil {
		return fmt.Errorf("set reminder of %s: %w", stream, err)
	}
	return nil
}

// DeleteReminder implements Journal.
func (b *Bolt) DeleteReminder(ctx context.Context, stream string) error {
	if err := checkName("stream", stream); err != nil {
		return err
	}
	key := []byte(stream)
	if err := b.write(ctx, func(tx *bolt.Tx) error { return putReminder(tx, key, time.Time{}) }); err != nil {
		return fmt.Errorf("delete reminder of %s: %w", stream, err)
	}
	return nil
}

// putReminder replaces stream's reminder with due; a zero due deletes it.
func putReminder(tx *bolt.Tx, stream []byte, due time.Time) error {
	byStream, byDue := tx.Bucket(bucketReminders), tx.Bucket(bucketRemindersDue)
	old := byStream.Get(stream)
	var at []byte
	if !due.IsZero() {
		at = encodeTime(due)
	}
	if bytes.Equal(old, at) {
		return nil // unchanged (or absent and deleted): writing would dirty two pages for nothing
	}
	if old != nil {
		if err := byDue.Delete(concat(old, stream)); err != nil {
			return err
		}
	}
	if due.IsZero() {
		return byStream.Delete(stream)
	}
	if err := byStream.Put(stream, at); err != nil {
		return err
	}
	return byDue.Put(concat(at, stream), []byte{})
}

// DueReminders implements Journal.
func (b *Bolt) DueReminders(ctx context.Context, now time.Time, after Reminder, limit int) ([]Reminder, error) {
	var due []Reminder
	err := b.read(ctx, func(tx *bolt.Tx) error {
		due = nil
		var from []byte
		if !after.IsZero() {
			from = concat(encodeTime(after.Due), []byte(after.Stream))
		}
		return scanTimeIndex(tx.Bucket(bucketRemindersDue), from, now, limit, func(stream string, at time.Time) {
			due = append(due, Reminder{Stream: stream, Due: at})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read due reminders: %w", err)
	}
	return due, nil
}

// scanTimeIndex visits, in key order, up to limit (<= 0: no limit) entries of an index keyed time (8 bytes) ‖
// stream with time <= now, starting after the key after (nil: from the first).
func scanTimeIndex(index *bolt.Bucket, after []byte, now time.Time, limit int,
	visit func(stream string, at time.Time)) error {
	c := index.Cursor()
	k, _ := c.First()
	if after != nil {
		k, _ = c.Seek(after)
	}
	for n := 0; k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			return fmt.Errorf("corrupt time index key %x", k)
		}
		if after != nil && bytes.Equal(k, after) {
			continue // the cursor's own key, excluded
		}
		at := decodeTime(k[:8])
		if at.After(now) || limit > 0 && n >= limit {
			return nil
		}
		visit(string(k[8:]), at)
		n++
	}
	return nil
}

// AppendFeed implements Journal.
func (b *Bolt) AppendFeed(ctx context.Context, recipient string, entries []FeedEntry) (uint64, error) {
	if err := checkName("recipient", recipient); err != nil {
		return 0, err
	}
	if err := checkFeedEntries(entries); err != nil {
		return 0, err
	}
	f := encodeFeeds([]FeedAppend{{Recipient: recipient, Entries: entries}})[0]
	var last uint64
	err := b.write(ctx, func(tx *bolt.Tx) error {
		var err error
		last, err = appendFeed(tx, f.recipient, f.records)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("append to feed %s: %w", recipient, err)
	}
	return last, nil
}

type encodedFeed struct {
	recipient []byte
	records   [][]byte
}

func encodeFeeds(feeds []FeedAppend) []encodedFeed {
	out := make([]encodedFeed, len(feeds))
	for i, f := range feeds {
		out[i].recipient = []byte(f.Recipient)
		out[i].records = make([][]byte, len(f.Entries))
		for j, e := range f.Entries {
			out[i].records[j] = encodeRecord(e.Type, e.Data)
		}
	}
	return out
}

// appendFeed appends records to recipient's feed and returns the last cursor (the current last if none).
func appendFeed(tx *bolt.Tx, recipient []byte, records [][]byte) (uint64, error) {
	fb := tx.Bucket(bucketFeeds).Bucket(recipient)
	var last uint64
	if fb != nil {
		if k, _ := fb.Cursor().Last(); k != nil {
			last = decodeUint(k)
		}
	}
	if len(records) == 0 {
		return last, nil
	}
	if fb == nil {
		var err error
		if fb, err = tx.Bucket(bucketFeeds).CreateBucket(recipient); err != nil {
			return 0, err
		}
	}
	fb.FillPercent = 1
	for _, rec := range records {
		last++
		if err := fb.Put(encodeUint(last), rec); err != nil {
			return 0, err
		}
	}
	return last, nil
}

// ReadFeed implements Journal.
func (b *Bolt) ReadFeed(ctx context.Context, recipient string, after uint64, limit int) ([]FeedEntry, error) {
	if err := checkName("recipient", recipient); err != nil {
		return nil, err
	}
	var entries []FeedEntry
	err := b.read(ctx, func(tx *bolt.Tx) error {
		entries = nil
		fb := tx.Bucket(bucketFeeds).Bucket([]byte(recipient))
		if fb == nil {
			return nil
		}
		c := fb.Cursor()
		for k, v := c.Seek(encodeUint(after + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(entries) >= limit {
				break
			}
			typ, data, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("decode feed entry %d: %w", decodeUint(k), err)
			}
			entries = append(entries, FeedEntry{Cursor: decodeUint(k), Type: typ, Data: data})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read feed %s: %w", recipient, err)
	}
	return entries, nil
}

// read runs fn in a read-only transaction unless the journal is closed.
func (b *Bolt) read(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return b.db.View(fn)
}
