package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/platterhq/platter/actors/journal/pgtest"
)

// A write that the server refuses inside a shared commit fails alone: the batch is rolled back (the failing
// write's partial change too) and the others are committed one by one.
func TestPostgresBatchIsolatesAFailingWrite(t *testing.T) {
	const writers = 8
	// A long linger gathers every write below into one batch, committed as soon as all have arrived.
	j, err := OpenPostgres(context.Background(), pgtest.NewDatabase(t),
		PostgresOptions{MaxBatchSize: writers + 1, MaxBatchDelay: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		runs atomic.Int32
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
		// A partial change, then a CHECK violation (last_seq > 0) at run time.
		failing = j.write(ctx, &pgWrite{
			sql: `WITH partial AS (INSERT INTO journal_reminders (stream, due_ns) VALUES ('partial', 1))
				INSERT INTO journal_streams (stream, last_seq) VALUES ('bad', 0) RETURNING 1`,
			scan: func(row pgx.Row) error {
				runs.Add(1)
				var one int
				return row.Scan(&one)
			},
		})
	}()
	wg.Wait()
	var pgErr *pgconn.PgError
	if !errors.As(failing, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("failing write returned %v, want a check violation", failing)
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
	if rs, err := j.DueReminders(ctx, time.Unix(0, 10), Reminder{}, 0); err != nil || len(rs) != 0 {
		t.Fatalf("the failing write's partial change was committed: %v, %v", rs, err)
	}
	if n := runs.Load(); n < 2 {
		t.Fatalf("the failing write ran %d times; it should have shared a batch, then run alone", n)
	}
}

// Serialization failures and deadlocks are retried up to RetryLimit; other errors are not.
func TestPostgresRetries(t *testing.T) {
	p := &Postgres{opts: PostgresOptions{RetryLimit: 3, RetryBackoff: time.Microsecond, WriteTimeout: time.Second}.withDefaults()}
	p.log = slog.New(slog.DiscardHandler)
	cases := []struct {
		name      string
		err       error
		failures  int
		wantCalls int
		wantErr   bool
	}{
		{"serialization failure then success", &pgconn.PgError{Code: "40001"}, 2, 3, false},
		{"deadlock then success", &pgconn.PgError{Code: "40P01"}, 1, 2, false},
		{"serialization failures beyond the limit", &pgconn.PgError{Code: "40001"}, 10, 4, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, 1, 1, true},
		{"connection error", errors.New("connection reset"), 1, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := p.withRetries(func(context.Context) error {
				calls++
				if calls <= c.failures {
					return c.err
				}
				return nil
			})
			if calls != c.wantCalls || (err != nil) != c.wantErr {
				t.Fatalf("calls = %d, err = %v; want %d calls, error %v", calls, err, c.wantCalls, c.wantErr)
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct {
		prefix, end string
		ok          bool
	}{
		{"", "", false},
		{"order/", "order0", true},
		{"a\U0010FFFF", "b", true},
		{"\U0010FFFF\U0010FFFF", "", false},
		{"a\uD7FF", "a\uE000", true}, // skips the surrogates
		{"é", "ê", true},
	}
	for _, c := range cases {
		end, ok := prefixEnd(c.prefix)
		if end != c.end || ok != c.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", c.prefix, end, ok, c.end, c.ok)
		}
	}
}

// The dialect and release come from SELECT version(); a CockroachDB older than v22.1 is refused.
func TestParseVersion(t *testing.T) {
	tests := []struct {
		version string
		want    dialect
		tooOld  bool
	}{
		{"PostgreSQL 16.4 (Debian 16.4-1.pgdg120+1) on x86_64-pc-linux-gnu", dialectPostgres, false},
		{"CockroachDB CCL v23.2.4 (x86_64-pc-linux-gnu, built 2024/04/08 21:17:51, go1.21.9 X:nocoverageredesign)", dialectCockroach, false},
		{"CockroachDB OSS v22.1.0 (x86_64-unknown-linux-gnu, built 2022/05/23 16:27:47, go1.17.6)", dialectCockroach, false},
		{"CockroachDB CCL v24.1.0 (aarch64-unknown-linux-gnu, built 2024/05/15)", dialectCockroach, false},
		{"CockroachDB CCL v21.2.17 (x86_64-unknown-linux-gnu, built 2022/11/07)", dialectCockroach, true},
		{"CockroachDB OSS v20.2.19 (x86_64-unknown-linux-gnu)", dialectCockroach, true},
		{"CockroachDB (unknown release)", dialectCockroach, true},
	}
	for _, tt := range tests {
		d, err := parseVersion(tt.version)
		if d != tt.want || errors.Is(err, ErrDatabaseTooOld) != tt.tooOld || (err != nil) != tt.tooOld {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, too old %v", tt.version, d, err, tt.want, tt.tooOld)
		}
	}
}

// The lock row's lease is renewed while its holder migrates, so another opener waits beyond the lease; when the
// row is taken from the holder, the holder's context ends with errLockLost.
func TestLockRowLeaseRenewed(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// A lease of 1 s leaves a renewal (every third of it) 600 ms of slack on a loaded CI box under -race.
	opts := PostgresOptions{MigrationLockLease: time.Second, MigrationLockPoll: 10 * time.Millisecond}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	held, unlock, err := lockRow(ctx, conn, pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	// Another opener waits for three leases and does not get the lock.
	other, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	wctx, cancel := context.WithTimeout(ctx, 3*opts.MigrationLockLease)
	defer cancel()
	if _, unlock2, err := lockRow(wctx, other, pool, opts); err == nil {
		unlock2()
		t.Fatal("a second opener took the lock row while its holder was migrating: the lease was not renewed")
	}
	if held.Err() != nil {
		t.Fatalf("the holder's context ended while it held the lock: %v", context.Cause(held))
	}

	// The row taken away (as after a lapsed lease): the holder learns it at its next renewal.
	if _, err := pool.Exec(ctx, "UPDATE journal_schema_lock SET owner = 'someone else' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		if cause := context.Cause(held); !errors.Is(cause, errLockLost) {
			t.Fatalf("the holder's context ended with %v, want errLockLost", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the holder did not notice within 10 s that its lock row was taken")
	}
}
