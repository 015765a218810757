package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrUnavailable is returned by the PostgreSQL backend when the database cannot be reached or a connection
	// broke. For a write it means the outcome is unknown: the write may have committed. An actor treats it like
	// any failed append (it stops, and the next activation reloads the stream).
	ErrUnavailable = errors.New("journal: database unavailable")

	// ErrSchemaTooNew is returned by OpenPostgres when the database was migrated by a newer build.
	ErrSchemaTooNew = errors.New("journal: database schema is newer than this build")

	// ErrDatabaseTooOld is returned by OpenPostgres for a CockroachDB older than v22.1, whose pipelines do not run
	// as one implicit transaction (the group commit relies on it).
	ErrDatabaseTooOld = errors.New("journal: database release too old")
)

// PostgresOptions configures the PostgreSQL backend. The zero value of a field means its default.
type PostgresOptions struct {
	// MaxConns caps the connection pool. Default: the DSN's pool_max_conns, else pgxpool's default (the larger of
	// 4 and the number of CPUs). The committer holds one connection while it commits; reads use the others.
	MaxConns int32

	// MaxBatchSize caps how many writes (appends, snapshots, reminder and feed writes) share one commit. The
	// committer sends a batch as one pipeline of statements that the server runs as one implicit transaction:
	// one round trip and one WAL flush for the whole batch. Default 256. 1 turns the committer off: every write is
	// its own transaction, run at once on its own pooled connection.
	MaxBatchSize int

	// MaxBatchDelay is how long the committer lingers for more writes after the first one of a batch arrives,
	// while fewer than MaxBatchSize are queued. Default 0 (no linger): writes that arrive during a commit join the
	// next one.
	MaxBatchDelay time.Duration

	// WriteTimeout bounds one commit, from taking a connection to the server's answer. A write does not end with
	// its caller's context once queued (its caller must learn whether it committed); this is what bounds it when
	// the database hangs. Default 10 s.
	WriteTimeout time.Duration

	// RetryLimit is how many times a write (or a batch) is retried after a serialization failure or a deadlock,
	// which roll the whole transaction back. Default 5.
	RetryLimit int

	// RetryBackoff is the pause before the first such retry; it doubles with each. Default 2 ms.
	RetryBackoff time.Duration

	// MigrationLock says how concurrent openers are kept from migrating the schema at once. Default
	// MigrationLockAuto.
	MigrationLock MigrationLock

	// MigrationLockLease is how long a lock row (MigrationLockRow) stays valid: the longest a crashed migrator
	// blocks the others. The holder renews it every third of the lease while it migrates, and stops migrating
	// (rolling back) if a renewal fails until the lease is out. Default 5 min.
	MigrationLockLease time.Duration

	// MigrationLockPoll is how often an opener retries a taken lock row. Default 100 ms.
	MigrationLockPoll time.Duration

	// Logger receives the backend's logs (migrations applied, batches retried). Default slog.Default().
	Logger *slog.Logger
}

// DefaultPostgresOptions returns the options used for zero fields (MaxConns 0 keeps pgxpool's own default).
func DefaultPostgresOptions() PostgresOptions {
	return PostgresOptions{
		MaxBatchSize:       256,
		WriteTimeout:       10 * time.Second,
		RetryLimit:         5,
		RetryBackoff:       2 * time.Millisecond,
		MigrationLockLease: 5 * time.Minute,
		MigrationLockPoll:  100 * time.Millisecond,
	}
}

