package journaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal"
)

// Opener opens the store under test. Every call opens the same storage; the suite closes one journal before it
// opens the store again.
type Opener func() (journal.Journal, error)

// NewStore prepares a fresh, empty store (cleaned up with tb) and returns its Opener.
type NewStore func(tb testing.TB) Opener

// Run runs the whole suite, each case on a fresh store.
func Run(t *testing.T, newStore NewStore) {
	cases := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"EmptyStore", testEmptyStore},
		{"AppendAssignsSequence", testAppendAssignsSequence},
		{"FenceRefusesStaleWriter", testFenceRefusesStaleWriter},
		{"ConcurrentWritersOneWins", testConcurrentWritersOneWins},
		{"ReloadAfterReopen", testReloadAfterReopen},
		{"Snapshots", testSnapshots},
		{"EventsPaging", testEventsPaging},
		{"Streams", testStreams},
		{"Reminders", testReminders},
		{"RemindersWithAppend", testRemindersWithAppend},
		{"RemindersPaging", testRemindersPaging},
		{"FeedCursors", testFeedCursors},
		{"FeedWithAppend", testFeedWithAppend},
		{"ConcurrentFeedAppends", testConcurrentFeedAppends},
		{"LargeStream", testLargeStream},
		{"ConcurrentStreams", testConcurrentStreams},
		{"InvalidArguments", testInvalidArguments},
		{"Closed", testClosed},
		{"CancelledContext", testCancelledContext},
		{"DeleteStream", testDeleteStream},
		{"ConcurrentDeletes", testConcurrentDeletes},
		{"Expiries", testExpiries},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

// openJournal opens the store and closes it at the end of the test (closing twice is allowed).
func openJournal(t *testing.T, open Opener) journal.Journal {
	t.Helper()
	j, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func reopen(t *testing.T, j journal.Journal, open Opener) journal.Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return openJournal(t, open)
}

func ev(typ, data string) journal.Event {
	return journal.Event{Type: typ, Data: []byte(data)}
}

func mustAppend(t *testing.T, j journal.Journal, stream string, expected uint64, events []journal.Event, opts ...journal.AppendOption) uint64 {
	t.Helper()
	seq, err := j.Append(context.Background(), stream, expected, events, opts...)
	if err != nil {
		t.Fatalf("append %d events to %s at %d: %v", len(events), stream, expected, err)
	}
	if want := expected + uint64(len(events)); seq != want {
		t.Fatalf("append to %s at %d returned seq %d, want %d", stream, expected, seq, want)
	}
	return seq
}

func mustLoad(t *testing.T, j journal.Journal, stream string) (journal.Snapshot, []journal.Event) {
	t.Helper()
	snap, events, err := j.Load(context.Background(), stream)
	if err != nil {
		t.Fatalf("load %s: %v", stream, err)
	}
	return snap, events
}

// checkEvents fails unless events are exactly Seq from, from+1, ... with the given types and data "<type>-<seq>".
func checkSeqs(t *testing.T, events []journal.Event, from uint64, n int) {
	t.Helper()
	if len(events) != n {
		t.Fatalf("got %d events, want %d", len(events), n)
	}
	for i, e := range events {
		if e.Seq != from+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, from+uint64(i))
		}
	}
}

func numbered(typ string, from, n int) []journal.Event {
	events := make([]journal.Event, n)
	for i := range events {
		events[i] = ev(typ, fmt.Sprintf("%s-%d", typ, from+i))
	}
	return events
}

