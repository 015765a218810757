// Package pgtest starts throwaway PostgreSQL servers for tests, from the binaries of the machine's PostgreSQL
// package (initdb and postgres under /usr/lib/postgresql/<version>/bin). Nothing is installed or downloaded; a
// server lives in a temporary directory, listens only on 127.0.0.1 (and on a unix socket in that directory), on a
// free port, with fsync on (benchmarks measure durable commits) and small shared buffers.
//
// # One server per test binary, one database per test
//
// Starting a server takes about a second (initdb); creating a database about 0.2 s. So a package's tests share
// one server, started on first use, and each test gets its own database:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t) // "postgres://postgres@127.0.0.1:PORT/test_3?sslmode=disable"
//		...
//	}
//
// Main discards the shared server after the tests (Discard: an immediate shutdown, since its data is thrown
// away). Without it the server still dies with the test binary (it gets SIGQUIT when its parent exits) but its
// temporary directory stays behind. A test that needs a server of its own (to stop it, say) calls Start, which
// stops the server in t.Cleanup.
//
// # Running as root
//
// initdb and postgres refuse to run as root, and tests and CI run as root. Then the server runs as the "postgres"
// system user that the Debian package creates (or "nobody" if there is none), and its directory is handed to that
// user.
//
// # Missing binaries
//
// When no PostgreSQL binaries are found, tests that ask for a server are skipped locally, and fail with a message
// saying what to install when CI=true (so that CI cannot pass without running them). Set PGTEST_BINDIR to use
// binaries from another directory.
package pgtest