func (o PostgresOptions) withDefaults() PostgresOptions {
	d := DefaultPostgresOptions()
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = d.MaxBatchSize
	}
	if o.MaxBatchDelay < 0 {
		o.MaxBatchDelay = 0
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = d.WriteTimeout
	}
	if o.RetryLimit < 0 {
		o.RetryLimit = 0
	} else if o.RetryLimit == 0 {
		o.RetryLimit = d.RetryLimit
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = d.RetryBackoff
	}
	if o.MigrationLockLease <= 0 {
		o.MigrationLockLease = d.MigrationLockLease
	}
	if o.MigrationLockPoll <= 0 {
		o.MigrationLockPoll = d.MigrationLockPoll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Postgres is the shared Journal of a multi-node cluster: PostgreSQL, or CockroachDB (the SQL keeps to what both
// accept: plain tables with primary keys, INSERT ... ON CONFLICT, data-modifying WITH; no triggers, no
// PL/pgSQL, no LISTEN/NOTIFY). Tables (see migrations/):
//
//	journal_streams       stream → last_seq             the fence: Append is a compare-and-set on this row
//	journal_events        (stream, seq) → type, data
//	journal_snapshots     stream → seq, type, data      the newest snapshot
//	journal_reminders     stream → due_ns               indexed on (due_ns, stream)
//	journal_feeds         recipient → last_cursor       incremented with the entries: dense cursors
//	journal_feed_entries  (recipient, pos) → type, data
//	journal_expiries      (at_ns, stream)               expiry marks; postgres_retention.go
//
// Every write is one SQL statement whose outcome (fenced out or not) is a result, not an error: an Append
// updates its stream's row only if last_seq is the expected sequence (or inserts it if the stream is new), and
// inserts its events, reminder and feed entries only if that row was written, all in one statement. So writes
// can share a transaction without savepoints, and a fenced-out write leaves the others intact: the committer
// sends every queued write as one pipeline that the server runs as one implicit transaction (group commit: one
// round trip, one WAL flush). Row locks on journal_streams and journal_feeds serialise the writers of one stream
// or feed across every node; the events' primary key (stream, seq) backs the fence up.
//
// A batch that fails with a server error was rolled back: the committer retries it (serialization failures and
// deadlocks) or runs each write alone, so that only the failing write reports an error. A batch whose connection
// broke has an unknown outcome: each of its writes returns ErrUnavailable. Within a statement, feed counters are
// locked in name order, but the batches of two nodes can still lock the same feeds in opposite orders; PostgreSQL
// then aborts one of them after its deadlock_timeout (1 s by default) and the committer runs it again.
//
// CockroachDB v22.1 or newer: the dialect is detected at open (names are STRING there, which compares bytes; the
// migration lock is a lock row, its lease renewed while migrating). Older releases are refused (ErrDatabaseTooOld):
// the group commit needs a pipeline up to Sync to run as one implicit transaction, which CockroachDB does from
// v22.1 (cockroachdb/cockroach#74242). Serialization failures (40001), which CockroachDB reports where PostgreSQL
// would wait for a row lock, are retried as above. CI runs the backend's tests against PostgreSQL only;
// TestCockroachConformance runs the shared conformance suite against a local single-node CockroachDB when a
// cockroach binary is found (PLATTER_COCKROACH_BIN, else PATH), and is skipped otherwise.
type Postgres struct {
	pool    *pgxpool.Pool
	opts    PostgresOptions
	log     *slog.Logger
	dialect dialect

	mu      sync.RWMutex // guards closed; held shared by every call so that Close waits for them
	closed  bool
	writes  chan *pgWrite
	stopped chan struct{}
}

var _ Journal = (*Postgres)(nil)

// OpenPostgres connects to the database at dsn (a postgres:// URL or key=value string, as pgx accepts), applies
// the schema migrations it lacks and starts the committer. It fails with ErrUnavailable when the database cannot
// be reached, and with ErrSchemaTooNew when a newer build migrated it.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*Postgres, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse journal DSN: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open journal: %w", classify(ctx, err))
	}
	d, err := detectDialect(ctx, pool)
	if errors.Is(err, ErrDatabaseTooOld) {
		pool.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open journal: detect database: %w", classify(ctx, err))
	}
	before, after, err := migrate(ctx, pool, d, opts, opts.Logger)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open journal: migrate schema: %w", classify(ctx, err))
	}
	opts.Logger.Debug("journal opened", slog.String("database", d.String()), slog.Int("schema_from", before),
		slog.Int("schema", after), slog.Int("max_batch", opts.MaxBatchSize))
	p := &Postgres{
		pool:    pool,
		opts:    opts,
		log:     opts.Logger,
		dialect: d,
		stopped: make(chan struct{}),
	}
	if opts.MaxBatchSize > 1 {
		p.writes = make(chan *pgWrite, opts.MaxBatchSize)
		go p.commitLoop()
	} else {
		close(p.stopped)
	}
	return p, nil
}