func testEmptyStore(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	snap, events := mustLoad(t, j, "order/none")
	if snap.Seq != 0 || snap.Data != nil || len(events) != 0 {
		t.Fatalf("empty stream loaded as %+v, %d events", snap, len(events))
	}
	if got := journal.LastSeq(snap, events); got != 0 {
		t.Fatalf("LastSeq of empty stream = %d", got)
	}
	if evs, err := j.Events(ctx, "order/none", 0, 0); err != nil || len(evs) != 0 {
		t.Fatalf("Events of empty stream = %d, %v", len(evs), err)
	}
	if entries, err := j.ReadFeed(ctx, "customer/none", 0, 0); err != nil || len(entries) != 0 {
		t.Fatalf("ReadFeed of empty feed = %d, %v", len(entries), err)
	}
	if due, err := j.DueReminders(ctx, time.Now().Add(time.Hour), journal.Reminder{}, 0); err != nil || len(due) != 0 {
		t.Fatalf("DueReminders of empty store = %v, %v", due, err)
	}
	if names, err := j.Streams(ctx, "", "", 0); err != nil || len(names) != 0 {
		t.Fatalf("Streams of empty store = %v, %v", names, err)
	}
}

func testAppendAssignsSequence(t *testing.T, open Opener) {
	j := openJournal(t, open)
	binary := []byte{0, 1, 2, 0xff, 0}
	mustAppend(t, j, "order/1", 0, []journal.Event{ev("A", "first"), {Type: "B"}})
	mustAppend(t, j, "order/1", 2, []journal.Event{{Type: "C", Data: binary, Seq: 99}}) // Seq is ignored
	snap, events := mustLoad(t, j, "order/1")
	if snap.Seq != 0 {
		t.Fatalf("unexpected snapshot %+v", snap)
	}
	checkSeqs(t, events, 1, 3)
	want := []journal.Event{{Seq: 1, Type: "A", Data: []byte("first")}, {Seq: 2, Type: "B"}, {Seq: 3, Type: "C", Data: binary}}
	for i := range want {
		if events[i].Type != want[i].Type || !bytes.Equal(events[i].Data, want[i].Data) {
			t.Fatalf("event %d = %+v, want %+v", i, events[i], want[i])
		}
	}
	if got := journal.LastSeq(snap, events); got != 3 {
		t.Fatalf("LastSeq = %d, want 3", got)
	}
	// An empty append only checks the fence.
	if seq, err := j.Append(context.Background(), "order/1", 3, nil); err != nil || seq != 3 {
		t.Fatalf("empty append = %d, %v; want 3, nil", seq, err)
	}
	if _, err := j.Append(context.Background(), "order/1", 2, nil); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("empty append at a stale seq: %v, want ErrConflict", err)
	}
	// Streams are independent.
	mustAppend(t, j, "order/2", 0, []journal.Event{ev("A", "other")})
}

func testFenceRefusesStaleWriter(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	mustAppend(t, j, "order/1", 0, []journal.Event{ev("A", "1")})
	due := time.UnixMilli(1_700_000_000_000)
	for _, expected := range []uint64{0, 2, 5} {
		_, err := j.Append(ctx, "order/1", expected, []journal.Event{ev("B", "stale")},
			journal.WithReminder(due), journal.WithFeed("customer/1", journal.FeedEntry{Type: "X"}))
		if !errors.Is(err, journal.ErrConflict) {
			t.Fatalf("append at %d over seq 1: %v, want ErrConflict", expected, err)
		}
	}
	_, events := mustLoad(t, j, "order/1")
	checkSeqs(t, events, 1, 1)
	if events[0].Type != "A" {
		t.Fatalf("stale writer overwrote the stream: %+v", events[0])
	}
	if rs, _ := j.DueReminders(ctx, due.Add(time.Hour), journal.Reminder{}, 0); len(rs) != 0 {
		t.Fatalf("a refused append set a reminder: %v", rs)
	}
	if fs, _ := j.ReadFeed(ctx, "customer/1", 0, 0); len(fs) != 0 {
		t.Fatalf("a refused append wrote a feed entry: %v", fs)
	}
}

