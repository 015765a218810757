package journal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema migrations: SQL files embedded in the binary, named NNNN_what.sql and applied in order, each in its own
// transaction together with its row in journal_schema_migrations (the table is prefixed so that it cannot clash
// with another tool's schema_migrations in a shared database). OpenPostgres applies the missing ones while holding
// a lock, so that nodes starting together migrate once; a database migrated by a newer build is refused.

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// MigrationLock says how OpenPostgres keeps concurrent openers from migrating at the same time.
type MigrationLock int

const (
	// MigrationLockAuto uses an advisory lock on PostgreSQL and a lock row on CockroachDB (which has no advisory
	// locks).
	MigrationLockAuto MigrationLock = iota
	// MigrationLockAdvisory uses a session-level pg_advisory_lock.
	MigrationLockAdvisory
	// MigrationLockRow uses a row in journal_schema_lock, held under a lease (see PostgresOptions). Use it behind
	// a pooler in transaction mode, where session-level advisory locks do not work.
	MigrationLockRow
)

// migrations are the embedded migrations, oldest first, numbered 1, 2, 3, ...
var migrations = mustLoadMigrations()

// PostgresSchemaVersion returns the newest journal schema version this build knows (its last migration's number).
func PostgresSchemaVersion() int { return migrations[len(migrations)-1].version }

func mustLoadMigrations() []migration {
	ms, err := loadMigrations()
	if err != nil {
		panic(err) // the embedded files are part of the build: a bad name is a build defect
	}
	return ms
}

func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	ms := make([]migration, 0, len(names))
	for i, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".sql")
		num, label, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version != i+1 {
			return nil, fmt.Errorf("journal migration %s: want a name NNNN_what.sql numbered %d", name, i+1)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: label, sql: string(body)})
	}
	if len(ms) == 0 {
		return nil, errors.New("journal: no migrations embedded")
	}
	return ms, nil
}

// dialect is the SQL database behind the DSN.
type dialect int

const (
	dialectPostgres dialect = iota
	dialectCockroach
)

func (d dialect) String() string {
	if d == dialectCockroach {
		return "cockroachdb"
	}
	return "postgresql"
}

// nameType is the column type of stream and recipient names: compared byte by byte on both databases.
// CockroachDB's STRING already is; it refuses columns with COLLATE "C".
func (d dialect) nameType() string {
	if d == dialectCockroach {
		return "STRING"
	}
	return `TEXT COLLATE "C"`
}

// detectDialect reads the server's version. A CockroachDB older than v22.1 is refused (ErrDatabaseTooOld).
func detectDialect(ctx context.Context, pool *pgxpool.Pool) (dialect, error) {
	var version string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return 0, err
	}
	return parseVersion(version)
}

// cockroachVersion matches the release in CockroachDB's version(), e.g. "CockroachDB CCL v23.2.4 (x86_64-...)".
var cockroachVersion = regexp.MustCompile(`CockroachDB \S+ v(\d+)\.(\d+)`)

// parseVersion tells the dialect from the answer of SELECT version(). The group commit needs CockroachDB v22.1 or
// newer: older releases commit each statement of a pipeline on its own instead of running the pipeline up to
// Sync as one implicit transaction (cockroachdb/cockroach#74242), so a batch that failed half-way would be run
// again write by write and an append that had committed would come back as a conflict.
func parseVersion(version string) (dialect, error) {
	if !strings.Contains(version, "CockroachDB") {
		return dialectPostgres, nil
	}
	m := cockroachVersion.FindStringSubmatch(version)
	if m == nil {
		return dialectCockroach, fmt.Errorf("%w: cannot read the release of %q", ErrDatabaseTooOld, version)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < 22 || major == 22 && minor < 1 {
		return dialectCockroach, fmt.Errorf("%w: CockroachDB v%d.%d; the journal needs v22.1 or newer", ErrDatabaseTooOld, major, minor)
	}
	return dialectCockroach, nil
}

// migrationLockKey is the advisory lock key: a hash of a fixed name, the same in every build.
var migrationLockKey = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("platter journal schema migrations"))
	return int64(h.Sum64())
}()

