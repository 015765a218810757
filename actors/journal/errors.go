package journal

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

var (
	// ErrConflict is returned by Append when the stream's last sequence number is not the expected one: another
	// writer (usually another activation of the same identity) appended first. The caller must not retry blindly;
	// an actor stops its activation so that the next one reloads the stream.
	ErrConflict = errors.New("journal: append conflict: stream moved past the expected sequence")

	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("journal: closed")

	// ErrLocked is returned by OpenBolt when another process holds the file.
	ErrLocked = errors.New("journal: file is locked by another process")

	// ErrInvalid is returned for a malformed argument: empty or oversized stream or recipient name, empty event
	// type, or a snapshot beyond the end of its stream.
	ErrInvalid = errors.New("journal: invalid argument")
)

// MaxNameLen bounds stream and recipient names (bytes).
const MaxNameLen = 1024

func checkName(what, name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s must be 1-%d bytes of UTF-8", ErrInvalid, what, MaxNameLen)
	}
	return nil
}

func checkEvents(events []Event) error {
	for i := range events {
		if events[i].Type == "" {
			return fmt.Errorf("%w: event %d has no type", ErrInvalid, i)
		}
	}
	return nil
}

func checkOptions(o AppendOptions) error {
	if o.Expiry != nil && o.Expiry.IsZero() {
		return fmt.Errorf("%w: zero expiry time", ErrInvalid)
	}
	for _, f := range o.Feeds {
		if err := checkName("recipient", f.Recipient); err != nil {
			return err
		}
		if err := checkFeedEntries(f.Entries); err != nil {
			return err
		}
	}
	return nil
}

func checkFeedEntries(entries []FeedEntry) error {
	for i := range entries {
		if entries[i].Type == "" {
			return fmt.Errorf("%w: feed entry %d has no type", ErrInvalid, i)
		}
	}
	return nil
}
