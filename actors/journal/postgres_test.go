package journal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/actors/journal/journaltest"
	"github.com/platterhq/platter/actors/journal/pgtest"
)

// The package's tests share one PostgreSQL server (started on first use); each test gets its own database.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var quiet = slog.New(slog.DiscardHandler)

func pgStore(opts journal.PostgresOptions) journaltest.NewStore {
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	return func(tb testing.TB) journaltest.Opener {
		dsn := pgtest.NewDatabase(tb)
		return func() (journal.Journal, error) { return journal.OpenPostgres(context.Background(), dsn, opts) }
	}
}

func openPostgres(t *testing.T, dsn string, opts journal.PostgresOptions) *journal.Postgres {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	j, err := journal.OpenPostgres(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestPostgresConformance(t *testing.T) {
	journaltest.Run(t, pgStore(journal.PostgresOptions{}))
}

// The suite again with a linger and tiny batches, so that batch boundaries fall everywhere.
func TestPostgresConformanceSmallBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	journaltest.Run(t, pgStore(journal.PostgresOptions{MaxBatchSize: 3, MaxBatchDelay: 200 * time.Microsecond}))
}

// The suite without the committer: every write is its own transaction, concurrently on the pool.
func TestPostgresConformanceUnbatched(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	journaltest.Run(t, pgStore(journal.PostgresOptions{MaxBatchSize: 1}))
}

func BenchmarkPostgres(b *testing.B) {
	journaltest.Bench(b, pgStore(journal.PostgresOptions{}))
}

func BenchmarkPostgresUnbatched(b *testing.B) {
	journaltest.Bench(b, pgStore(journal.PostgresOptions{MaxBatchSize: 1}))
}

func schemaVersions(t *testing.T, dsn string) []int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT version FROM journal_schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

func allVersions() []int {
	var vs []int
	for v := 1; v <= journal.PostgresSchemaVersion(); v++ {
		vs = append(vs, v)
	}
	return vs
}

// Reopening applies nothing twice and keeps the data.
func TestPostgresMigrationsIdempotentOnReopen(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	j := openPostgres(t, dsn, journal.PostgresOptions{})
	if _, err := j.Append(ctx, "order/1", 0, []journal.Event{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		j = openPostgres(t, dsn, journal.PostgresOptions{})
		if _, events, err := j.Load(ctx, "order/1"); err != nil || len(events) != 1 {
			t.Fatalf("after reopen: %d events, %v", len(events), err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := schemaVersions(t, dsn); !slices.Equal(got, allVersions()) {
		t.Fatalf("schema versions %v, want %v", got, allVersions())
	}
}

// Nodes starting together on an empty database migrate it once, with either lock.
func TestPostgresConcurrentOpens(t *testing.T) {
	for _, lock := range []journal.MigrationLock{journal.MigrationLockAuto, journal.MigrationLockRow} {
		t.Run(fmt.Sprintf("lock%d", lock), func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			journals := openConcurrently(t, dsn, 6, journal.PostgresOptions{MigrationLock: lock, MigrationLockPoll: 5 * time.Millisecond, Logger: quiet})
			for i, j := range journals {
				if _, err := j.Append(context.Background(), fmt.Sprintf("order/%d", i), 0, []journal.Event{{Type: "E"}}); err != nil {
					t.Fatalf("append through opener %d: %v", i, err)
				}
			}
			if lock == journal.MigrationLockRow {
				checkNoLockRows(t, dsn)
			}
		})
	}
}

// openConcurrently opens n journals on dsn at the same moment (a node cluster starting together on an empty
// database), fails the test if any open fails, closes them when the test ends, and checks the schema was migrated
// exactly once to the latest version.
func openConcurrently(t *testing.T, dsn string, n int, opts journal.PostgresOptions) []*journal.Postgres {
	t.Helper()
	var (
		wg       sync.WaitGroup
		journals = make([]*journal.Postgres, n)
		errs     = make([]error, n)
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			journals[i], errs[i] = journal.OpenPostgres(context.Background(), dsn, opts)
		}()
	}
	close(start)
	wg.Wait()
	for _, j := range journals {
		if j != nil {
			t.Cleanup(func() { j.Close() }) // also when another opener failed
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("opener %d: %v", i, err)
		}
	}
	if got := schemaVersions(t, dsn); !slices.Equal(got, allVersions()) {
		t.Fatalf("schema versions %v, want %v", got, allVersions())
	}
	return journals
}

// checkNoLockRows fails the test if a migration left its lock row (the row lock, CockroachDB's migration lock).
func checkNoLockRows(t *testing.T, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var held int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM journal_schema_lock").Scan(&held); err != nil || held != 0 {
		t.Fatalf("lock rows left behind: %d, %v", held, err)
	}
}

// A database migrated by a newer build is refused, with a message that says what to do.
func TestPostgresRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	j := openPostgres(t, dsn, journal.PostgresOptions{})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO journal_schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	_, err = journal.OpenPostgres(ctx, dsn, journal.PostgresOptions{Logger: quiet})
	if !errors.Is(err, journal.ErrSchemaTooNew) || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew naming version 9999", err)
	}
}

