package pgtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries is returned by FindBinDir and StartServer when initdb and postgres cannot be found.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL binaries not found (install the Debian package \"postgresql\", " +
	"which puts initdb and postgres in /usr/lib/postgresql/<version>/bin, or set PGTEST_BINDIR)")

// Options configures a server. The zero value of a field means its default.
type Options struct {
	// BinDir is the directory holding initdb and postgres. Default: $PGTEST_BINDIR if set, else the newest
	// /usr/lib/postgresql/<version>/bin.
	BinDir string

	// SharedBuffers is the server's shared_buffers. Default "16MB": tests need little, and several test binaries
	// may each run a server at once.
	SharedBuffers string

	// MaxConnections is the server's max_connections. Default 200 (system tests run several nodes, each with a
	// pool, on one server).
	MaxConnections int

	// StartTimeout bounds initdb plus the start of the server until it accepts connections. Default 60 s.
	StartTimeout time.Duration

	// StopTimeout is how long Stop waits for a fast shutdown before it kills the server. Default 10 s.
	StopTimeout time.Duration

	// Settings are more server settings (postgres -c name=value), e.g. {"log_statement": "all"}. They override
	// the ones above.
	Settings map[string]string
}

func (o Options) withDefaults() Options {
	if o.SharedBuffers == "" {
		o.SharedBuffers = "16MB"
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 200
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	return o
}

// Server is a running private PostgreSQL server. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	bin     string
	dir     string // the temporary directory: data/, the unix socket, postgres.log
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postgres process has exited
	waitErr error         // the process's exit status, set before exited is closed

	stopOnce sync.Once
	stopErr  error
	dbs      atomic.Int64
}

// FindBinDir returns dir if it is not empty, else $PGTEST_BINDIR, else the newest /usr/lib/postgresql/*/bin,
// after checking that it holds initdb and postgres. It returns an error wrapping ErrNoBinaries if not.
func FindBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("PGTEST_BINDIR")
	}
	if dir == "" {
		candidates, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		// Newest version first: sort by the numeric version directory.
		slices.SortFunc(candidates, func(a, b string) int {
			va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
			vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
			return vb - va
		})
		for _, c := range candidates {
			if hasBinaries(c) {
				return c, nil
			}
		}
		return "", ErrNoBinaries
	}
	if !hasBinaries(dir) {
		return "", fmt.Errorf("%w: no initdb and postgres in %s", ErrNoBinaries, dir)
	}
	return dir, nil
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Require returns the binaries' directory, or ends the test: it fails when CI=true (CI must run these tests) and
// skips otherwise.
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := FindBinDir("")
	if err == nil {
		return dir
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v; CI must run the PostgreSQL tests: .ci/run installs the package", err)
	}
	tb.Skipf("%v; skipping (this fails under CI=true)", err)
	return ""
}

// Start starts a server of the test's own, stopped in tb.Cleanup. It ends the test as Require does when the
// binaries are missing, and fails it when the server does not start.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.BinDir == "" {
		opts.BinDir = Require(tb)
	}
	s, err := StartServer(opts)
	if err != nil {
		tb.Fatalf("start PostgreSQL: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return s
}

// StartServer initialises a data directory in a new temporary directory and starts a server on it, on a free
// port of 127.0.0.1. The caller must Stop it.
func StartServer(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	bin, err := FindBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand the server directory to uid %d: %w", cred.Uid, err)
		}
	}
	deadline := time.Now().Add(opts.StartTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := initdb(ctx, bin, dir, cred); err != nil {
		return nil, err
	}
	// The port is picked by binding port 0 and releasing it, so another process may take it before postgres
	// binds it: try again with another port when that happens.
	const attempts = 5
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{opts: opts, bin: bin, dir: dir, port: port, exited: make(chan struct{})}
		err = s.start(ctx, cred)
		if err == nil {
			ok = true
			return s, nil
		}
		if attempt == attempts || !strings.Contains(s.logTail(), "could not bind") {
			return nil, err
		}
	}
}

// serverCredential is the user the server runs as: nil (ourselves) unless we are root, which postgres refuses.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var lastErr error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			lastErr = err
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			lastErr = fmt.Errorf("user %s has a non-numeric uid or gid", name)
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, fmt.Errorf("find an unprivileged user to run PostgreSQL as (running as root): %w", lastErr)
}

