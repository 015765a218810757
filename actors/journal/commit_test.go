package journal

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A write that fails inside a shared commit fails alone: the others of its batch are committed.
func TestCommitIsolatesAFailingWrite(t *testing.T) {
	// A long linger gathers every write below into one batch, committed as soon as all have arrived.
	const writers = 8
	j, err := OpenBolt(filepath.Join(t.TempDir(), "journal.db"), BoltOptions{MaxBatchSize: writers + 1, MaxBatchDelay: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	errBoom := errors.New("boom")
	var (
		wg     sync.WaitGroup
		runs   int
		runsMu sync.Mutex
	)
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = j.Append(ctx, fmt.Sprintf("order/%d", i), 0, []Event{{Type: "E"}})
		}()
	}
	var failing error
	wg.Add(1)
	go func() {
		defer wg.Done()
		failing = j.write(ctx, func(tx *bolt.Tx) error {
			runsMu.Lock()
			runs++
			runsMu.Unlock()
			if err := tx.Bucket(bucketMeta).Put([]byte("partial"), []byte("x")); err != nil {
				return err
			}
			return errBoom
		})
	}()
	wg.Wait()
	if !errors.Is(failing, errBoom) {
		t.Fatalf("failing write returned %v", failing)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d failed with its batch: %v", i, err)
		}
	}
	for i := range writers {
		_, events, err := j.Load(ctx, fmt.Sprintf("order/%d", i))
		if err != nil || len(events) != 1 {
			t.Fatalf("order/%d: %d events, %v", i, len(events), err)
		}
	}
	if err := j.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("partial")) != nil {
			return errors.New("the failing write's partial change was committed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if runs < 2 {
		t.Fatalf("the failing write ran %d times; it should have shared a batch, then run alone", runs)
	}
}

// Writers answered by one commit come back a moment apart; the committer waits for as many as its previous batch
// had (up to MaxBatchDelay, here long enough never to expire), so that they share the next commit again instead
// of splitting into a commit of the first and one of the rest.
func TestCommitKeepsWritersTogether(t *testing.T) {
	const (
		writers = 4
		rounds  = 50
	)
	j, err := OpenBolt(filepath.Join(t.TempDir(), "journal.db"), BoltOptions{MaxBatchSize: writers, MaxBatchDelay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range uint64(rounds) {
				if _, err := j.Append(ctx, fmt.Sprintf("order/%d", i), seq, []Event{{Type: "E"}}); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if got := j.commits.Load(); got != rounds {
		t.Fatalf("%d appends by %d writers took %d commits, want %d (one per round)", writers*rounds, writers, got, rounds)
	}
}
