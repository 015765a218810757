package journaltest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal"
)

func expiryStreams(es []journal.Expiry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Stream
	}
	return out
}

func mustExpired(t *testing.T, j journal.Journal, now time.Time, after journal.Expiry, limit int) []journal.Expiry {
	t.Helper()
	es, err := j.Expired(context.Background(), now, after, limit)
	if err != nil {
		t.Fatalf("expired: %v", err)
	}
	return es
}

// testDeleteStream: DeleteStream removes a stream's events, snapshot and reminder, fenced on the last sequence
// number; the stream then starts again at 0; its feed, its expiry marks and other streams are untouched.
func testDeleteStream(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	mustAppend(t, j, "idem/a", 0, numbered("E", 1, 3), journal.WithReminder(t0), journal.WithExpiry(t0),
		journal.WithFeed("idem/a", journal.FeedEntry{Type: "F", Data: []byte("f1")}))
	if err := j.SaveSnapshot(ctx, "idem/a", journal.Snapshot{Seq: 2, Type: "S", Data: []byte("s")}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	mustAppend(t, j, "idem/ab", 0, numbered("E", 1, 1), journal.WithReminder(t0), journal.WithExpiry(t0))

	// A stale caller (expected sequence not the last) deletes nothing.
	for _, stale := range []uint64{0, 2, 4} {
		if err := j.DeleteStream(ctx, "idem/a", stale); !errors.Is(err, journal.ErrConflict) {
			t.Fatalf("delete at %d of a stream at 3: %v, want ErrConflict", stale, err)
		}
	}
	if _, events := mustLoad(t, j, "idem/a"); len(events) != 1 || events[0].Seq != 3 {
		t.Fatalf("after refused deletes: events %v", events)
	}
	if err := j.DeleteStream(ctx, "idem/a", 3); err != nil {
		t.Fatalf("delete: %v", err)
	}
	check := func(j journal.Journal) {
		t.Helper()
		snap, events := mustLoad(t, j, "idem/a")
		if snap.Seq != 0 || len(events) != 0 {
			t.Fatalf("deleted stream loads as %v, %v; want nothing", snap, events)
		}
		if all, err := j.Events(ctx, "idem/a", 0, 0); err != nil || len(all) != 0 {
			t.Fatalf("events of a deleted stream: %v, %v", all, err)
		}
		names, err := j.Streams(ctx, "idem/", "", 0)
		if err != nil || !slices.Equal(names, []string{"idem/ab"}) {
			t.Fatalf("streams after delete = %q, %v; want only idem/ab", names, err)
		}
		rs, err := j.DueReminders(ctx, t0, journal.Reminder{}, 0)
		if err != nil || !slices.Equal(reminderStreams(rs), []string{"idem/ab"}) {
			t.Fatalf("reminders after delete = %v, %v", rs, err)
		}
		if got := expiryStreams(mustExpired(t, j, t0, journal.Expiry{}, 0)); !slices.Equal(got, []string{"idem/a", "idem/ab"}) {
			t.Fatalf("expiry marks after delete = %q, want both (the owner deletes marks)", got)
		}
		// A feed is the recipient's, not the stream's: it stays, cursors never reused.
		if feed, err := j.ReadFeed(ctx, "idem/a", 0, 0); err != nil || len(feed) != 1 {
			t.Fatalf("feed after delete = %v, %v", feed, err)
		}
	}
	check(j)
	j = reopen(t, j, open)
	check(j)

	// The second of two deleters learns that it is gone; deleting at 0 a stream never written is a no-op.
	if err := j.DeleteStream(ctx, "idem/a", 3); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("second delete: %v, want ErrConflict", err)
	}
	if err := j.DeleteStream(ctx, "idem/a", 0); err != nil {
		t.Fatalf("delete at 0 of a deleted stream: %v", err)
	}
	if err := j.DeleteStream(ctx, "idem/never", 0); err != nil {
		t.Fatalf("delete at 0 of a stream never written: %v", err)
	}
	// A stale writer of the deleted stream is fenced out; the stream starts again at 0 with a new snapshot.
	if _, err := j.Append(ctx, "idem/a", 3, numbered("E", 4, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("append at 3 to a deleted stream: %v, want ErrConflict", err)
	}
	mustAppend(t, j, "idem/a", 0, numbered("N", 1, 1))
	snap, events := mustLoad(t, j, "idem/a")
	if snap.Seq != 0 || len(events) != 1 || events[0].Type != "N" {
		t.Fatalf("recreated stream loads as %v, %v", snap, events)
	}
	if err := j.SaveSnapshot(ctx, "idem/a", journal.Snapshot{Seq: 1, Type: "S2"}); err != nil {
		t.Fatalf("snapshot of a recreated stream (older seq than the deleted one's): %v", err)
	}
	if snap, _ := mustLoad(t, j, "idem/a"); snap.Type != "S2" {
		t.Fatalf("snapshot of the recreated stream = %v", snap)
	}
	// A stream without events (only a reminder) is deleted at 0.
	if err := j.SetReminder(ctx, "idem/orphan", t0); err != nil {
		t.Fatal(err)
	}
	if err := j.DeleteStream(ctx, "idem/orphan", 0); err != nil {
		t.Fatalf("delete a stream that has only a reminder: %v", err)
	}
	rs, err := j.DueReminders(ctx, t0, journal.Reminder{}, 0)
	if err != nil || !slices.Equal(reminderStreams(rs), []string{"idem/ab"}) {
		t.Fatalf("reminders after deleting the orphan = %v, %v", rs, err)
	}
}

// testConcurrentDeletes: of writers racing a delete of one stream at the same expected sequence, whatever the
// order, the journal stays consistent: a delete and an append never both succeed at the same sequence, and two
// deletes never both succeed.
func testConcurrentDeletes(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	for round := range 20 {
		mustAppend(t, j, "idem/race", 0, numbered("E", 1, 2))
		var (
			wg                sync.WaitGroup
			deleted, appended [3]bool
			unexpected        = make(chan error, 6)
		)
		for i := range 3 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				err := j.DeleteStream(ctx, "idem/race", 2)
				deleted[i] = err == nil
				if err != nil && !errors.Is(err, journal.ErrConflict) {
					unexpected <- err
				}
			}()
			go func() {
				defer wg.Done()
				_, err := j.Append(ctx, "idem/race", 2, numbered("A", 3, 1))
				appended[i] = err == nil
				if err != nil && !errors.Is(err, journal.ErrConflict) {
					unexpected <- err
				}
			}()
		}
		wg.Wait()
		close(unexpected)
		for err := range unexpected {
			t.Fatalf("round %d: %v", round, err)
		}
		winners := 0
		for i := range 3 {
			if deleted[i] {
				winners++
			}
			if appended[i] {
				winners++
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d of the racing deletes and appends at 2 succeeded, want exactly 1", round, winners)
		}
		_, events := mustLoad(t, j, "idem/race")
		switch {
		case slices.Contains(deleted[:], true) && len(events) != 0:
			t.Fatalf("round %d: a delete won but the stream has %d events", round, len(events))
		case slices.Contains(appended[:], true) && (len(events) != 3 || events[2].Type != "A"):
			t.Fatalf("round %d: an append won but the stream has %v", round, events)
		}
		if len(events) > 0 {
			if err := j.DeleteStream(ctx, "idem/race", 3); err != nil {
				t.Fatalf("round %d: clean up: %v", round, err)
			}
		}
	}
}

