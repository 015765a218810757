package journal

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention on PostgreSQL: the expiry marks (journal_expiries, migration 0002) and the fenced removal of a
// whole stream.

// expiryCTE writes the CTE of an Append's expiry mark (stream is the placeholder of the stream's name), added
// only if the CTE head returned a row.
func expiryCTE(sb *strings.Builder, a *sqlArgs, stream string, at time.Time) {
	fmt.Fprintf(sb, `, exp AS (INSERT INTO journal_expiries (at_ns, stream) SELECT %s::BIGINT, %s FROM head
				ON CONFLICT (at_ns, stream) DO NOTHING)`, a.add(at.UnixNano()), stream)
}

// DeleteStream implements Journal. One statement: the fence deletes the stream's row only if last_seq is the expected
// one (for 0: only if there is no row), and the events, snapshot and reminder go only if it held. The row lock taken by
// the DELETE serialises it with appends to the stream, which then find no row (or a new stream's INSERT waits for it
// and starts again at 1).
func (p *Postgres) DeleteStream(ctx context.Context, stream string, expectedSeq uint64) error {
	if err := checkSQLName("stream", stream); err != nil {
		return err
	}
	if expectedSeq > math.MaxInt64 {
		return fmt.Errorf("%w: sequence number %d out of range", ErrInvalid, expectedSeq)
	}
	head := "DELETE FROM journal_streams WHERE stream = $1 AND last_seq = $2::BIGINT RETURNING stream"
	if expectedSeq == 0 {
		// No stream row: only an orphan reminder can be there (SetReminder needs no stream).
		head = "SELECT $1::TEXT AS stream WHERE $2::BIGINT = 0 AND NOT EXISTS (SELECT 1 FROM journal_streams WHERE stream = $1)"
	}
	sql := "WITH head AS (" + head + `)
		, ev AS (DELETE FROM journal_events WHERE stream = $1 AND EXISTS (SELECT 1 FROM head))
		, sn AS (DELETE FROM journal_snapshots WHERE stream = $1 AND EXISTS (SELECT 1 FROM head))
		, rem AS (DELETE FROM journal_reminders WHERE stream = $1 AND EXISTS (SELECT 1 FROM head))
		SELECT count(*) FROM head`
	var won bool
	err := p.write(ctx, &pgWrite{sql: sql, args: []any{stream, int64(expectedSeq)}, scan: func(row pgx.Row) error {
		var n int64
		err := row.Scan(&n)
		won = err == nil && n == 1
		return err
	}})
	if err != nil {
		return fmt.Errorf("delete stream %s: %w", stream, err)
	}
	if !won {
		return fmt.Errorf("delete stream %s at %d: %w", stream, expectedSeq, ErrConflict)
	}
	return nil
}

// Expired implements Journal: a range scan of journal_expiries' primary key (at_ns, stream), as DueReminders
// (timeIndexPage).
func (p *Postgres) Expired(ctx context.Context, now time.Time, after Expiry, limit int) ([]Expiry, error) {
	if !after.IsZero() {
		if err := checkSQLName("stream", after.Stream); err != nil {
			return nil, err
		}
	}
	expired, err := timeIndexPage(ctx, p, "journal_expiries", "at_ns", now, after, limit,
		func(stream string, at time.Time) Expiry { return Expiry{Stream: stream, At: at} })
	if err != nil {
		return nil, fmt.Errorf("read expiries: %w", err)
	}
	return expired, nil
}

// DeleteExpiry implements Journal.
func (p *Postgres) DeleteExpiry(ctx context.Context, e Expiry) error {
	if err := checkSQLName("stream", e.Stream); err != nil {
		return err
	}
	err := p.write(ctx, &pgWrite{
		sql:  "DELETE FROM journal_expiries WHERE at_ns = $1 AND stream = $2",
		args: []any{e.At.UnixNano(), e.Stream},
	})
	if err != nil {
		return fmt.Errorf("delete expiry of %s: %w", e.Stream, err)
	}
	return nil
}