// Two pools (as two nodes would have) race on one stream and one feed: the fence lets exactly one writer win each
// round, and feed cursors stay dense.
func TestPostgresTwoPoolsFenced(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openPostgres(t, dsn, journal.PostgresOptions{})
	b := openPostgres(t, dsn, journal.PostgresOptions{MaxBatchDelay: 100 * time.Microsecond})
	nodes := []*journal.Postgres{a, b}
	ctx := context.Background()
	const rounds, racersPerNode = 30, 4
	for round := range rounds {
		var (
			wg    sync.WaitGroup
			wins  atomic.Int32
			start = make(chan struct{})
		)
		for n, j := range nodes {
			for r := range racersPerNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := j.Append(ctx, "order/contested", uint64(round), []journal.Event{{Type: "Won", Data: fmt.Appendf(nil, "%d/%d", n, r)}},
						journal.WithFeed("customer/1", journal.FeedEntry{Type: "F", Data: fmt.Appendf(nil, "%d-%d-%d", round, n, r)}))
					switch {
					case err == nil:
						wins.Add(1)
					case !errors.Is(err, journal.ErrConflict):
						t.Errorf("node %d racer %d round %d: %v", n, r, round, err)
					}
					// Feed writes of both nodes interleave too.
					if _, err := j.AppendFeed(ctx, "restaurant/1", []journal.FeedEntry{{Type: "N"}}); err != nil {
						t.Errorf("append feed: %v", err)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, got)
		}
	}
	for _, j := range nodes {
		_, events, err := j.Load(ctx, "order/contested")
		if err != nil || len(events) != rounds {
			t.Fatalf("stream has %d events, %v; want %d", len(events), err, rounds)
		}
		for i, e := range events {
			if e.Seq != uint64(i+1) {
				t.Fatalf("event %d has seq %d", i, e.Seq)
			}
		}
	}
	for recipient, want := range map[string]int{"customer/1": rounds, "restaurant/1": rounds * racersPerNode * len(nodes)} {
		entries, err := b.ReadFeed(ctx, recipient, 0, 0)
		if err != nil || len(entries) != want {
			t.Fatalf("feed %s has %d entries, %v; want %d", recipient, len(entries), err, want)
		}
		for i, e := range entries {
			if e.Cursor != uint64(i+1) {
				t.Fatalf("feed %s entry %d has cursor %d: cursors must be dense", recipient, i, e.Cursor)
			}
		}
	}
}

// proxy forwards TCP connections to a server and can cut them all (and refuse new ones) to simulate the database
// going away, then come back on the same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
		}
	}()
}

// cut closes the listener and every forwarded connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() { p.listen(p.addr) }

// When the database goes away, calls fail quickly with ErrUnavailable (not a conflict, not a hang), and the
// journal works again once it is back.
func TestPostgresConnectionLoss(t *testing.T) {
	server := pgtest.Shared(t)
	dsn := pgtest.NewDatabase(t)
	px := newProxy(t, fmt.Sprintf("127.0.0.1:%d", server.Port()))
	viaProxy := strings.Replace(dsn, fmt.Sprintf("127.0.0.1:%d", server.Port()), px.addr, 1)
	ctx := context.Background()
	// A long write timeout: the calls below must fail because the connection is refused, not because they waited.
	j := openPostgres(t, viaProxy, journal.PostgresOptions{WriteTimeout: time.Minute})
	if _, err := j.Append(ctx, "order/1", 0, []journal.Event{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}

	px.cut()
	start := time.Now()
	if _, err := j.Append(ctx, "order/1", 1, []journal.Event{{Type: "E"}}); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("append with the database gone: %v, want ErrUnavailable", err)
	}
	if _, _, err := j.Load(ctx, "order/1"); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("load with the database gone: %v, want ErrUnavailable", err)
	}
	if _, err := j.ReadFeed(ctx, "customer/1", 0, 0); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("read feed with the database gone: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("failing took %v: the calls waited for the write timeout instead of failing on the refused connection", took)
	}
	if _, err := journal.OpenPostgres(ctx, viaProxy, journal.PostgresOptions{Logger: quiet}); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("open with the database gone: %v, want ErrUnavailable", err)
	}

	px.restore()
	_, events, err := j.Load(ctx, "order/1")
	if err != nil {
		t.Fatalf("load after the database came back: %v", err)
	}
	seq := journal.LastSeq(journal.Snapshot{}, events)
	if _, err := j.Append(ctx, "order/1", seq, []journal.Event{{Type: "E"}}); err != nil {
		t.Fatalf("append after the database came back: %v", err)
	}
}