// testConcurrentWritersOneWins races writers with the same expected sequence, round after round, while other
// writers append to their own streams: exactly one racer wins each round and the bystanders never fail (a conflict
// in a shared commit must not fail the others).
func testConcurrentWritersOneWins(t *testing.T, open Opener) {
	j := openJournal(t, open)
	const racers, rounds, bystanders = 16, 20, 8
	ctx := context.Background()
	stop := make(chan struct{})
	var bystanderWG sync.WaitGroup
	for b := range bystanders {
		bystanderWG.Add(1)
		go func() {
			defer bystanderWG.Done()
			stream := fmt.Sprintf("bystander/%d", b)
			var seq uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				next, err := j.Append(ctx, stream, seq, []journal.Event{ev("B", "x")})
				if err != nil {
					t.Errorf("bystander %s at %d: %v", stream, seq, err)
					return
				}
				seq = next
			}
		}()
	}
	for round := range rounds {
		var (
			wg    sync.WaitGroup
			wins  atomic.Int32
			start = make(chan struct{})
		)
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := j.Append(ctx, "order/race", uint64(round), []journal.Event{ev("Won", fmt.Sprint(r))})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, journal.ErrConflict):
					t.Errorf("racer %d in round %d: %v", r, round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, got)
		}
	}
	close(stop)
	bystanderWG.Wait()
	_, events := mustLoad(t, j, "order/race")
	checkSeqs(t, events, 1, rounds)
}

