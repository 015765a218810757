package journal_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/actors/journal/journaltest"
)

// TestCockroachConformance runs the PostgreSQL backend against CockroachDB (v22.1 or newer; see journal.Postgres):
// a private `cockroach start-single-node --insecure` on free loopback ports, a fresh database per case. It runs
// the dialect branch (STRING names), the migrations under the lock row (MigrationLockAuto picks it there) and the
// group commit of the shared conformance suite. It needs a cockroach binary (PLATTER_COCKROACH_BIN, else
// cockroach on PATH) and is skipped without one: CI runs the journal against PostgreSQL only.
func TestCockroachConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CockroachDB server")
	}
	bin := os.Getenv("PLATTER_COCKROACH_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("cockroach"); err != nil {
			t.Skip("CockroachDB conformance not run: no cockroach binary (set PLATTER_COCKROACH_BIN or put cockroach on PATH)")
		}
	}
	base := startCockroach(t, bin)
	var databases atomic.Int64
	newDatabase := func(tb testing.TB) string {
		tb.Helper()
		name := fmt.Sprintf("journal_%d", databases.Add(1))
		conn, err := pgx.Connect(context.Background(), base+"/defaultdb?sslmode=disable")
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
			tb.Fatal(err)
		}
		return base + "/" + name + "?sslmode=disable"
	}

	t.Run("conformance", func(t *testing.T) {
		journaltest.Run(t, func(tb testing.TB) journaltest.Opener {
			dsn := newDatabase(tb)
			return func() (journal.Journal, error) {
				return journal.OpenPostgres(context.Background(), dsn, journal.PostgresOptions{Logger: quiet})
			}
		})
	})
	t.Run("small batches", func(t *testing.T) {
		journaltest.Run(t, func(tb testing.TB) journaltest.Opener {
			dsn := newDatabase(tb)
			return func() (journal.Journal, error) {
				return journal.OpenPostgres(context.Background(), dsn,
					journal.PostgresOptions{MaxBatchSize: 3, MaxBatchDelay: 200 * time.Microsecond, Logger: quiet})
			}
		})
	})
	t.Run("concurrent opens", func(t *testing.T) {
		dsn := newDatabase(t)
		openConcurrently(t, dsn, 4, journal.PostgresOptions{MigrationLockPoll: 5 * time.Millisecond, Logger: quiet})
		checkNoLockRows(t, dsn) // the lock row is CockroachDB's migration lock
	})
}

// startCockroach starts a single-node insecure CockroachDB on free loopback ports, stopped when t ends, and
// returns its base URL (postgresql://root@host:port).
func startCockroach(t *testing.T, bin string) string {
	t.Helper()
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	sqlAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(free()))
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "cockroach.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "start-single-node", "--insecure", "--store=path="+filepath.Join(dir, "store"),
		"--listen-addr="+sqlAddr, "--http-addr="+net.JoinHostPort("127.0.0.1", strconv.Itoa(free())),
		"--log-dir="+filepath.Join(dir, "logs"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "cockroach.log"))
			t.Logf("cockroach output:\n%s", b)
		}
	})
	base := "postgresql://root@" + sqlAddr
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited while starting: %v", bin, err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, base+"/defaultdb?sslmode=disable")
		if err == nil {
			var version string
			err = conn.QueryRow(ctx, "SELECT version()").Scan(&version)
			conn.Close(ctx)
			cancel()
			if err == nil {
				t.Logf("CockroachDB: %s", version)
				return base
			}
		} else {
			cancel()
		}
		if time.Now().After(deadline) {
			t.Fatalf("CockroachDB did not accept SQL connections within 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