// Close waits for queued writes to commit, then closes the connection pool. Calling it again returns nil.
func (p *Postgres) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.writes != nil {
		close(p.writes)
	}
	p.mu.Unlock()
	<-p.stopped
	p.pool.Close()
	return nil
}

// Load implements Journal. The snapshot and the events after it are read by one statement, so they are consistent.
func (p *Postgres) Load(ctx context.Context, stream string) (Snapshot, []Event, error) {
	if err := checkSQLName("stream", stream); err != nil {
		return Snapshot{}, nil, err
	}
	var (
		snap   Snapshot
		events []Event
	)
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `
			SELECT 0, seq, type, data FROM journal_snapshots WHERE stream = $1
			UNION ALL
			SELECT 1, e.seq, e.type, e.data FROM journal_events e
			WHERE e.stream = $1 AND e.seq > coalesce((SELECT s.seq FROM journal_snapshots s WHERE s.stream = $1), 0)
			ORDER BY 1, 2`, stream)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				part int
				seq  int64
				typ  string
				data []byte
			)
			if err := rows.Scan(&part, &seq, &typ, &data); err != nil {
				return err
			}
			if part == 0 {
				snap = Snapshot{Seq: uint64(seq), Type: typ, Data: nilIfEmpty(data)}
			} else {
				events = append(events, Event{Seq: uint64(seq), Type: typ, Data: nilIfEmpty(data)})
			}
		}
		return rows.Err()
	})
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("load %s: %w", stream, err)
	}
	return snap, events, nil
}

// Events implements Journal.
func (p *Postgres) Events(ctx context.Context, stream string, after uint64, limit int) ([]Event, error) {
	if err := checkSQLName("stream", stream); err != nil {
		return nil, err
	}
	var events []Event
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx,
			"SELECT seq, type, data FROM journal_events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
			stream, toInt64(after), sqlLimit(limit))
		if err != nil {
			return err
		}
		events, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
			var (
				e   Event
				seq int64
			)
			err := row.Scan(&seq, &e.Type, &e.Data)
			e.Seq, e.Data = uint64(seq), nilIfEmpty(e.Data)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", stream, err)
	}
	return events, nil
}

// Append implements Journal.
func (p *Postgres) Append(ctx context.Context, stream string, expectedSeq uint64, events []Event, opts ...AppendOption) (uint64, error) {
	if err := checkSQLName("stream", stream); err != nil {
		return 0, err
	}
	if err := checkEvents(events); err != nil {
		return 0, err
	}
	o := ResolveOptions(opts)
	if err := checkOptions(o); err != nil {
		return 0, err
	}
	if err := checkSQLText(events, o); err != nil {
		return 0, err
	}
	if expectedSeq > math.MaxInt64-uint64(len(events)) {
		return 0, fmt.Errorf("%w: sequence number %d out of range", ErrInvalid, expectedSeq)
	}
	sql, args := appendStatement(stream, expectedSeq, events, o)
	var won bool
	err := p.write(ctx, &pgWrite{sql: sql, args: args, scan: func(row pgx.Row) error {
		var n int64
		err := row.Scan(&n)
		won = err == nil && n == 1
		return err
	}})
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", stream, err)
	}
	if !won {
		return 0, fmt.Errorf("append to %s at %d: %w", stream, expectedSeq, ErrConflict)
	}
	return expectedSeq + uint64(len(events)), nil
}