func testReloadAfterReopen(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	due := time.UnixMilli(1_700_000_000_000)
	mustAppend(t, j, "order/1", 0, numbered("E", 1, 4))
	if err := j.SaveSnapshot(ctx, "order/1", journal.Snapshot{Seq: 2, Type: "S", Data: []byte("state@2")}); err != nil {
		t.Fatalf("save snapshot: %v", err)
	}
	if err := j.SetReminder(ctx, "order/1", due); err != nil {
		t.Fatalf("set reminder: %v", err)
	}
	if _, err := j.AppendFeed(ctx, "customer/1", []journal.FeedEntry{{Type: "F", Data: []byte("f1")}}); err != nil {
		t.Fatalf("append feed: %v", err)
	}

	j = reopen(t, j, open)
	snap, events := mustLoad(t, j, "order/1")
	if snap.Seq != 2 || snap.Type != "S" || string(snap.Data) != "state@2" {
		t.Fatalf("snapshot after reopen = %+v", snap)
	}
	checkSeqs(t, events, 3, 2)
	if string(events[1].Data) != "E-4" {
		t.Fatalf("event 4 after reopen = %+v", events[1])
	}
	rs, err := j.DueReminders(ctx, due, journal.Reminder{}, 0)
	if err != nil || len(rs) != 1 || rs[0].Stream != "order/1" || !rs[0].Due.Equal(due) {
		t.Fatalf("reminders after reopen = %v, %v", rs, err)
	}
	if fs, err := j.ReadFeed(ctx, "customer/1", 0, 0); err != nil || len(fs) != 1 || fs[0].Cursor != 1 {
		t.Fatalf("feed after reopen = %v, %v", fs, err)
	}
	// Writing continues where it stopped, fenced as before.
	mustAppend(t, j, "order/1", 4, numbered("E", 5, 1))
	if _, err := j.Append(ctx, "order/1", 4, numbered("E", 5, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("stale append after reopen: %v, want ErrConflict", err)
	}
}

func testSnapshots(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	stream := "restaurant/r1"
	mustAppend(t, j, stream, 0, numbered("E", 1, 5))
	save := func(seq uint64, data string) error {
		return j.SaveSnapshot(ctx, stream, journal.Snapshot{Seq: seq, Type: "S", Data: []byte(data)})
	}
	if err := save(3, "at3"); err != nil {
		t.Fatalf("save snapshot at 3: %v", err)
	}
	snap, events := mustLoad(t, j, stream)
	if snap.Seq != 3 || string(snap.Data) != "at3" {
		t.Fatalf("snapshot = %+v, want at3", snap)
	}
	checkSeqs(t, events, 4, 2)

	// An older snapshot (a stale activation) never replaces a newer one.
	if err := save(2, "at2"); err != nil {
		t.Fatalf("save older snapshot: %v", err)
	}
	if snap, _ = mustLoad(t, j, stream); snap.Seq != 3 {
		t.Fatalf("older snapshot replaced the newer: %+v", snap)
	}
	// A snapshot beyond the end of the stream is refused.
	if err := save(6, "at6"); !errors.Is(err, journal.ErrInvalid) {
		t.Fatalf("snapshot beyond the end: %v, want ErrInvalid", err)
	}
	// A snapshot at the end: nothing follows it, and appends continue after it.
	if err := save(5, "at5"); err != nil {
		t.Fatalf("save snapshot at 5: %v", err)
	}
	snap, events = mustLoad(t, j, stream)
	if snap.Seq != 5 || len(events) != 0 || journal.LastSeq(snap, events) != 5 {
		t.Fatalf("load after snapshot at the end = %+v, %d events", snap, len(events))
	}
	mustAppend(t, j, stream, 5, numbered("E", 6, 1))
	if _, err := j.Append(ctx, stream, 3, numbered("E", 4, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("append behind a snapshot: %v, want ErrConflict", err)
	}
	// Events before the snapshot are kept.
	all, err := j.Events(ctx, stream, 0, 0)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	checkSeqs(t, all, 1, 6)
}

func testEventsPaging(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	mustAppend(t, j, "order/1", 0, numbered("E", 1, 25))
	page, err := j.Events(ctx, "order/1", 10, 5)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	checkSeqs(t, page, 11, 5)
	if string(page[0].Data) != "E-11" {
		t.Fatalf("first of page = %+v", page[0])
	}
	rest, err := j.Events(ctx, "order/1", 20, 0)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	checkSeqs(t, rest, 21, 5)
	if none, err := j.Events(ctx, "order/1", 25, 10); err != nil || len(none) != 0 {
		t.Fatalf("events after the end = %d, %v", len(none), err)
	}
}

func testStreams(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	for _, s := range []string{"order/2", "restaurant/1", "order/1", "order/10", "orders/x"} {
		mustAppend(t, j, s, 0, []journal.Event{ev("E", s)})
	}
	// Feeds and reminders alone do not make a stream.
	if _, err := j.AppendFeed(ctx, "order/feed-only", []journal.FeedEntry{{Type: "F"}}); err != nil {
		t.Fatal(err)
	}
	if err := j.SetReminder(ctx, "order/reminder-only", time.UnixMilli(1)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"order/", "", 0, []string{"order/1", "order/10", "order/2"}},
		{"order/", "order/1", 1, []string{"order/10"}},
		{"order/", "order/2", 0, nil},
		{"", "", 2, []string{"order/1", "order/10"}},
		{"restaurant/", "", 0, []string{"restaurant/1"}},
		{"dasher/", "", 0, nil},
	}
	for _, c := range cases {
		got, err := j.Streams(ctx, c.prefix, c.after, c.limit)
		if err != nil {
			t.Fatalf("streams(%q, %q, %d): %v", c.prefix, c.after, c.limit, err)
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("streams(%q, %q, %d) = %q, want %q", c.prefix, c.after, c.limit, got, c.want)
		}
	}
}

func reminderStreams(rs []journal.Reminder) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Stream
	}
	return out
}

