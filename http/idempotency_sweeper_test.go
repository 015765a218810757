package http_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/actors/journal/pgtest"
	"github.com/platterhq/platter/http"
)

// TestMain discards the PostgreSQL server that the sweeper tests over a shared journal start (on first use only).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	sweepRetention = 24 * time.Hour
	sweepLease     = 30 * time.Second
)

// sweepClock is a settable clock for the sweeper.
type sweepClock struct{ ns atomic.Int64 }

func newSweepClock(t time.Time) *sweepClock {
	c := &sweepClock{}
	c.set(t)
	return c
}
func (c *sweepClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *sweepClock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }

func openSweepBolt(t *testing.T) journal.Journal {
	t.Helper()
	j, err := journal.OpenBolt(filepath.Join(t.TempDir(), "j.db"), journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func newSweeper(store *http.JournalIdempotency, clock *sweepClock, cfg http.IdempotencySweepConfig) *http.IdempotencySweeper {
	cfg.Now = clock.now
	cfg.Logger = slog.New(slog.DiscardHandler)
	return http.NewIdempotencySweeper(store, cfg)
}

func mustBegin(t *testing.T, store *http.JournalIdempotency, key string, at time.Time) http.Claim {
	t.Helper()
	c, err := store.Begin(context.Background(), key, "fp-"+key, at, sweepLease)
	if err != nil || c.State != http.ClaimNew {
		t.Fatalf("claim %s: %+v %v", key, c, err)
	}
	return c
}

func mustComplete(t *testing.T, store *http.JournalIdempotency, c http.Claim, at time.Time, body string) {
	t.Helper()
	if err := store.Complete(context.Background(), c, http.StoredResponse{Status: 201, Body: []byte(body), At: at}); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

// keyStreams lists the keys that have a record in j.
func keyStreams(t *testing.T, j journal.Journal) []string {
	t.Helper()
	names, err := j.Streams(context.Background(), http.IdempotencyStreamPrefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = n[len(http.IdempotencyStreamPrefix):]
	}
	return names
}

func mustSweep(t *testing.T, w *http.IdempotencySweeper) http.SweepStats {
	t.Helper()
	stats, err := w.Sweep()
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	return stats
}

// TestIdempotencySweeper: with an injected clock, a sweep deletes the records whose retention has passed since
// they were completed or claimed, and only those: fresh records still replay, a request in flight keeps its key
// and completes, a record completed after its lease is kept until its own retention ends.
func TestIdempotencySweeper(t *testing.T) {
	j := openSweepBolt(t)
	ctx := context.Background()
	store := http.NewJournalIdempotency(j, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := newSweepClock(t0)
	w := newSweeper(store, clock, http.IdempotencySweepConfig{BatchSize: 2, Parallel: 2})

	old := mustBegin(t, store, "old", t0)
	mustComplete(t, store, old, t0.Add(time.Second), "old")
	mustBegin(t, store, "lapsed", t0) // its node died: never completed
	late := mustBegin(t, store, "late", t0)
	mustComplete(t, store, late, t0.Add(2*time.Hour), "late") // slower than its lease; nobody took it over
	released := mustBegin(t, store, "released", t0)
	if err := store.Release(ctx, released); err != nil {
		t.Fatal(err)
	}
	sweepAt := t0.Add(sweepRetention + time.Hour)
	fresh := mustBegin(t, store, "fresh", t0.Add(23*time.Hour))
	mustComplete(t, store, fresh, t0.Add(23*time.Hour), "fresh")
	inFlight := mustBegin(t, store, "inflight", sweepAt.Add(-time.Second))

	// Before any retention has passed, a sweep touches nothing.
	clock.set(t0.Add(sweepRetention - time.Second))
	if stats := mustSweep(t, w); stats != (http.SweepStats{}) {
		t.Fatalf("early sweep: %+v", stats)
	}
	clock.set(sweepAt)
	stats := mustSweep(t, w)
	// Deleted: old and lapsed. Kept: late (completed 2 h after its claim) and released, whose record Release
	// stamps with the real clock's time (Release has no clock), later than t0 here.
	if want := (http.SweepStats{Deleted: 2, Kept: 2}); stats != want {
		t.Fatalf("sweep: %+v, want %+v", stats, want)
	}
	if got, want := keyStreams(t, j), []string{"fresh", "inflight", "late", "released"}; !slices.Equal(got, want) {
		t.Fatalf("records after the sweep: %q, want %q", got, want)
	}
	// A second sweep at the same time finds nothing more.
	if stats := mustSweep(t, w); stats != (http.SweepStats{}) {
		t.Fatalf("second sweep: %+v", stats)
	}

	// The fresh record replays; the request in flight holds its key (a retry is 409) and completes.
	if c, err := store.Begin(ctx, "fresh", "fp-fresh", sweepAt, sweepLease); err != nil || c.State != http.ClaimDone || string(c.Response.Body) != "fresh" {
		t.Fatalf("replay within the retention: %+v %v", c, err)
	}
	if c, err := store.Begin(ctx, "inflight", "fp-inflight", sweepAt, sweepLease); err != nil || c.State != http.ClaimInFlight {
		t.Fatalf("retry of a request in flight: %+v %v", c, err)
	}
	mustComplete(t, store, inFlight, sweepAt, "inflight")
	// A swept key is a new key.
	if c, err := store.Begin(ctx, "old", "fp-other", sweepAt, sweepLease); err != nil || c.State != http.ClaimNew {
		t.Fatalf("a swept key: %+v %v", c, err)
	}

	// The late record goes once its own retention has passed, the fresh one once its has.
	clock.set(t0.Add(2*time.Hour + sweepRetention))
	if stats := mustSweep(t, w); stats.Deleted != 1 {
		t.Fatalf("sweep after the late record's retention: %+v", stats)
	}
	clock.set(t0.Add(23*time.Hour + sweepRetention + sweepLease))
	mustSweep(t, w)
	if got, want := keyStreams(t, j), []string{"inflight", "old", "released"}; !slices.Equal(got, want) {
		t.Fatalf("records after the later sweeps: %q, want %q", got, want)
	}
}

// TestIdempotencySweeperBackfill: records written without an expiry mark (by builds before the sweeper) are
// found by Backfill, once per journal: the expired ones go, the others are marked and swept when they expire.
func TestIdempotencySweeperBackfill(t *testing.T) {
	j := openSweepBolt(t)
	ctx := context.Background()
	store := http.NewJournalIdempotency(j, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, key := range []string{"a", "b", "c"} {
		mustComplete(t, store, mustBegin(t, store, key, t0), t0, key)
	}
	later := t0.Add(12 * time.Hour)
	mustComplete(t, store, mustBegin(t, store, "d", later), later, "d")
	// Make them unmarked, as an older build wrote them.
	marks, err := j.Expired(ctx, t0.Add(100*sweepRetention), journal.Expiry{}, 0)
	if err != nil || len(marks) != 4 {
		t.Fatalf("marks: %v %v", marks, err)
	}
	for _, e := range marks {
		if err := j.DeleteExpiry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	clock := newSweepClock(t0.Add(sweepRetention + time.Hour))
	w := newSweeper(store, clock, http.IdempotencySweepConfig{BatchSize: 2})
	if stats := mustSweep(t, w); stats != (http.SweepStats{}) {
		t.Fatalf("a sweep found unmarked records: %+v", stats)
	}
	stats, err := w.Backfill()
	if want := (http.SweepStats{Deleted: 3, Kept: 1}); err != nil || stats != want {
		t.Fatalf("backfill: %+v %v, want %+v", stats, err, want)
	}
	if got := keyStreams(t, j); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("records after the backfill: %q", got)
	}
	// Once per journal: a second backfill (another node, a restart) does nothing.
	mustComplete(t, store, mustBegin(t, store, "e", t0), t0, "e")
	if stats, err := w.Backfill(); err != nil || stats != (http.SweepStats{}) {
		t.Fatalf("second backfill: %+v %v", stats, err)
	}
	clock.set(later.Add(sweepRetention))
	if stats := mustSweep(t, w); stats.Deleted != 2 {
		t.Fatalf("sweep after d's retention: %+v, want d and e deleted", stats)
	}
	if got := keyStreams(t, j); len(got) != 0 {
		t.Fatalf("records left: %q", got)
	}
}

// TestIdempotencySweeperRunsInBackground: Start sweeps on its interval until Stop.
func TestIdempotencySweeperRunsInBackground(t *testing.T) {
	j := openSweepBolt(t)
	store := http.NewJournalIdempotency(j, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := newSweepClock(t0)
	w := newSweeper(store, clock, http.IdempotencySweepConfig{Interval: 5 * time.Millisecond})
	w.Start()
	defer w.Stop()
	mustComplete(t, store, mustBegin(t, store, "k", t0), t0, "k")
	clock.set(t0.Add(sweepRetention + sweepLease))
	deadline := time.Now().Add(10 * time.Second)
	for len(keyStreams(t, j)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background sweeper did not delete the expired record")
		}
		time.Sleep(5 * time.Millisecond) // polling the journal, with a deadline
	}
}

// TestIdempotencySweepersShareJournal: two sweepers (two nodes) sweep one journal at once while clients re-use
// some of the expired keys: every expired record is deleted exactly once, neither sweeper fails, fresh records
// stay, and no key claimed during the sweep loses its claim.
func TestIdempotencySweepersShareJournal(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) {
		j := openSweepBolt(t)
		testSweepersShareJournal(t, j, j)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		open := func() journal.Journal {
			j, err := journal.OpenPostgres(context.Background(), dsn, journal.PostgresOptions{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = j.Close() })
			return j
		}
		testSweepersShareJournal(t, open(), open())
	})
}

func testSweepersShareJournal(t *testing.T, j1, j2 journal.Journal) {
	const (
		expired = 120
		fresh   = 20
		reused  = 30 // expired keys claimed again during the sweep
	)
	s1 := http.NewJournalIdempotency(j1, sweepRetention)
	s2 := http.NewJournalIdempotency(j2, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sweepAt := t0.Add(sweepRetention + time.Hour)
	for i := range expired {
		key := fmt.Sprintf("old-%03d", i)
		mustComplete(t, s1, mustBegin(t, s1, key, t0), t0, key)
	}
	for i := range fresh {
		key := fmt.Sprintf("new-%03d", i)
		mustComplete(t, s2, mustBegin(t, s2, key, sweepAt.Add(-time.Hour)), sweepAt.Add(-time.Hour), key)
	}
	clock := newSweepClock(sweepAt)
	cfg := http.IdempotencySweepConfig{BatchSize: 7, Parallel: 4}
	sweepers := []*http.IdempotencySweeper{newSweeper(s1, clock, cfg), newSweeper(s2, clock, cfg)}

	var (
		wg      sync.WaitGroup
		stats   [2]http.SweepStats
		errs    [2]error
		claimed sync.Map // key → true for the re-used keys that got ClaimNew
		fails   = make(chan error, reused)
	)
	for i, w := range sweepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i], errs[i] = w.Sweep()
		}()
	}
	for i := range reused {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("old-%03d", i*4)
			c, err := s2.Begin(context.Background(), key, "fp-again", sweepAt, sweepLease)
			switch {
			case err != nil:
				fails <- err
			case c.State != http.ClaimNew:
				fails <- fmt.Errorf("re-use of expired key %s: state %v", key, c.State)
			default:
				claimed.Store(key, true)
			}
		}()
	}
	wg.Wait()
	close(fails)
	for err := range fails {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sweeper %d: %v", i, err)
		}
	}
	// Every expired key went, except the re-used ones, which hold their new claim (whether the sweep reached
	// them before or after they were claimed again); the fresh ones stay.
	var want []string
	for i := range reused {
		want = append(want, fmt.Sprintf("old-%03d", i*4))
	}
	for i := range fresh {
		want = append(want, fmt.Sprintf("new-%03d", i))
	}
	slices.Sort(want)
	if got := keyStreams(t, j1); !slices.Equal(got, want) {
		t.Fatalf("records after the sweeps: %q, want %q", got, want)
	}
	// Each record was deleted by one sweeper only: the non-re-used ones certainly, the re-used ones at most once.
	if deleted := stats[0].Deleted + stats[1].Deleted; deleted < expired-reused || deleted > expired {
		t.Fatalf("deleted %d records (stats %+v), want %d to %d", deleted, stats, expired-reused, expired)
	}
	// No re-claimed key lost its claim: each still answers "in flight" to another request.
	claimed.Range(func(k, _ any) bool {
		c, err := s1.Begin(context.Background(), k.(string), "fp-again", sweepAt, sweepLease)
		if err != nil || c.State != http.ClaimInFlight {
			t.Errorf("re-claimed key %s after the sweeps: %+v %v, want in flight", k, c, err)
		}
		return true
	})
	// A sweep at the same time after both finds nothing more to delete.
	if st, err := sweepers[0].Sweep(); err != nil || st.Deleted != 0 {
		t.Fatalf("a later sweep: %+v %v", st, err)
	}
	// No record lost its mark in the races: once every retention (and lease) has passed, one sweep deletes all.
	clock.set(sweepAt.Add(sweepRetention + sweepLease))
	if st, err := sweepers[1].Sweep(); err != nil || st.Deleted != reused+fresh {
		t.Fatalf("the sweep after every retention: %+v %v, want %d deleted", st, err, reused+fresh)
	}
	if got := keyStreams(t, j1); len(got) != 0 {
		t.Fatalf("records left without a mark: %q", got)
	}
}