// appendStatement builds the one statement of an Append: the fence on journal_streams, then the events, the
// reminder and the feed entries, each written only if the fence held. It returns 1 row: 1 if the fence held, 0 if
// not. The statement's text depends only on which parts are present, so a handful of prepared statements cover
// every Append.
func appendStatement(stream string, expected uint64, events []Event, o AppendOptions) (string, []any) {
	var (
		a  sqlArgs
		sb strings.Builder
	)
	s := a.add(stream)
	sb.WriteString("WITH head AS (")
	switch {
	case len(events) > 0 && expected == 0:
		// A new stream: the row must not exist (an existing row always has last_seq > 0).
		fmt.Fprintf(&sb, "INSERT INTO journal_streams (stream, last_seq) VALUES (%s, %s::BIGINT) ON CONFLICT (stream) DO NOTHING RETURNING last_seq",
			s, a.add(int64(len(events))))
	case len(events) > 0:
		fmt.Fprintf(&sb, "UPDATE journal_streams SET last_seq = %s::BIGINT WHERE stream = %s AND last_seq = %s::BIGINT RETURNING last_seq",
			a.add(toInt64(expected+uint64(len(events)))), s, a.add(toInt64(expected)))
	case expected == 0:
		// Only the fence, on a stream that must not exist yet.
		fmt.Fprintf(&sb, "SELECT 0::BIGINT AS last_seq WHERE NOT EXISTS (SELECT 1 FROM journal_streams WHERE stream = %s)", s)
	default:
		// Only the fence: lock the row so that the options commit before any concurrent append to the stream.
		fmt.Fprintf(&sb, "SELECT last_seq FROM journal_streams WHERE stream = %s AND last_seq = %s::BIGINT FOR UPDATE",
			s, a.add(toInt64(expected)))
	}
	sb.WriteString(")")
	if len(events) > 0 {
		types, data := make([]string, len(events)), make([][]byte, len(events))
		for i, e := range events {
			types[i], data[i] = e.Type, notNil(e.Data)
		}
		fmt.Fprintf(&sb, `, ev AS (INSERT INTO journal_events (stream, seq, type, data)
			SELECT %s, %s::BIGINT + e.ord, e.type, e.data FROM head, unnest(%s::TEXT[], %s::BYTEA[]) WITH ORDINALITY AS e(type, data, ord))`,
			s, a.add(toInt64(expected)), a.add(types), a.add(data))
	}
	if o.Reminder != nil {
		if o.Reminder.IsZero() {
			fmt.Fprintf(&sb, ", rem AS (DELETE FROM journal_reminders WHERE stream = %s AND EXISTS (SELECT 1 FROM head))", s)
		} else {
			fmt.Fprintf(&sb, `, rem AS (INSERT INTO journal_reminders (stream, due_ns) SELECT %s, %s::BIGINT FROM head
				ON CONFLICT (stream) DO UPDATE SET due_ns = excluded.due_ns)`, s, a.add(o.Reminder.UnixNano()))
		}
	}
	if o.Expiry != nil {
		expiryCTE(&sb, &a, s, *o.Expiry)
	}
	if len(o.Feeds) > 0 {
		sb.WriteString(", ")
		feedCTEs(&sb, &a, o.Feeds, true)
	}
	sb.WriteString(" SELECT count(*) FROM head")
	return sb.String(), a
}

// feedCTEs writes the CTEs fh (the feeds' counters, incremented) and fe (the entries, numbered from the
// counters) for feeds. With afterHead, nothing is written unless the CTE head returned a row.
func feedCTEs(sb *strings.Builder, a *sqlArgs, feeds []FeedAppend, afterHead bool) {
	// One counter update per recipient (a statement cannot update a row twice), in name order so that
	// concurrent transactions lock counters in the same order.
	counts := map[string]int64{}
	for _, f := range feeds {
		counts[f.Recipient] += int64(len(f.Entries))
	}
	var recipients []string
	var ns []int64
	for _, r := range slices.Sorted(maps.Keys(counts)) {
		if counts[r] > 0 {
			recipients, ns = append(recipients, r), append(ns, counts[r])
		}
	}
	var (
		eRecipients []string
		eOrd, eN    []int64
		eTypes      []string
		eData       [][]byte
	)
	next := map[string]int64{}
	for _, f := range feeds {
		for _, e := range f.Entries {
			next[f.Recipient]++
			eRecipients = append(eRecipients, f.Recipient)
			eOrd = append(eOrd, next[f.Recipient])
			eN = append(eN, counts[f.Recipient])
			eTypes = append(eTypes, e.Type)
			eData = append(eData, notNil(e.Data))
		}
	}
	from := ""
	if afterHead {
		from = "head, "
	}
	fmt.Fprintf(sb, `fh AS (INSERT INTO journal_feeds (recipient, last_cursor)
			SELECT r.recipient, r.n FROM %sunnest(%s::TEXT[], %s::BIGINT[]) AS r(recipient, n)
			ON CONFLICT (recipient) DO UPDATE SET last_cursor = journal_feeds.last_cursor + excluded.last_cursor
			RETURNING recipient, last_cursor)
		, fe AS (INSERT INTO journal_feed_entries (recipient, pos, type, data)
			SELECT fh.recipient, fh.last_cursor - e.n + e.ord, e.type, e.data
			FROM fh JOIN unnest(%s::TEXT[], %s::BIGINT[], %s::BIGINT[], %s::TEXT[], %s::BYTEA[]) AS e(recipient, ord, n, type, data)
			ON e.recipient = fh.recipient)`,
		from, a.add(recipients), a.add(ns), a.add(eRecipients), a.add(eOrd), a.add(eN), a.add(eTypes), a.add(eData))
}

