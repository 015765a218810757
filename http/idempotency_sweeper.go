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
// finds them with the journal's expiries index (Journal.Expired, in (time, stream) order), so a sweep reads only
// the records due, not every key ever used. For each it re-reads the record and decides from the record itself:
// a record goes once the retention has passed since it was completed, released or claimed, and a claim also not
// before its lease ended; a younger one gets its expiry moved to that time (fenced, so a record somebody is
// writing is never moved or deleted on stale knowledge). The delete is fenced on the record's last sequence
// number: a key claimed again meanwhile survives, and of several sweepers (one per node sharing PostgreSQL)
// deleting one record, one succeeds and the others see a conflict, which is not an error.
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
	Kept    int // records younger than their retention: their expiry was moved
	Raced   int // records written or deleted by somebody else between the sweeper's read and its write
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

// errSweepStopped ends a sweep when the sweeper stops.
var errSweepStopped = errors.New("idempotency sweeper stopped")

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
		stats, err := w.sweepBatch(batch, now)
		total.Deleted += stats.Deleted
		total.Kept += stats.Kept
		total.Raced += stats.Raced
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

// sweepBatch handles batch with up to Parallel records at once.
func (w *IdempotencySweeper) sweepBatch(batch []journal.Expiry, now time.Time) (SweepStats, error) {
	var (
		mu    sync.Mutex
		stats SweepStats
		first error
		wg    sync.WaitGroup
		slots = make(chan struct{}, w.cfg.Parallel)
	)
	for _, e := range batch {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			outcome, err := w.sweepOne(e.Stream, now)
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
			case outcome == raced:
				stats.Raced++
			}
		}()
	}
	wg.Wait()
	return stats, first
}

type sweepOutcome int

const (
	swept sweepOutcome = iota
	kept
	raced
	foreign // another owner's stream in the journal's expiries index: left to it
)

// sweepOne deletes stream if its record's retention has passed at now, else moves its expiry to when it will
// have. Only streams of idempotency records are touched (the expiries index is the journal's, not ours alone).
func (w *IdempotencySweeper) sweepOne(stream string, now time.Time) (sweepOutcome, error) {
	if !strings.HasPrefix(stream, IdempotencyStreamPrefix) {
		return foreign, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	j := w.store.j
	snap, events, err := j.Load(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("load idempotency record: %w", err)
	}
	last := journal.LastSeq(snap, events)
	var deadline time.Time // zero: deletable (no record: only a stray expiry)
	if len(events) > 0 {
		rec, err := decodeRecord(events[len(events)-1])
		if err != nil {
			// Not ours to judge: keep it, and look again after another retention.
			w.log.Warn("idempotency record unreadable; kept", slog.String("stream", stream), slog.Any("error", err))
			deadline = now.Add(w.store.retention)
		} else {
			deadline = recordDeadline(rec, w.store.retention)
		}
	}
	if now.Before(deadline) {
		_, err = j.Append(ctx, stream, last, nil, journal.WithExpiry(deadline))
	} else {
		err = j.DeleteStream(ctx, stream, last)
	}
	switch {
	case errors.Is(err, journal.ErrConflict):
		return raced, nil // written (claimed again) or deleted by another sweeper since the read: not ours now
	case err != nil:
		return 0, fmt.Errorf("sweep idempotency record: %w", err)
	case now.Before(deadline):
		return kept, nil
	}
	return swept, nil
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