func testReminders(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	set := func(stream string, due time.Time) {
		t.Helper()
		if err := j.SetReminder(ctx, stream, due); err != nil {
			t.Fatalf("set reminder %s: %v", stream, err)
		}
	}
	due := func(now time.Time, limit int) []journal.Reminder {
		t.Helper()
		rs, err := j.DueReminders(ctx, now, journal.Reminder{}, limit)
		if err != nil {
			t.Fatalf("due reminders: %v", err)
		}
		return rs
	}
	set("order/a", at(2))
	set("order/c", at(1))
	set("order/b", at(1))
	set("order/d", at(5))
	set("order/e", at(-3600)) // long overdue (e.g. set before a restart)

	rs := due(at(3), 0)
	if got, want := reminderStreams(rs), []string{"order/e", "order/b", "order/c", "order/a"}; !slices.Equal(got, want) {
		t.Fatalf("due at +3s = %q, want %q (by due time, then stream)", got, want)
	}
	if !rs[1].Due.Equal(at(1)) || !rs[3].Due.Equal(at(2)) {
		t.Fatalf("due times = %v", rs)
	}
	if got := reminderStreams(due(at(3), 2)); !slices.Equal(got, []string{"order/e", "order/b"}) {
		t.Fatalf("due with limit 2 = %q", got)
	}
	if got := due(at(1).Add(-time.Millisecond), 0); len(got) != 1 {
		t.Fatalf("due just before +1s = %v, want only order/e", got)
	}
	// Due exactly now counts.
	if got := reminderStreams(due(at(1), 0)); !slices.Equal(got, []string{"order/e", "order/b", "order/c"}) {
		t.Fatalf("due at exactly +1s = %q", got)
	}
	// Moving a reminder replaces it (one per stream); deleting removes it; deleting a missing one is fine.
	set("order/a", at(10))
	set("order/e", at(4))
	if err := j.DeleteReminder(ctx, "order/b"); err != nil {
		t.Fatalf("delete reminder: %v", err)
	}
	if err := j.DeleteReminder(ctx, "order/none"); err != nil {
		t.Fatalf("delete missing reminder: %v", err)
	}
	if got := reminderStreams(due(at(5), 0)); !slices.Equal(got, []string{"order/c", "order/e", "order/d"}) {
		t.Fatalf("after move and delete = %q", got)
	}
	j = reopen(t, j, open)
	rs, err := j.DueReminders(ctx, at(100), journal.Reminder{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := reminderStreams(rs); !slices.Equal(got, []string{"order/c", "order/e", "order/d", "order/a"}) {
		t.Fatalf("after reopen = %q", got)
	}
	if !rs[3].Due.Equal(at(10)) {
		t.Fatalf("moved reminder due %v, want %v", rs[3].Due, at(10))
	}
}

// testRemindersPaging: the (Due, Stream) cursor of DueReminders pages through every due reminder, across ties of
// due time, with pages of any size, and from a cursor whose reminder is gone.
func testRemindersPaging(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// 3 due times × 7 streams, the streams in an order unlike their names', and 2 reminders not yet due.
	var want []string
	for s := range 3 {
		for _, n := range []int{4, 0, 6, 2, 5, 1, 3} {
			stream := fmt.Sprintf("order/%d-%d", s, n)
			if err := j.SetReminder(ctx, stream, at(s)); err != nil {
				t.Fatalf("set reminder %s: %v", stream, err)
			}
		}
		for n := range 7 {
			want = append(want, fmt.Sprintf("order/%d-%d", s, n))
		}
	}
	for _, stream := range []string{"order/later-1", "order/later-0"} {
		if err := j.SetReminder(ctx, stream, at(60)); err != nil {
			t.Fatalf("set reminder %s: %v", stream, err)
		}
	}
	now := at(2)
	for _, limit := range []int{1, 2, 5, 7, 20, 21, 22} {
		var (
			got   []string
			after journal.Reminder
		)
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: paging does not end (%q so far)", limit, got)
			}
			rs, err := j.DueReminders(ctx, now, after, limit)
			if err != nil {
				t.Fatalf("limit %d, after %v: %v", limit, after, err)
			}
			if len(rs) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(rs))
			}
			got = append(got, reminderStreams(rs)...)
			if len(rs) < limit {
				break
			}
			after = rs[len(rs)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: paged %q, want %q", limit, got, want)
		}
	}
	// The cursor is a position, not a stored reminder: after its reminder is deleted or moved, the next page
	// starts where it would have been.
	cursor := journal.Reminder{Stream: "order/1-3", Due: at(1)}
	if err := j.DeleteReminder(ctx, cursor.Stream); err != nil {
		t.Fatal(err)
	}
	rs, err := j.DueReminders(ctx, now, cursor, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := reminderStreams(rs); !slices.Equal(got, []string{"order/1-4", "order/1-5", "order/1-6"}) {
		t.Fatalf("page after a deleted cursor = %q", got)
	}
	// A cursor beyond now, or past the last reminder, gives an empty page.
	for _, after := range []journal.Reminder{{Stream: "order/2-6", Due: at(2)}, {Stream: "order/x", Due: at(30)}} {
		if rs, err := j.DueReminders(ctx, now, after, 0); err != nil || len(rs) != 0 {
			t.Fatalf("page after %v = %v, %v; want none", after, rs, err)
		}
	}
	// The reminders not yet due come when now reaches them, after the earlier ones.
	rs, err = j.DueReminders(ctx, at(60), journal.Reminder{Stream: "order/2-6", Due: at(2)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := reminderStreams(rs); !slices.Equal(got, []string{"order/later-0", "order/later-1"}) {
		t.Fatalf("page at +60s after the last due one = %q", got)
	}
}

func testRemindersWithAppend(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	mustAppend(t, j, "order/1", 0, numbered("E", 1, 1), journal.WithReminder(t0))
	mustAppend(t, j, "order/2", 0, numbered("E", 1, 1), journal.WithReminder(t0.Add(time.Second)))
	rs, err := j.DueReminders(ctx, t0.Add(time.Hour), journal.Reminder{}, 0)
	if err != nil || !slices.Equal(reminderStreams(rs), []string{"order/1", "order/2"}) {
		t.Fatalf("reminders set by append = %v, %v", rs, err)
	}
	mustAppend(t, j, "order/1", 1, numbered("E", 2, 1), journal.WithoutReminder())
	mustAppend(t, j, "order/2", 1, numbered("E", 2, 1), journal.WithReminder(t0.Add(-time.Second)))
	rs, err = j.DueReminders(ctx, t0.Add(time.Hour), journal.Reminder{}, 0)
	if err != nil || len(rs) != 1 || rs[0].Stream != "order/2" || !rs[0].Due.Equal(t0.Add(-time.Second)) {
		t.Fatalf("reminders after move and delete by append = %v, %v", rs, err)
	}
}

func feedCursors(entries []journal.FeedEntry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Cursor
	}
	return out
}

func testFeedCursors(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	appendFeed := func(recipient string, types ...string) uint64 {
		t.Helper()
		entries := make([]journal.FeedEntry, len(types))
		for i, typ := range types {
			entries[i] = journal.FeedEntry{Type: typ, Data: []byte("data-" + typ), Cursor: 77}
		}
		last, err := j.AppendFeed(ctx, recipient, entries)
		if err != nil {
			t.Fatalf("append feed %s: %v", recipient, err)
		}
		return last
	}
	if last := appendFeed("customer/1", "A", "B", "C"); last != 3 {
		t.Fatalf("last cursor = %d, want 3", last)
	}
	if last := appendFeed("dasher/1", "X"); last != 1 {
		t.Fatalf("another recipient's feed starts at 1, got %d", last)
	}
	if last := appendFeed("customer/1", "D", "E"); last != 5 {
		t.Fatalf("last cursor = %d, want 5", last)
	}
	// Appending nothing reports the last cursor and changes nothing.
	if last := appendFeed("customer/1"); last != 5 {
		t.Fatalf("empty append reported cursor %d, want 5", last)
	}
	if last := appendFeed("customer/none"); last != 0 {
		t.Fatalf("empty append to a new feed reported cursor %d, want 0", last)
	}
	read := func(after uint64, limit int) []journal.FeedEntry {
		t.Helper()
		entries, err := j.ReadFeed(ctx, "customer/1", after, limit)
		if err != nil {
			t.Fatalf("read feed: %v", err)
		}
		return entries
	}
	all := read(0, 0)
	if got := feedCursors(all); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("cursors = %v", got)
	}
	if all[3].Type != "D" || string(all[3].Data) != "data-D" {
		t.Fatalf("entry 4 = %+v", all[3])
	}
	if got := feedCursors(read(3, 0)); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("after 3 = %v", got)
	}
	if got := feedCursors(read(1, 2)); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("after 1 limit 2 = %v", got)
	}
	if got := read(5, 0); len(got) != 0 {
		t.Fatalf("after the end = %v", got)
	}
	// A client resumes with its cursor after a restart; new entries continue the sequence.
	j = reopen(t, j, open)
	if got := feedCursors(read(4, 0)); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("after reopen, after 4 = %v", got)
	}
	if last := appendFeed("customer/1", "F"); last != 6 {
		t.Fatalf("cursor after reopen = %d, want 6", last)
	}
}