// SaveSnapshot implements Journal.
func (p *Postgres) SaveSnapshot(ctx context.Context, stream string, snap Snapshot) error {
	if err := checkSQLName("stream", stream); err != nil {
		return err
	}
	if snap.Seq == 0 || snap.Type == "" {
		return fmt.Errorf("%w: snapshot needs a sequence number and a type", ErrInvalid)
	}
	if snap.Seq > math.MaxInt64 || strings.IndexByte(snap.Type, 0) >= 0 || !utf8.ValidString(snap.Type) {
		return fmt.Errorf("%w: snapshot sequence number out of range or type not storable", ErrInvalid)
	}
	var last int64
	err := p.write(ctx, &pgWrite{
		// A snapshot never moves a stream back (the newer one stays), and is never beyond the stream's end.
		sql: `WITH head AS (SELECT last_seq FROM journal_streams WHERE stream = $1),
			snap AS (INSERT INTO journal_snapshots (stream, seq, type, data)
				SELECT $1, $2::BIGINT, $3, $4 FROM head WHERE head.last_seq >= $2::BIGINT
				ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, type = excluded.type, data = excluded.data
				WHERE journal_snapshots.seq < excluded.seq)
			SELECT coalesce((SELECT last_seq FROM head), 0)`,
		args: []any{stream, int64(snap.Seq), snap.Type, notNil(snap.Data)},
		scan: func(row pgx.Row) error { return row.Scan(&last) },
	})
	if err != nil {
		return fmt.Errorf("save snapshot of %s: %w", stream, err)
	}
	if snap.Seq > uint64(last) {
		return fmt.Errorf("%w: snapshot at %d is beyond the end of %s (%d)", ErrInvalid, snap.Seq, stream, last)
	}
	return nil
}