// migrate applies the migrations the database lacks. It returns the schema version found before and after.
func migrate(ctx context.Context, pool *pgxpool.Pool, d dialect, opts PostgresOptions, log *slog.Logger) (before, after int, err error) {
	ms := migrations
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()

	mode := opts.MigrationLock
	if mode == MigrationLockAuto {
		mode = MigrationLockAdvisory
		if d == dialectCockroach {
			mode = MigrationLockRow
		}
	}
	var unlock func()
	switch mode {
	case MigrationLockRow:
		// The migrations run under ctx from here: it ends if the lease is lost, rolling back the one running.
		ctx, unlock, err = lockRow(ctx, conn, pool, opts)
	default:
		unlock, err = lockAdvisory(ctx, conn)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("lock schema: %w", err)
	}
	defer unlock()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS journal_schema_migrations (
		version    INT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
	)`); err != nil {
		return 0, 0, fmt.Errorf("create journal_schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM journal_schema_migrations").Scan(&current); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	before = current
	latest := ms[len(ms)-1].version
	if current > latest {
		return before, current, fmt.Errorf("%w: the database has journal schema version %d, this build knows up to %d: run a newer build",
			ErrSchemaTooNew, current, latest)
	}
	for _, m := range ms[current:] {
		start := time.Now()
		tx, err := conn.Begin(ctx)
		if err != nil {
			return before, current, fmt.Errorf("apply migration %d: %w", m.version, err)
		}
		body := strings.ReplaceAll(m.sql, "{{name}}", d.nameType())
		if _, err := tx.Exec(ctx, body); err != nil { // no arguments: simple protocol, several statements
			_ = tx.Rollback(ctx)
			return before, current, fmt.Errorf("apply migration %d (%s): %w", m.version, m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO journal_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			_ = tx.Rollback(ctx)
			return before, current, fmt.Errorf("record migration %d: %w", m.version, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return before, current, fmt.Errorf("commit migration %d: %w", m.version, err)
		}
		log.Info("journal schema migrated", slog.Int("version", m.version), slog.String("migration", m.name),
			slog.Duration("took", time.Since(start)))
		current = m.version
	}
	return before, current, nil
}

// lockAdvisory takes the session-level advisory lock on conn, waiting as long as ctx allows.
func lockAdvisory(ctx context.Context, conn *pgxpool.Conn) (func(), error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil {
			// Ending the session releases the lock: close the connection (the pool drops closed connections).
			_ = conn.Conn().Close(ctx)
		}
	}, nil
}

// errLockLost ends the context of a migration whose lock row lease could not be renewed in time.
var errLockLost = errors.New("journal_schema_lock: lease lost while migrating")

// lockRow takes the lock row of journal_schema_lock: one row, owned by whoever inserted it or found it expired.
// The lease bounds how long a crashed migrator blocks the others. While held, the lease is renewed every third of
// it (through pool, on a second connection: conn runs the migrations), so a migration longer than the lease keeps
// the lock. The returned context ends, with errLockLost as its cause, when the row is no longer ours or a renewal
// did not succeed before the lease ran out: another opener may then be migrating, and the migration in progress
// must not commit.
func lockRow(ctx context.Context, conn *pgxpool.Conn, pool *pgxpool.Pool, opts PostgresOptions) (context.Context, func(), error) {
	if err := createLockTable(ctx, conn); err != nil {
		return nil, nil, err
	}
	owner := uuid.NewString()
	tick := time.NewTicker(opts.MigrationLockPoll)
	defer tick.Stop()
	for {
		now := time.Now()
		tag, err := conn.Exec(ctx, `INSERT INTO journal_schema_lock (id, owner, expires_ns) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_ns = excluded.expires_ns
			WHERE journal_schema_lock.expires_ns < $3`,
			owner, now.Add(opts.MigrationLockLease).UnixNano(), now.UnixNano())
		if err != nil && !retryable(err) {
			return nil, nil, err
		}
		if err == nil && tag.RowsAffected() == 1 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for journal_schema_lock: %w", ctx.Err())
		case <-tick.C:
		}
	}
	held, cancel := context.WithCancelCause(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		renewLockRow(held, cancel, pool, owner, time.Now().Add(opts.MigrationLockLease), opts.MigrationLockLease)
	}()
	return held, func() {
		cancel(nil)
		<-renewed
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, "DELETE FROM journal_schema_lock WHERE id = 1 AND owner = $1", owner)
	}, nil
}

// renewLockRow extends owner's lease every third of it until ctx ends; it cancels ctx with errLockLost when the
// row is not owner's any more or expires passes without a successful renewal.
func renewLockRow(ctx context.Context, cancel context.CancelCauseFunc, pool *pgxpool.Pool, owner string, expires time.Time, lease time.Duration) {
	tick := time.NewTicker(lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		next := time.Now().Add(lease)
		rctx, rcancel := context.WithDeadline(ctx, expires)
		// The row still ours means nobody took it since, even if the lease ran out meanwhile.
		tag, err := pool.Exec(rctx, "UPDATE journal_schema_lock SET expires_ns = $2 WHERE id = 1 AND owner = $1", owner, next.UnixNano())
		rcancel()
		switch {
		case err == nil && tag.RowsAffected() == 1:
			expires = next
		case err == nil || !time.Now().Before(expires):
			cancel(errLockLost)
			return
		}
	}
}

// createLockTable creates journal_schema_lock. Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL
// (duplicate type or table, or a unique violation in its catalog) when another opener creates the table at the
// same moment: then the table exists, and trying again succeeds.
func createLockTable(ctx context.Context, conn *pgxpool.Conn) error {
	var err error
	for range 5 {
		_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS journal_schema_lock (
			id         INT PRIMARY KEY,
			owner      TEXT NOT NULL,
			expires_ns BIGINT NOT NULL
		)`)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || !(slices.Contains([]string{"23505", "42710", "42P07"}, pgErr.Code) || retryable(err)) {
			return err
		}
	}
	return err
}