// loadHookJournal runs onLoad after every Load, to write between a sweeper's read and its write.
type loadHookJournal struct {
	journal.Journal
	onLoad func(stream string)
}

func (h *loadHookJournal) Load(ctx context.Context, stream string) (journal.Snapshot, []journal.Event, error) {
	snap, events, err := h.Journal.Load(ctx, stream)
	if h.onLoad != nil {
		h.onLoad(stream)
	}
	return snap, events, err
}

// TestIdempotencySweeperRacedByCompletion: a lapsed claim past its retention completes between the sweeper's read
// and its delete (a write that adds no mark). The delete is fenced out, the record stays and keeps its mark: the
// next sweep marks it for its new retention, and a sweep after that deletes it.
func TestIdempotencySweeperRacedByCompletion(t *testing.T) {
	hook := &loadHookJournal{Journal: openSweepBolt(t)}
	store := http.NewJournalIdempotency(hook, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sweepAt := t0.Add(sweepRetention + time.Hour)
	claim := mustBegin(t, store, "slow", t0)
	var once sync.Once
	hook.onLoad = func(string) {
		once.Do(func() { // on a sweeper goroutine: no t.Fatal
			if err := store.Complete(context.Background(), claim, http.StoredResponse{Status: 201, Body: []byte("slow"), At: sweepAt}); err != nil {
				t.Errorf("complete: %v", err)
			}
		})
	}
	clock := newSweepClock(sweepAt)
	w := newSweeper(store, clock, http.IdempotencySweepConfig{})
	if stats := mustSweep(t, w); stats != (http.SweepStats{Raced: 1}) {
		t.Fatalf("sweep raced by the completion: %+v", stats)
	}
	if c, err := store.Begin(context.Background(), "slow", "fp-slow", sweepAt, sweepLease); err != nil || c.State != http.ClaimDone {
		t.Fatalf("the completed record after the raced sweep: %+v %v", c, err)
	}
	if stats := mustSweep(t, w); stats != (http.SweepStats{Kept: 1}) {
		t.Fatalf("next sweep: %+v, want the record marked for its new retention", stats)
	}
	clock.set(sweepAt.Add(sweepRetention))
	if stats := mustSweep(t, w); stats != (http.SweepStats{Deleted: 1}) {
		t.Fatalf("sweep after the new retention: %+v", stats)
	}
}

// BenchmarkIdempotencySweep: one sweep deleting b.N expired records from bbolt (default batch and parallelism);
// reports records deleted per second. A node taking 1000 keyed requests/s needs the sweeper to keep up with that.
func BenchmarkIdempotencySweep(b *testing.B) {
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "j.db"), journal.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	store := http.NewJournalIdempotency(j, sweepRetention)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range 16 { // concurrent writers, so that the records' appends share commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				key := fmt.Sprintf("k%09d", i)
				c, err := store.Begin(context.Background(), key, "fp", t0, sweepLease)
				if err == nil {
					err = store.Complete(context.Background(), c, http.StoredResponse{Status: 201, Body: []byte(`{"id":"x"}`), At: t0})
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	w := newSweeper(store, newSweepClock(t0.Add(2*sweepRetention)), http.IdempotencySweepConfig{})
	b.ResetTimer()
	stats, err := w.Sweep()
	b.StopTimer()
	if err != nil || stats.Deleted != b.N {
		b.Fatalf("sweep: %+v %v, want %d deleted", stats, err, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
