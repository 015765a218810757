// Package journaltest is the conformance suite every journal.Journal backend must pass, plus shared benchmarks.
//
// A backend's test calls Run with a function that prepares a fresh, empty store and returns an Opener for it:
//
//	func TestConformance(t *testing.T) {
//		journaltest.Run(t, func(tb testing.TB) journaltest.Opener {
//			path := filepath.Join(tb.TempDir(), "journal.db")
//			return func() (journal.Journal, error) { return journal.OpenBolt(path, journal.BoltOptions{}) }
//		})
//	}
//
// Times handed to backends are whole milliseconds, so a backend needs at least millisecond precision.
//
// The benchmarks take the same function: Bench (one event per append; one writer, then many) and BenchWorkflow
// (appends as actors make them, with reminder moves and feed entries, by 4 and by 128 writers; it reports the
// process's CPU time per event).
package journaltest
