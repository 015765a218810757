package journal

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgWrite is one write statement waiting for the committer. scan reads the statement's one row (nil for a
// statement without rows); it may run more than once (in a batch, then alone if the batch failed), so it must
// reset anything it reports.
type pgWrite struct {
	sql  string
	args []any
	scan func(pgx.Row) error
	done chan error
}

// write queues w for the next group commit and waits until it committed (or failed). As with Bolt, it does not
// give up when ctx ends after the write is queued: the caller must learn whether it committed. WriteTimeout bounds
// the wait. With MaxBatchSize 1 there is no committer and w runs at once in its own transaction.
func (p *Postgres) write(ctx context.Context, w *pgWrite) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrClosed
	}
	if p.writes == nil {
		defer p.mu.RUnlock()
		return p.runAlone(w)
	}
	w.done = make(chan error, 1)
	p.writes <- w // the committer runs until Close, which waits for this lock
	p.mu.RUnlock()
	return <-w.done
}

// commitLoop is the committer goroutine: it takes every queued write (up to MaxBatchSize), commits them in one
// transaction and answers each. Writes that arrive during a commit wait for the next one, so batches grow with
// load without a fixed delay.
func (p *Postgres) commitLoop() {
	defer close(p.stopped)
	batch := make([]*pgWrite, 0, p.opts.MaxBatchSize)
	for {
		w, ok := <-p.writes
		if !ok {
			return
		}
		batch = p.collect(append(batch[:0], w))
		p.commit(batch)
		clear(batch) // drop references to answered writes
	}
}

// collect adds queued writes to batch, lingering up to MaxBatchDelay for more when configured.
func (p *Postgres) collect(batch []*pgWrite) []*pgWrite {
	for len(batch) < p.opts.MaxBatchSize {
		select {
		case w, ok := <-p.writes:
			if !ok {
				return batch
			}
			batch = append(batch, w)
			continue
		default:
		}
		break
	}
	if p.opts.MaxBatchDelay <= 0 || len(batch) >= p.opts.MaxBatchSize {
		return batch
	}
	linger := time.NewTimer(p.opts.MaxBatchDelay)
	defer linger.Stop()
	for len(batch) < p.opts.MaxBatchSize {
		select {
		case w, ok := <-p.writes:
			if !ok {
				return batch
			}
			batch = append(batch, w)
		case <-linger.C:
			return batch
		}
	}
	return batch
}

// commit runs batch as one transaction and answers each write. A batch the server refused was rolled back
// entirely: it is retried after a serialization failure or a deadlock, then each write runs alone so that only
// a failing one reports an error. A batch whose connection broke may or may not have committed: every write
// reports ErrUnavailable.
func (p *Postgres) commit(batch []*pgWrite) {
	if len(batch) == 1 {
		batch[0].done <- p.runAlone(batch[0])
		return
	}
	err := p.withRetries(func(ctx context.Context) error { return p.runBatch(ctx, batch) })
	switch {
	case err == nil:
		for _, w := range batch {
			w.done <- nil
		}
	case rolledBack(err):
		p.log.Warn("journal batch refused; running its writes one by one",
			slog.Int("writes", len(batch)), slog.String("error", err.Error()))
		for _, w := range batch {
			w.done <- p.runAlone(w)
		}
	default:
		err = outcomeUnknown(err)
		p.log.Warn("journal batch lost its connection", slog.Int("writes", len(batch)), slog.String("error", err.Error()))
		for _, w := range batch {
			w.done <- err
		}
	}
}

// runBatch sends batch as one pipeline ending in one Sync, which the server runs as one implicit transaction:
// committed when Close returns nil, rolled back entirely when any statement failed.
func (p *Postgres) runBatch(ctx context.Context, batch []*pgWrite) error {
	b := &pgx.Batch{}
	for _, w := range batch {
		b.Queue(w.sql, w.args...)
	}
	br := p.pool.SendBatch(ctx, b)
	var first error
	for _, w := range batch {
		var err error
		if w.scan != nil {
			err = w.scan(br.QueryRow())
		} else {
			_, err = br.Exec()
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if err := br.Close(); first == nil {
		first = err
	}
	return first
}

// runAlone runs w in a transaction of its own.
func (p *Postgres) runAlone(w *pgWrite) error {
	err := p.withRetries(func(ctx context.Context) error {
		if w.scan != nil {
			return w.scan(p.pool.QueryRow(ctx, w.sql, w.args...))
		}
		_, err := p.pool.Exec(ctx, w.sql, w.args...)
		return err
	})
	switch {
	case err == nil:
		return nil
	case !rolledBack(err):
		return outcomeUnknown(err)
	default:
		return classify(context.Background(), err)
	}
}

// withRetries runs fn, each attempt bounded by WriteTimeout, again after a serialization failure or a deadlock
// (up to RetryLimit times, with a doubling pause).
func (p *Postgres) withRetries(fn func(context.Context) error) error {
	backoff := p.opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.WriteTimeout)
		err := fn(ctx)
		cancel()
		if err == nil || !retryable(err) || attempt >= p.opts.RetryLimit {
			return err
		}
		p.log.Debug("journal write retried", slog.Int("attempt", attempt+1), slog.String("error", err.Error()))
		time.Sleep(backoff)
		backoff *= 2
	}
}

// outcomeUnknown wraps the error of a write that may have committed.
func outcomeUnknown(err error) error {
	return fmt.Errorf("%w (the write may have committed): %w", ErrUnavailable, err)
}
