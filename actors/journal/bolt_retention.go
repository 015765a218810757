package journal

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention on bbolt: the expiries index (buckets expiries and expiries_at, kept like the reminders' pair) and
// the fenced removal of a whole stream. Files written before these buckets existed get them when opened.

var (
	bucketExpiries   = []byte("expiries")
	bucketExpiriesAt = []byte("expiries_at")
)

// putExpiry replaces stream's expiry with at; a zero at deletes it.
func putExpiry(tx *bolt.Tx, stream []byte, at time.Time) error {
	byStream, byAt := tx.Bucket(bucketExpiries), tx.Bucket(bucketExpiriesAt)
	old := byStream.Get(stream)
	var enc []byte
	if !at.IsZero() {
		enc = encodeTime(at)
	}
	if bytes.Equal(old, enc) {
		return nil
	}
	if old != nil {
		if err := byAt.Delete(concat(old, stream)); err != nil {
			return err
		}
	}
	if at.IsZero() {
		return byStream.Delete(stream)
	}
	if err := byStream.Put(stream, enc); err != nil {
		return err
	}
	return byAt.Put(concat(enc, stream), []byte{})
}

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
		if err := putReminder(tx, key, time.Time{}); err != nil {
			return err
		}
		return putExpiry(tx, key, time.Time{})
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
		c := tx.Bucket(bucketExpiriesAt).Cursor()
		k, _ := c.First()
		var skip []byte // the cursor's own key, excluded
		if !after.IsZero() {
			skip = concat(encodeTime(after.At), []byte(after.Stream))
			k, _ = c.Seek(skip)
		}
		for ; k != nil; k, _ = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("corrupt expiry key %x", k)
			}
			if skip != nil && bytes.Equal(k, skip) {
				continue
			}
			at := decodeTime(k[:8])
			if at.After(now) || limit > 0 && len(expired) >= limit {
				break
			}
			expired = append(expired, Expiry{Stream: string(k[8:]), At: at})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read expiries: %w", err)
	}
	return expired, nil
}