// Streams implements Journal.
func (p *Postgres) Streams(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if strings.IndexByte(prefix, 0) >= 0 || strings.IndexByte(after, 0) >= 0 || !utf8.ValidString(prefix) || !utf8.ValidString(after) {
		return nil, fmt.Errorf("%w: prefix and after must be UTF-8 without NUL bytes", ErrInvalid)
	}
	var names []string
	err := p.read(ctx, func(ctx context.Context) error {
		var (
			a  sqlArgs
			sb strings.Builder
		)
		pre := a.add(prefix)
		fmt.Fprintf(&sb, "SELECT stream FROM journal_streams WHERE stream >= %s AND stream > %s AND substr(stream, 1, length(%s)) = %s",
			pre, a.add(after), pre, pre)
		if end, ok := prefixEnd(prefix); ok {
			// Bounds the index scan to the prefix's range.
			fmt.Fprintf(&sb, " AND stream < %s", a.add(end))
		}
		fmt.Fprintf(&sb, " ORDER BY stream LIMIT %s", a.add(sqlLimit(limit)))
		rows, err := p.pool.Query(ctx, sb.String(), a...)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return names, nil
}

// prefixEnd returns the least string greater than every string that starts with prefix, in byte order, and false
// if there is none (the empty prefix, or one made only of the largest code point). UTF-8 byte order is code point
// order, so the successor of the last code point that can be incremented will do.
func prefixEnd(prefix string) (string, bool) {
	runes := []rune(prefix)
	for i := len(runes) - 1; i >= 0; i-- {
		r := runes[i] + 1
		if r >= 0xD800 && r <= 0xDFFF { // surrogates are not valid in UTF-8
			r = 0xE000
		}
		if r <= utf8.MaxRune {
			runes[i] = r
			return string(runes[:i+1]), true
		}
	}
	return "", false
}

// SetReminder implements Journal.
func (p *Postgres) SetReminder(ctx context.Context, stream string, due time.Time) error {
	if err := checkSQLName("stream", stream); err != nil {
		return err
	}
	if due.IsZero() {
		return fmt.Errorf("%w: zero reminder time (use DeleteReminder)", ErrInvalid)
	}
	err := p.write(ctx, &pgWrite{
		sql: `INSERT INTO journal_reminders (stream, due_ns) VALUES ($1, $2)
			ON CONFLICT (stream) DO UPDATE SET due_ns = excluded.due_ns`,
		args: []any{stream, due.UnixNano()},
	})
	if err != nil {
		return fmt.Errorf("set reminder of %s: %w", stream, err)
	}
	return nil
}

// DeleteReminder implements Journal.
func (p *Postgres) DeleteReminder(ctx context.Context, stream string) error {
	if err := checkSQLName("stream", stream); err != nil {
		return err
	}
	err := p.write(ctx, &pgWrite{sql: "DELETE FROM journal_reminders WHERE stream = $1", args: []any{stream}})
	if err != nil {
		return fmt.Errorf("delete reminder of %s: %w", stream, err)
	}
	return nil
}

// DueReminders implements Journal.
func (p *Postgres) DueReminders(ctx context.Context, now time.Time, after Reminder, limit int) ([]Reminder, error) {
	due, err := timeIndexPage(ctx, p, "journal_reminders", "due_ns", now, Expiry{Stream: after.Stream, At: after.Due},
		limit, func(stream string, at time.Time) Reminder { return Reminder{Stream: stream, Due: at} })
	if err != nil {
		return nil, fmt.Errorf("read due reminders: %w", err)
	}
	return due, nil
}

// timeIndexPage reads a page of table's (col, stream) index, col a time in nanoseconds: up to limit rows (<= 0: no
// limit) with col <= now that come after `after` in (col, stream) order (from the first for the zero Expiry). Both
// forms are range scans of the index; the row comparison is the cursor (stream sorts byte by byte on both
// databases, as in the index).
func timeIndexPage[T any](ctx context.Context, p *Postgres, table, col string, now time.Time, after Expiry, limit int,
	item func(stream string, at time.Time) T) ([]T, error) {
	sql, args := "SELECT stream, "+col+" FROM "+table+" WHERE "+col+" <= $1", []any{now.UnixNano(), sqlLimit(limit)}
	if !after.IsZero() {
		sql += " AND (" + col + ", stream) > ($3, $4)"
		args = append(args, after.At.UnixNano(), after.Stream)
	}
	sql += " ORDER BY " + col + ", stream LIMIT $2"
	var page []T
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		page, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
			var (
				stream string
				ns     int64
			)
			if err := row.Scan(&stream, &ns); err != nil {
				var zero T
				return zero, err
			}
			return item(stream, time.Unix(0, ns).UTC()), nil
		})
		return err
	})
	return page, err
}

