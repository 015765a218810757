package journal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/actors/journal/journaltest"
)

func boltStore(opts journal.BoltOptions) journaltest.NewStore {
	return func(tb testing.TB) journaltest.Opener {
		path := filepath.Join(tb.TempDir(), "journal.db")
		return func() (journal.Journal, error) { return journal.OpenBolt(path, opts) }
	}
}

func TestBoltConformance(t *testing.T) {
	journaltest.Run(t, boltStore(journal.BoltOptions{}))
}

// The suite again with a linger and tiny batches, so that batch boundaries fall everywhere.
func TestBoltConformanceSmallBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	journaltest.Run(t, boltStore(journal.BoltOptions{MaxBatchSize: 3, MaxBatchDelay: 200 * time.Microsecond}))
}

func BenchmarkBolt(b *testing.B) {
	journaltest.Bench(b, boltStore(journal.BoltOptions{}))
}

func BenchmarkBoltLinger1ms(b *testing.B) {
	journaltest.Bench(b, boltStore(journal.BoltOptions{MaxBatchDelay: time.Millisecond}))
}

func TestBoltLockedByAnotherOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	first, err := journal.OpenBolt(path, journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// flock locks belong to an open file description, so a second open in this process conflicts like another
	// process would.
	_, err = journal.OpenBolt(path, journal.BoltOptions{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, journal.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name the file", err)
	}
}

func TestBoltUnusablePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := journal.OpenBolt(filepath.Join(file, "journal.db"), journal.BoltOptions{}); err == nil {
		t.Fatal("open under a regular file succeeded")
	}
	if os.Geteuid() == 0 {
		return // root writes anywhere; the permission case cannot be shown
	}
	ro := filepath.Join(dir, "read-only")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := journal.OpenBolt(filepath.Join(ro, "journal.db"), journal.BoltOptions{})
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("open in a read-only directory: %v, want a permission error", err)
	}
}

func TestBoltRefusesUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.OpenBolt(path, journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), "order/1", 0, []journal.Event{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := journal.RewriteFormatForTest(path, "99"); err != nil {
		t.Fatal(err)
	}
	if _, err := journal.OpenBolt(path, journal.BoltOptions{}); err == nil || !strings.Contains(err.Error(), "unsupported journal format") {
		t.Fatalf("open of an unknown format: %v", err)
	}
}

func BenchmarkBoltWorkflow(b *testing.B) {
	journaltest.BenchWorkflow(b, boltStore(journal.BoltOptions{}))
}

// The committer without its linger, for comparison with BenchmarkBoltWorkflow.
func BenchmarkBoltWorkflowNoLinger(b *testing.B) {
	journaltest.BenchWorkflow(b, boltStore(journal.BoltOptions{MaxBatchDelay: -1}))
}