func testFeedWithAppend(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	mustAppend(t, j, "order/1", 0, numbered("E", 1, 1),
		journal.WithFeed("customer/1", journal.FeedEntry{Type: "ORDER_PLACED"}),
		journal.WithFeed("restaurant/1", journal.FeedEntry{Type: "ORDER_PLACED"}, journal.FeedEntry{Type: "NOTE"}),
		journal.WithFeed("customer/1", journal.FeedEntry{Type: "SECOND"}))
	c, err := j.ReadFeed(ctx, "customer/1", 0, 0)
	if err != nil || len(c) != 2 || c[0].Type != "ORDER_PLACED" || c[1].Type != "SECOND" || c[1].Cursor != 2 {
		t.Fatalf("customer feed = %+v, %v", c, err)
	}
	r, err := j.ReadFeed(ctx, "restaurant/1", 0, 0)
	if err != nil || !slices.Equal(feedCursors(r), []uint64{1, 2}) {
		t.Fatalf("restaurant feed = %+v, %v", r, err)
	}
}

func testConcurrentFeedAppends(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	const writers, each = 16, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				entry := journal.FeedEntry{Type: "N", Data: fmt.Appendf(nil, "%d-%d", w, i)}
				if _, err := j.AppendFeed(ctx, "dasher/1", []journal.FeedEntry{entry}); err != nil {
					t.Errorf("append feed: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	entries, err := j.ReadFeed(ctx, "dasher/1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != writers*each {
		t.Fatalf("got %d entries, want %d", len(entries), writers*each)
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if e.Cursor != uint64(i+1) {
			t.Fatalf("entry %d has cursor %d: cursors must be dense", i, e.Cursor)
		}
		if seen[string(e.Data)] {
			t.Fatalf("entry %q stored twice", e.Data)
		}
		seen[string(e.Data)] = true
	}
}

func testLargeStream(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	const total, batch = 10_000, 100
	var seq uint64
	for i := 0; i < total; i += batch {
		seq = mustAppend(t, j, "area/big", seq, numbered("E", i+1, batch))
	}
	check := func(j journal.Journal) {
		t.Helper()
		snap, events := mustLoad(t, j, "area/big")
		if snap.Seq != 0 {
			t.Fatalf("unexpected snapshot %+v", snap)
		}
		checkSeqs(t, events, 1, total)
		if string(events[total-1].Data) != fmt.Sprintf("E-%d", total) {
			t.Fatalf("last event = %+v", events[total-1])
		}
	}
	check(j)
	j = reopen(t, j, open)
	check(j)
	var after uint64
	for after < total {
		page, err := j.Events(ctx, "area/big", after, 999)
		if err != nil {
			t.Fatal(err)
		}
		checkSeqs(t, page, after+1, min(999, total-int(after)))
		after += uint64(len(page))
	}
	mustAppend(t, j, "area/big", total, numbered("E", total+1, 1))
}

func testConcurrentStreams(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	const streams, each = 32, 50
	var wg sync.WaitGroup
	for s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("dasher/%02d", s)
			var seq uint64
			for i := range each {
				next, err := j.Append(ctx, stream, seq, numbered("E", i+1, 1))
				if err != nil {
					t.Errorf("append %s at %d: %v", stream, seq, err)
					return
				}
				seq = next
			}
		}()
	}
	wg.Wait()
	names, err := j.Streams(ctx, "dasher/", "", 0)
	if err != nil || len(names) != streams {
		t.Fatalf("streams = %d, %v; want %d", len(names), err, streams)
	}
	for _, name := range names {
		_, events := mustLoad(t, j, name)
		checkSeqs(t, events, 1, each)
		for i, e := range events {
			if string(e.Data) != fmt.Sprintf("E-%d", i+1) {
				t.Fatalf("%s event %d = %q", name, i+1, e.Data)
			}
		}
	}
}