// AppendFeed implements Journal.
func (p *Postgres) AppendFeed(ctx context.Context, recipient string, entries []FeedEntry) (uint64, error) {
	if err := checkSQLName("recipient", recipient); err != nil {
		return 0, err
	}
	if err := checkFeedEntries(entries); err != nil {
		return 0, err
	}
	feeds := []FeedAppend{{Recipient: recipient, Entries: entries}}
	if err := checkSQLText(nil, AppendOptions{Feeds: feeds}); err != nil {
		return 0, err
	}
	var last int64
	if len(entries) == 0 {
		err := p.read(ctx, func(ctx context.Context) error {
			return p.pool.QueryRow(ctx, "SELECT coalesce((SELECT last_cursor FROM journal_feeds WHERE recipient = $1), 0)", recipient).Scan(&last)
		})
		if err != nil {
			return 0, fmt.Errorf("read feed %s: %w", recipient, err)
		}
		return uint64(last), nil
	}
	var (
		a  sqlArgs
		sb strings.Builder
	)
	sb.WriteString("WITH ")
	feedCTEs(&sb, &a, feeds, false)
	sb.WriteString(" SELECT last_cursor FROM fh")
	err := p.write(ctx, &pgWrite{sql: sb.String(), args: a, scan: func(row pgx.Row) error { return row.Scan(&last) }})
	if err != nil {
		return 0, fmt.Errorf("append to feed %s: %w", recipient, err)
	}
	return uint64(last), nil
}

// ReadFeed implements Journal.
func (p *Postgres) ReadFeed(ctx context.Context, recipient string, after uint64, limit int) ([]FeedEntry, error) {
	if err := checkSQLName("recipient", recipient); err != nil {
		return nil, err
	}
	var entries []FeedEntry
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx,
			"SELECT pos, type, data FROM journal_feed_entries WHERE recipient = $1 AND pos > $2 ORDER BY pos LIMIT $3",
			recipient, toInt64(after), sqlLimit(limit))
		if err != nil {
			return err
		}
		entries, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (FeedEntry, error) {
			var (
				e   FeedEntry
				pos int64
			)
			err := row.Scan(&pos, &e.Type, &e.Data)
			e.Cursor, e.Data = uint64(pos), nilIfEmpty(e.Data)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read feed %s: %w", recipient, err)
	}
	return entries, nil
}

// read runs fn unless the journal is closed, and classifies its error.
func (p *Postgres) read(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	return classify(ctx, fn(ctx))
}

// sqlArgs collects a statement's arguments; add returns the placeholder of the one it adds.
type sqlArgs []any

func (a *sqlArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// checkSQLName is checkName plus what PostgreSQL's text type cannot hold (NUL bytes).
func checkSQLName(what, name string) error {
	if err := checkName(what, name); err != nil {
		return err
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: %s must not contain NUL bytes", ErrInvalid, what)
	}
	return nil
}

// checkSQLText refuses types that PostgreSQL's text type cannot hold (NUL bytes, invalid UTF-8).
func checkSQLText(events []Event, o AppendOptions) error {
	ok := func(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }
	for i, e := range events {
		if !ok(e.Type) {
			return fmt.Errorf("%w: event %d's type must be UTF-8 without NUL bytes", ErrInvalid, i)
		}
	}
	for _, f := range o.Feeds {
		if strings.IndexByte(f.Recipient, 0) >= 0 {
			return fmt.Errorf("%w: recipient must not contain NUL bytes", ErrInvalid)
		}
		for i, e := range f.Entries {
			if !ok(e.Type) {
				return fmt.Errorf("%w: feed entry %d's type must be UTF-8 without NUL bytes", ErrInvalid, i)
			}
		}
	}
	return nil
}

func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return int64(limit)
}

// toInt64 maps a sequence number or cursor to BIGINT; beyond its range it saturates (no row has such a number).
func toInt64(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// notNil keeps a nil payload from becoming SQL NULL.
func notNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nilIfEmpty returns payloads as Bolt does: empty is nil.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// classify wraps errors that mean the database is out of reach with ErrUnavailable. The caller's own
// cancellation stays as it is.
func classify(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// unreachable reports whether err is a connection problem rather than an answer of the server about the
// statement: no server answer at all, or one of the classes connection exception (08), insufficient resources
// (53) and operator intervention (57: shutting down, cannot connect now).
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	switch pgErr.Code[:2] {
	case "08", "53", "57":
		return true
	}
	return false
}

// rolledBack reports whether err proves that the transaction it ended committed nothing: the server answered
// with an error (which aborts the implicit transaction of a pipeline), or nothing was sent.
func rolledBack(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) || pgconn.SafeToRetry(err)
}

// retryable reports whether err is a serialization failure or a deadlock: the transaction was rolled back and
// running it again may succeed.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