// testExpiries: WithExpiry adds an expiry mark atomically with an Append, only if the fence holds (a stream may
// have several); Expired lists marks by (At, Stream) and pages with its cursor; DeleteExpiry removes one mark.
func testExpiries(t *testing.T, open Opener) {
	j := openJournal(t, open)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	mustAppend(t, j, "idem/c", 0, numbered("E", 1, 1), journal.WithExpiry(at(1)))
	mustAppend(t, j, "idem/b", 0, numbered("E", 1, 1), journal.WithExpiry(at(1)))
	mustAppend(t, j, "idem/a", 0, numbered("E", 1, 1), journal.WithExpiry(at(2)))
	mustAppend(t, j, "idem/d", 0, numbered("E", 1, 1), journal.WithExpiry(at(5)))
	mustAppend(t, j, "idem/e", 0, numbered("E", 1, 1)) // none

	es := mustExpired(t, j, at(3), journal.Expiry{}, 0)
	if got := expiryStreams(es); !slices.Equal(got, []string{"idem/b", "idem/c", "idem/a"}) {
		t.Fatalf("expired at +3s = %q, want by time then stream", got)
	}
	if !es[0].At.Equal(at(1)) || !es[2].At.Equal(at(2)) {
		t.Fatalf("expiry times = %v", es)
	}
	if got := expiryStreams(mustExpired(t, j, at(1), journal.Expiry{}, 0)); !slices.Equal(got, []string{"idem/b", "idem/c"}) {
		t.Fatalf("expired at exactly +1s = %q", got)
	}
	// Another mark of b (by an empty fenced append), the same mark of c again (one mark), none from fenced-out
	// appends.
	mustAppend(t, j, "idem/b", 1, nil, journal.WithExpiry(at(7)))
	mustAppend(t, j, "idem/c", 1, numbered("E", 2, 1), journal.WithExpiry(at(1)))
	if _, err := j.Append(ctx, "idem/a", 0, nil, journal.WithExpiry(at(9))); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("fenced-out expiry: %v, want ErrConflict", err)
	}
	if _, err := j.Append(ctx, "idem/e", 0, numbered("E", 1, 1), journal.WithExpiry(at(0))); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("fenced-out expiry: %v, want ErrConflict", err)
	}
	if _, err := j.Append(ctx, "idem/e", 1, nil, journal.WithExpiry(time.Time{})); !errors.Is(err, journal.ErrInvalid) {
		t.Fatalf("zero expiry: %v, want ErrInvalid", err)
	}
	// Paging: pages of 1 from each previous last.
	var (
		after journal.Expiry
		paged []string
	)
	for {
		page := mustExpired(t, j, at(10), after, 1)
		if len(page) == 0 {
			break
		}
		paged = append(paged, expiryStreams(page)...)
		after = page[len(page)-1]
	}
	if want := []string{"idem/b", "idem/c", "idem/a", "idem/d", "idem/b"}; !slices.Equal(paged, want) {
		t.Fatalf("paged = %q, want %q", paged, want)
	}
	// DeleteExpiry removes exactly one mark; a missing one is fine.
	for _, e := range []journal.Expiry{{Stream: "idem/b", At: at(1)}, {Stream: "idem/c", At: at(2)}, {Stream: "idem/none", At: at(1)}} {
		if err := j.DeleteExpiry(ctx, e); err != nil {
			t.Fatalf("delete expiry %v: %v", e, err)
		}
	}
	j = reopen(t, j, open)
	es = mustExpired(t, j, at(10), journal.Expiry{}, 0)
	if got := expiryStreams(es); !slices.Equal(got, []string{"idem/c", "idem/a", "idem/d", "idem/b"}) {
		t.Fatalf("after deletes and reopen = %q", got)
	}
	if !es[3].At.Equal(at(7)) {
		t.Fatalf("b's later mark at %v, want %v", es[3].At, at(7))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.DeleteStream(ctx, "idem/a", 1); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("delete after close: %v, want ErrClosed", err)
	}
	if _, err := j.Expired(ctx, at(10), journal.Expiry{}, 0); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("expired after close: %v, want ErrClosed", err)
	}
	if err := j.DeleteExpiry(ctx, journal.Expiry{Stream: "idem/a", At: at(2)}); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("delete expiry after close: %v, want ErrClosed", err)
	}
}
