package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/platterhq/platter/actors/journal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The shared server hands out separate databases, with fsync on, listening on 127.0.0.1 only.
func TestSharedServerDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if a == b {
		t.Fatalf("two tests got the same database %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var fsync, listen, db string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('listen_addresses'), current_database()").Scan(&fsync, &listen, &db); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" || listen != "127.0.0.1" || db == "" {
		t.Fatalf("fsync=%s listen_addresses=%s database=%s", fsync, listen, db)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatalf("databases are not separate: %v", err)
	}
}

// A server of the test's own is gone, directory and all, once stopped (with or without the shutdown checkpoint).
func TestStartStop(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(*pgtest.Server) error
	}{
		{"Stop", (*pgtest.Server).Stop},
		{"Discard", (*pgtest.Server).Discard},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := pgtest.Start(t, pgtest.Options{})
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, s.DSN("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.Close(ctx)
			if err := c.stop(s); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
				t.Fatalf("server directory still there after %s: %v", c.name, err)
			}
			if conn, err := pgx.Connect(ctx, s.DSN("postgres")); err == nil {
				_ = conn.Close(ctx)
				t.Fatalf("connected to a server after %s", c.name)
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("Stop after %s: %v", c.name, err)
			}
		})
	}
}

func TestFindBinDirRefusesEmptyDir(t *testing.T) {
	if _, err := pgtest.FindBinDir(t.TempDir()); err == nil {
		t.Fatal("found binaries in an empty directory")
	}
}