func testInvalidArguments(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	long := string(bytes.Repeat([]byte("x"), journal.MaxNameLen+1))
	calls := map[string]error{}
	_, calls["append to empty stream name"] = j.Append(ctx, "", 0, numbered("E", 1, 1))
	_, calls["append to long stream name"] = j.Append(ctx, long, 0, numbered("E", 1, 1))
	_, calls["append event without type"] = j.Append(ctx, "order/1", 0, []journal.Event{{Data: []byte("x")}})
	_, calls["append with feed to empty recipient"] = j.Append(ctx, "order/1", 0, numbered("E", 1, 1), journal.WithFeed("", journal.FeedEntry{Type: "F"}))
	_, _, calls["load empty stream name"] = j.Load(ctx, "")
	calls["snapshot without seq"] = j.SaveSnapshot(ctx, "order/1", journal.Snapshot{Type: "S"})
	calls["snapshot of empty stream"] = j.SaveSnapshot(ctx, "order/1", journal.Snapshot{Seq: 1, Type: "S"})
	calls["zero reminder"] = j.SetReminder(ctx, "order/1", time.Time{})
	_, calls["feed entry without type"] = j.AppendFeed(ctx, "customer/1", []journal.FeedEntry{{}})
	_, calls["feed to empty recipient"] = j.AppendFeed(ctx, "", []journal.FeedEntry{{Type: "F"}})
	for name, err := range calls {
		if !errors.Is(err, journal.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Nothing was written by the refused calls.
	if _, events := mustLoad(t, j, "order/1"); len(events) != 0 {
		t.Fatalf("refused append wrote %d events", len(events))
	}
}

func testClosed(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	mustAppend(t, j, "order/1", 0, numbered("E", 1, 1))
	if err := j.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	calls := map[string]error{}
	_, calls["append"] = j.Append(ctx, "order/1", 1, numbered("E", 2, 1))
	_, _, calls["load"] = j.Load(ctx, "order/1")
	_, calls["events"] = j.Events(ctx, "order/1", 0, 0)
	calls["snapshot"] = j.SaveSnapshot(ctx, "order/1", journal.Snapshot{Seq: 1, Type: "S"})
	_, calls["streams"] = j.Streams(ctx, "", "", 0)
	calls["set reminder"] = j.SetReminder(ctx, "order/1", time.UnixMilli(1))
	calls["delete reminder"] = j.DeleteReminder(ctx, "order/1")
	_, calls["due reminders"] = j.DueReminders(ctx, time.Now(), journal.Reminder{}, 0)
	_, calls["append feed"] = j.AppendFeed(ctx, "customer/1", []journal.FeedEntry{{Type: "F"}})
	_, calls["read feed"] = j.ReadFeed(ctx, "customer/1", 0, 0)
	for name, err := range calls {
		if !errors.Is(err, journal.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", name, err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func testCancelledContext(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Append(ctx, "order/1", 0, numbered("E", 1, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v, want context.Canceled", err)
	}
	if _, _, err := j.Load(ctx, "order/1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("load with a cancelled context: %v, want context.Canceled", err)
	}
	if _, events := mustLoad(t, j, "order/1"); len(events) != 0 {
		t.Fatalf("append with a cancelled context wrote %d events", len(events))
	}
}
