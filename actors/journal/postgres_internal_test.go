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