func serverCommand(ctx context.Context, cred *syscall.Credential, dir, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C", "TZ=UTC", "HOME=" + dir}
	// Pdeathsig makes the server die with the test binary even when nobody calls Stop (a crashed or timed-out
	// test). Go sets it after switching to cred, which would otherwise clear it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

func initdb(ctx context.Context, bin, dir string, cred *syscall.Credential) error {
	// --no-sync only skips flushing the fresh data directory; the server itself runs with fsync on.
	cmd := serverCommand(ctx, cred, dir, filepath.Join(bin, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
		"--no-sync", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tail(out, 2048))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(ctx context.Context, cred *syscall.Credential) error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.dir,
		"shared_buffers":          s.opts.SharedBuffers,
		"max_connections":         strconv.Itoa(s.opts.MaxConnections),
		"fsync":                   "on",
		"synchronous_commit":      "on",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"log_min_error_statement": "panic", // tests provoke errors on purpose; keep the log readable
	}
	for k, v := range s.opts.Settings {
		settings[k] = v
	}
	args := []string{"-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port)}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", k+"="+settings[k])
	}
	// Not tied to ctx: the server outlives the start.
	s.cmd = serverCommand(context.Background(), cred, s.dir, filepath.Join(s.bin, "postgres"), args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// The kernel sends Pdeathsig when the thread that started the child exits, not the process: start and wait
	// on a goroutine locked to its thread, so that the thread lives exactly as long as the server.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.exited)
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := s.waitReady(ctx); err != nil {
		s.kill()
		return err
	}
	return nil
}

// waitReady polls until the server accepts a connection, it exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attempt, s.DSN("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited while starting (%v):\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections in time (%v):\n%s", lastErr, s.logTail())
		case <-tick.C:
		}
	}
}

// DSN returns the connection string of database on this server, as the superuser "postgres" over TCP.
func (s *Server) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Dir returns the server's temporary directory (data/, the unix socket, postgres.log).
func (s *Server) Dir() string { return s.dir }

// LogPath returns the path of the server's log.
func (s *Server) LogPath() string { return s.logPath() }

func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	return string(tail(b, 4096))
}

// CreateDatabase creates database name and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// NewDatabase creates a fresh database (test_1, test_2, ...) and returns its DSN, failing the test if it cannot.
// Databases are not dropped: they go with the server.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx, fmt.Sprintf("test_%d", s.dbs.Add(1)))
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Stop shuts the server down (fast shutdown: clients are disconnected, then a shutdown checkpoint), killing it
// if it has not exited within StopTimeout, and removes its directory. Calling it (or Discard) again returns the
// first call's result.
func (s *Server) Stop() error { return s.shutdown(syscall.SIGINT) }

// Discard is Stop without the shutdown checkpoint (immediate shutdown), for a server whose data nobody reads
// again: on a machine busy with other writers, the checkpoint's fsyncs can take longer than StopTimeout.
func (s *Server) Discard() error { return s.shutdown(syscall.SIGQUIT) }

func (s *Server) shutdown(sig syscall.Signal) error {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(sig)
			select {
			case <-s.exited:
			case <-time.After(s.opts.StopTimeout):
				s.kill()
				s.stopErr = fmt.Errorf("postgres did not shut down within %v; killed it", s.opts.StopTimeout)
			}
		}
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("remove server directory: %w", err)
		}
	})
	return s.stopErr
}

// kill ends the server at once and waits for it.
func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the test binary's shared server, starting it on first use (see Main). It ends the test as
// Require does when the binaries are missing, and fails it when the server cannot start.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	bin := Require(tb)
	shared.once.Do(func() {
		shared.srv, shared.err = StartServer(Options{BinDir: bin})
	})
	if shared.err != nil {
		tb.Fatalf("start the shared PostgreSQL: %v", shared.err)
	}
	return shared.srv
}

// NewDatabase creates a fresh database on the shared server and returns its DSN.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return Shared(tb).NewDatabase(tb)
}

// Main runs the tests and then stops the shared server, if one was started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Discard(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
