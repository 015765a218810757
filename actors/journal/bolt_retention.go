package journal

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention on bbolt: the expiry marks (bucket expiry_marks, keyed at ‖ stream, so an Append's mark lands at the
// end of the bucket, on a page shared by the writes of one commit) and the fenced removal of a stream. Files
// written before the bucket existed get it when opened.

var bucketExpiries = []byte("expiry_marks")

// DeleteStream implements Journal.
func (b *Bolt) DeleteStream(ctx context.Context, stream string, expectedSeq uint64) error {
	if err := checkName("stream", stream); err != nil {
		return err
	}
	key := []byte(stream)
	var conflict bool
	err := b.write(ctx, func(tx *bolt.Tx) error {
		conflict = false
		last, sb, err := lastSeq(tx, key)
		if err != nil {
			return err
		}
		if last != expectedSeq {
			conflict = true // a result, not a failure: the rest of the batch commits
			return nil
		}
		if sb != nil {
			if err := tx.Bucket(bucketStreams).DeleteBucket(key); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketSnapshots).Delete(key); err != nil {
			return err
		}
		return putReminder(tx, key, time.Time{})
	})
	if err != nil {
		return fmt.Errorf("delete stream %s: %w", stream, err)
	}
	if conflict {
		return fmt.Errorf("delete stream %s at %d: %w", stream, expectedSeq, ErrConflict)
	}
	return nil
}

// Expired implements Journal.
func (b *Bolt) Expired(ctx context.Context, now time.Time, after Expiry, limit int) ([]Expiry, error) {
	var expired []Expiry
	err := b.read(ctx, func(tx *bolt.Tx) error {
		expired = nil
		var from []byte
		if !after.IsZero() {
			from = concat(encodeTime(after.At), []byte(after.Stream))
		}
		return scanTimeIndex(tx.Bucket(bucketExpiries), from, now, limit, func(stream string, at time.Time) {
			expired = append(expired, Expiry{Stream: stream, At: at})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read expiries: %w", err)
	}
	return expired, nil
}

// DeleteExpiry implements Journal.
func (b *Bolt) DeleteExpiry(ctx context.Context, e Expiry) error {
	if err := checkName("stream", e.Stream); err != nil {
		return err
	}
	key := concat(encodeTime(e.At), []byte(e.Stream))
	if err := b.write(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bucketExpiries).Delete(key) }); err != nil {
		return fmt.Errorf("delete expiry of %s: %w", e.Stream, err)
	}
	return nil
}