// Names PostgreSQL cannot store are refused as invalid, not sent.
func TestPostgresRefusesNUL(t *testing.T) {
	j := openPostgres(t, pgtest.NewDatabase(t), journal.PostgresOptions{})
	ctx := context.Background()
	calls := map[string]error{}
	_, calls["stream"] = j.Append(ctx, "order/\x00", 0, []journal.Event{{Type: "E"}})
	_, calls["type"] = j.Append(ctx, "order/1", 0, []journal.Event{{Type: "E\x00"}})
	_, calls["recipient"] = j.AppendFeed(ctx, "customer/\x00", []journal.FeedEntry{{Type: "F"}})
	_, calls["prefix"] = j.Streams(ctx, "order/\x00", "", 0)
	for name, err := range calls {
		if !errors.Is(err, journal.ErrInvalid) {
			t.Errorf("NUL in %s: %v, want ErrInvalid", name, err)
		}
	}
}

// Streams lists in byte order and bounds prefixes correctly beyond ASCII.
func TestPostgresStreamsByteOrder(t *testing.T) {
	j := openPostgres(t, pgtest.NewDatabase(t), journal.PostgresOptions{})
	ctx := context.Background()
	names := []string{"a/Z", "a/a", "a/é", "a/\U0010FFFF", "a/\U0010FFFFx", "b/1", "a\U0010FFFF/1", "A/1"}
	for _, n := range names {
		if _, err := j.Append(ctx, n, 0, []journal.Event{{Type: "E"}}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"A/1", "a/Z", "a/a", "a/é", "a/\U0010FFFF", "a/\U0010FFFFx", "a\U0010FFFF/1", "b/1"}},
		{"a/", []string{"a/Z", "a/a", "a/é", "a/\U0010FFFF", "a/\U0010FFFFx"}},
		{"a/\U0010FFFF", []string{"a/\U0010FFFF", "a/\U0010FFFFx"}},
		{"a\U0010FFFF", []string{"a\U0010FFFF/1"}},
	}
	for _, c := range cases {
		got, err := j.Streams(ctx, c.prefix, "", 0)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Streams(%q) = %q, %v; want %q", c.prefix, got, err, c.want)
		}
	}
}

// childDSN is set in the environment of the writer process that TestPostgresTwoProcessesFenced starts.
const childDSN = "JOURNAL_PG_CHILD_DSN"

// contend appends to one stream as an actor would (load, append at the last sequence seen) until the stream has
// total events, and returns how many of its appends won. Every event names its writer.
func contend(ctx context.Context, j journal.Journal, writer string, total int) (int, error) {
	wins := 0
	for {
		snap, events, err := j.Load(ctx, "order/contested")
		if err != nil {
			return wins, err
		}
		seq := journal.LastSeq(snap, events)
		if seq >= uint64(total) {
			return wins, nil
		}
		_, err = j.Append(ctx, "order/contested", seq, []journal.Event{{Type: "Won", Data: []byte(writer)}})
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, journal.ErrConflict):
			return wins, err
		}
	}
}

// Two processes (this one and a child running TestPostgresChildWriter) race on one stream: every event is written
// once, by the writer whose append won, with no gap and no overwrite.
func TestPostgresTwoProcessesFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dsn := pgtest.NewDatabase(t)
	j := openPostgres(t, dsn, journal.PostgresOptions{})
	const total = 300
	ctx := context.Background()
	child := exec.Command(os.Args[0], "-test.run=^TestPostgresChildWriter$", "-test.count=1")
	child.Env = append(os.Environ(), childDSN+"="+dsn, fmt.Sprintf("JOURNAL_PG_CHILD_TOTAL=%d", total))
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	parentWins, err := contend(ctx, j, "parent", total)
	if err != nil {
		t.Fatalf("parent: %v", err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("child writer: %v\n%s", err, out.String())
	}
	var childWins int
	if _, err := fmt.Sscanf(out.String()[strings.Index(out.String(), "wins="):], "wins=%d", &childWins); err != nil {
		t.Fatalf("child output %q: %v", out.String(), err)
	}
	_, events, err := j.Load(ctx, "order/contested")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != total || parentWins+childWins != total {
		t.Fatalf("%d events; parent won %d, child %d; want %d in all", len(events), parentWins, childWins, total)
	}
	byWriter := map[string]int{}
	for i, e := range events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		byWriter[string(e.Data)]++
	}
	if byWriter["parent"] != parentWins || byWriter["child"] != childWins {
		t.Fatalf("events by writer %v; parent won %d, child %d", byWriter, parentWins, childWins)
	}
	t.Logf("parent won %d appends, child %d", parentWins, childWins)
}

// TestPostgresChildWriter is the other process of TestPostgresTwoProcessesFenced; it does nothing on its own.
func TestPostgresChildWriter(t *testing.T) {
	dsn := os.Getenv(childDSN)
	if dsn == "" {
		t.Skip("runs as the child of TestPostgresTwoProcessesFenced")
	}
	var total int
	fmt.Sscan(os.Getenv("JOURNAL_PG_CHILD_TOTAL"), &total)
	j := openPostgres(t, dsn, journal.PostgresOptions{})
	wins, err := contend(context.Background(), j, "child", total)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("wins=%d\n", wins)
}
