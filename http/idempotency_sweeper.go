package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/platterhq/platter/actors/journal"
)

// IdempotencySweepConfig configures an IdempotencySweeper. The zero value of a field means its default.
type IdempotencySweepConfig struct {
	// Interval is the pause between two sweeps (the first runs at Start). A record is deleted at most about
	// Interval after its retention ended. Default 1 min.
	Interval time.Duration

	// BatchSize is how many expired records one journal read lists; the sweeper handles a batch, then reads the
	// next, until none is left. Default 128.
	BatchSize int

	// Parallel is how many records of a batch are checked and deleted at once. A journal that commits
	// concurrent writes together (bbolt's group commit, PostgreSQL's committer) then deletes them in a few
	// commits instead of one fsync each. Default 8.
	Parallel int

	// Timeout bounds each journal call. Default 10 s.
	Timeout time.Duration

	// Now is the sweeper's clock. Default time.Now.
	Now func() time.Time

	// Logger receives a line per sweep that deleted something (info) and failures (warn). Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultIdempotencySweepConfig returns the values used for zero fields.
func DefaultIdempotencySweepConfig() IdempotencySweepConfig {
	return IdempotencySweepConfig{
		Interval:  time.Minute,
		BatchSize: 128,
		Parallel:  8,
		Timeout:   10 * time.Second,
		Now:       time.Now,
		Logger:    slog.Default(),
	}
}

func (c IdempotencySweepConfig) withDefaults() IdempotencySweepConfig {
	d := DefaultIdempotencySweepConfig()
	setDefault(&c.Interval, d.Interval)
	setDefault(&c.Timeout, d.Timeout)
	if c.BatchSize <= 0 {
		c.BatchSize = d.BatchSize
	}
	if c.Parallel <= 0 {
		c.Parallel = d.Parallel
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// IdempotencySweeper deletes the Idempotency-Key records of a JournalIdempotency whose retention has passed. It
// finds them with the journal's expiry marks (Journal.Expired, in (time, stream) order; every claim adds one), so
// a sweep reads only the records due, not every key ever used. For each it re-reads the record and decides from
// the record itself: a record goes once the retention has passed since it was completed, released or claimed,
// and a claim also not before its lease ended; a younger one is marked again for that time (with a fenced
// append, so a record somebody is writing is never marked or deleted on stale knowledge). The delete is fenced on
// the record's last sequence number: a key claimed again meanwhile survives, and of several sweepers (one per
// node sharing PostgreSQL) deleting one record, one succeeds and the others see a conflict, which is not an
// error. The mark is removed last, so a sweeper that dies midway leaves it for the next sweep.
//
// Concurrency: Start and Stop are called once each, from one goroutine; Sweep may be called from any goroutine,
// also concurrently with the sweeper's own sweeps.
type IdempotencySweeper struct {
	store *JournalIdempotency
	cfg   IdempotencySweepConfig
	log   *slog.Logger

	stop chan struct{}
	done sync.WaitGroup
}

// SweepStats counts what one sweep did.
type SweepStats struct {
	Deleted int // records deleted
	Kept    int // records younger than their retention: marked again for when it ends
	Raced   int // records written or deleted by somebody else (another sweeper, a new claim) meanwhile
}

// NewIdempotencySweeper returns a sweeper of store's records (store's retention decides); Start runs it.
func NewIdempotencySweeper(store *JournalIdempotency, cfg IdempotencySweepConfig) *IdempotencySweeper {
	cfg = cfg.withDefaults()
	return &IdempotencySweeper{store: store, cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
}

// Start sweeps now and then every Interval, in the background, until Stop.
func (w *IdempotencySweeper) Start() {
	w.done.Add(1)
	go w.run()
}

// Stop ends the background sweeps (a sweep in progress stops after its current batch) and waits for them.
func (w *IdempotencySweeper) Stop() {
	close(w.stop)
	w.done.Wait()
}

func (w *IdempotencySweeper) run() {
	defer w.done.Done()
	start := time.Now()
	if stats, err := w.backfill(w.stop); err != nil {
		w.log.Warn("idempotency backfill failed", slog.Int("deleted", stats.Deleted), slog.Any("error", err))
	} else if stats.Deleted > 0 || stats.Kept > 0 {
		w.log.Info("idempotency records of older builds marked", slog.Int("deleted", stats.Deleted),
			slog.Int("kept", stats.Kept), slog.Duration("took", time.Since(start)))
	}
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		stats, err := w.sweep(w.stop)
		switch {
		case err != nil:
			w.log.Warn("idempotency sweep failed", slog.Int("deleted", stats.Deleted), slog.Any("error", err))
		case stats.Deleted > 0 || stats.Kept > 0:
			w.log.Info("idempotency records swept", slog.Int("deleted", stats.Deleted), slog.Int("kept", stats.Kept),
				slog.Int("raced", stats.Raced), slog.Duration("took", time.Since(start)))
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// Sweep deletes every record whose retention has passed at the sweeper's clock's now, batch by batch, and
// returns what it did. It returns the first journal failure (other than conflicts) after finishing the batch.
func (w *IdempotencySweeper) Sweep() (SweepStats, error) {
	return w.sweep(nil)
}

// idempotencyBackfillStream records that a journal's idempotency records have all been marked (Backfill). It is
// outside IdempotencyStreamPrefix, so that listing the records never meets it.
const idempotencyBackfillStream = "idempotency-sweeper/backfilled"

// Backfill marks the records that claims of older builds wrote without an expiry mark, which Sweep cannot find:
// it walks every idempotency stream once, in batches, deleting those past their retention and marking the others,
// then records in the journal that it is done, so that it runs once per journal. Start runs it before the first
// sweep; a walk cut short by Stop (or a failure) runs again from the start at the next Start. Records of this
// build only get one more mark each (harmless: the sweeper re-reads a record before acting on a mark). Several
// nodes may run it at once.
func (w *IdempotencySweeper) Backfill() (SweepStats, error) {
	return w.backfill(nil)
}

func (w *IdempotencySweeper) backfill(stop <-chan struct{}) (SweepStats, error) {
	var total SweepStats
	j := w.store.j
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	_, done, err := j.Load(ctx, idempotencyBackfillStream)
	cancel()
	if err != nil {
		return total, fmt.Errorf("read idempotency backfill marker: %w", err)
	}
	if len(done) > 0 {
		return total, nil
	}
	now := w.cfg.Now()
	after := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
		batch, err := j.Streams(ctx, IdempotencyStreamPrefix, after, w.cfg.BatchSize)
		cancel()
		if err != nil {
			return total, fmt.Errorf("list idempotency records: %w", err)
		}
		stats, err := w.sweepBatch(len(batch), func(i int) (sweepOutcome, error) {
			ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
			defer cancel()
			return w.settle(ctx, batch[i], now)
		})
		total.add(stats)
		if err != nil {
			return total, err
		}
		if len(batch) < w.cfg.BatchSize {
			break
		}
		after = batch[len(batch)-1]
		select {
		case <-stop:
			return total, nil
		default:
		}
	}
	marker, err := encodeRecord(idemRecord{Kind: recBackfilled, At: now})
	if err != nil {
		return total, err
	}
	ctx, cancel = context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	if _, err := j.Append(ctx, idempotencyBackfillStream, 0, []journal.Event{marker}); err != nil && !errors.Is(err, journal.ErrConflict) {
		return total, fmt.Errorf("record idempotency backfill: %w", err)
	}
	return total, nil // a conflict: another node finished it too
}

func (w *IdempotencySweeper) sweep(stop <-chan struct{}) (SweepStats, error) {
	var total SweepStats
	now := w.cfg.Now()
	var after journal.Expiry
	for {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
		batch, err := w.store.j.Expired(ctx, now, after, w.cfg.BatchSize)
		cancel()
		if err != nil {
			return total, fmt.Errorf("list expired idempotency records: %w", err)
		}
		stats, err := w.sweepBatch(len(batch), func(i int) (sweepOutcome, error) { return w.sweepOne(batch[i], now) })
		total.add(stats)
		if err != nil {
			return total, err
		}
		if len(batch) < w.cfg.BatchSize {
			return total, nil
		}
		after = batch[len(batch)-1]
		select {
		case <-stop:
			return total, nil
		default:
		}
	}
}

// sweepBatch runs handle for items 0..n-1, up to Parallel at once, and adds up their outcomes.
func (w *IdempotencySweeper) sweepBatch(n int, handle func(i int) (sweepOutcome, error)) (SweepStats, error) {
	var (
		mu    sync.Mutex
		stats SweepStats
		first error
		wg    sync.WaitGroup
		slots = make(chan struct{}, w.cfg.Parallel)
	)
	for i := range n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			outcome, err := handle(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if first == nil {
					first = err
				}
			case outcome == swept:
				stats.Deleted++
			case outcome == kept:
				stats.Kept++
			case outcome == raced || outcome == gone:
				stats.Raced++
			}
		}()
	}
	wg.Wait()
	return stats, first
}

func (s *SweepStats) add(o SweepStats) {
	s.Deleted += o.Deleted
	s.Kept += o.Kept
	s.Raced += o.Raced
}

type sweepOutcome int

const (
	swept sweepOutcome = iota
	kept
	raced   // written by somebody else since it was read: left for the next sweep
	gone    // no such stream (deleted by another sweeper, say)
	foreign // another owner's mark: left to it
)

// sweepOne handles the expiry mark e: it settles e's stream (deletes it or marks it again), then removes e. Every
// step is safe to repeat or to race with another sweeper, and a live record never ends up without a mark: e goes
// only after the stream is gone or carries a later mark (added with a fenced append, on the record the decision
// was made from). A write that races the sweeper (a key claimed again) fences it out and leaves e for the next
// sweep.
func (w *IdempotencySweeper) sweepOne(e journal.Expiry, now time.Time) (sweepOutcome, error) {
	if !strings.HasPrefix(e.Stream, IdempotencyStreamPrefix) {
		return foreign, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	outcome, err := w.settle(ctx, e.Stream, now)
	if err != nil || outcome == raced {
		return outcome, err
	}
	// A stream deleted and claimed afresh meanwhile has a mark of its own, later than e (claim time + lease +
	// retention > now >= e.At).
	if err := w.store.j.DeleteExpiry(ctx, e); err != nil {
		return 0, fmt.Errorf("delete idempotency record's expiry: %w", err)
	}
	return outcome, nil
}

// settle deletes stream if its record's retention has passed at now, else marks it for when it will have.
func (w *IdempotencySweeper) settle(ctx context.Context, stream string, now time.Time) (sweepOutcome, error) {
	j := w.store.j
	snap, events, err := j.Load(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("load idempotency record: %w", err)
	}
	last := journal.LastSeq(snap, events)
	if last == 0 {
		return gone, nil
	}
	if len(events) == 0 {
		return 0, fmt.Errorf("sweep idempotency record %s: a snapshot and no events", stream)
	}
	deadline := now.Add(w.store.retention) // an unreadable record is not ours to judge: look again later
	if rec, err := decodeRecord(events[len(events)-1]); err != nil {
		w.log.Warn("idempotency record unreadable; kept", slog.String("stream", stream), slog.Any("error", err))
	} else {
		deadline = recordDeadline(rec, w.store.retention)
	}
	outcome := swept
	if now.Before(deadline) {
		outcome = kept
		_, err = j.Append(ctx, stream, last, nil, journal.WithExpiry(deadline))
	} else {
		err = j.DeleteStream(ctx, stream, last)
	}
	switch {
	case errors.Is(err, journal.ErrConflict):
		return raced, nil // written (claimed again) or deleted since the read
	case err != nil:
		return 0, fmt.Errorf("sweep idempotency record: %w", err)
	}
	return outcome, nil
}

// recordDeadline is when rec, the last record of a key, may be deleted: retention after it was written, and for
// a claim not before its lease ends (a request holding the key is never swept from under it).
func recordDeadline(rec idemRecord, retention time.Duration) time.Time {
	deadline := rec.At.Add(retention)
	if rec.Kind == recClaimed && rec.Until.After(deadline) {
		deadline = rec.Until
	}
	return deadline
}
