package journal

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeRequest is one write waiting for the committer. fn may run more than once (in a batch, then alone if the
// batch failed), so it must reset anything it reports.
type writeRequest struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// write queues fn for the next group commit and waits until it is durable (or failed). It does not give up when
// ctx ends after the write is queued: the write may commit, and the caller must learn whether it did.
func (b *Bolt) write(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeRequest{fn: fn, done: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	b.writes <- req // the committer runs until Close, which waits for this lock
	b.mu.RUnlock()
	return <-req.done
}

// commitLoop is the committer goroutine: it takes every queued write (up to MaxBatchSize), commits them in one
// transaction and answers each. Writes that arrive during a commit wait for the next one, which is what makes
// batches grow with load without a fixed delay.
func (b *Bolt) commitLoop() {
	defer close(b.stopped)
	batch := make([]*writeRequest, 0, b.opts.MaxBatchSize)
	// expect is the previous batch's size: how many writers are likely to write again at once. Before the first
	// batch nothing is known, and a full batch is assumed (at most one MaxBatchDelay spent on it).
	expect := b.opts.MaxBatchSize
	for {
		req, ok := <-b.writes
		if !ok {
			return
		}
		batch = b.collect(append(batch[:0], req), expect)
		b.commit(batch)
		expect = len(batch)
		clear(batch) // drop references to answered requests
	}
}

// collect adds queued writes to batch. While it holds fewer than expect (the previous batch's size), it lingers
// up to MaxBatchDelay for the rest: the writers answered together by the previous commit come back a moment
// apart, and without the linger the first of them would take the next commit alone and the others the one after
// (batches of 1 and n-1 instead of n, a commit's fixed cost twice). A lone writer (expect 1) never waits; a
// burst's end costs one MaxBatchDelay, after which expect has shrunk to what arrived.
func (b *Bolt) collect(batch []*writeRequest, expect int) []*writeRequest {
	batch = b.drain(batch)
	want := min(expect, b.opts.MaxBatchSize)
	if b.opts.MaxBatchDelay <= 0 || len(batch) >= want {
		return batch
	}
	linger := time.NewTimer(b.opts.MaxBatchDelay)
	defer linger.Stop()
	for len(batch) < want {
		select {
		case req, ok := <-b.writes:
			if !ok {
				return batch
			}
			batch = append(batch, req)
		case <-linger.C:
			return batch
		}
	}
	return b.drain(batch) // whatever else arrived meanwhile
}

// drain adds the writes queued now to batch, up to MaxBatchSize, without waiting.
func (b *Bolt) drain(batch []*writeRequest) []*writeRequest {
	for len(batch) < b.opts.MaxBatchSize {
		select {
		case req, ok := <-b.writes:
			if !ok {
				return batch
			}
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// commit runs batch in one transaction. If any write fails, the transaction is rolled back and each write is run
// again alone, so that only the failing one reports an error.
func (b *Bolt) commit(batch []*writeRequest) {
	b.commits.Add(1)
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, req := range batch {
			if err := req.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, req := range batch {
			req.done <- err
		}
		return
	}
	for _, req := range batch {
		req.done <- b.db.Update(req.fn)
	}
}
