package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/mattn/go-isatty"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/http/oauth"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise it comes from the build info.
var version = ""

// Main is the platter program: ParseFlags reads the command line, Run starts a node and returns once it serves,
// Close stops it gracefully. Tests drive it in process exactly as main does.
type Main struct {
	Command string // "run", "version" or "help", set by ParseFlags
	Config  Config // set by ParseFlags for "run"

	Stdout io.Writer              // the listening line, help and version; default os.Stdout
	Logs   io.Writer              // structured logs; default os.Stdout
	Getenv func(string) string    // environment lookup; default os.Getenv
	IsTTY  func(w io.Writer) bool // decides --log-format auto; default: is w a terminal

	Logger *slog.Logger // set by Run

	journal   journal.Journal
	journalID string // "<kind>:<id>", announced to the cluster (journal.go)
	edgeCA    string // the development certificate clients pin (edgeTLS), empty for an operator's or --insecure
	stop      stopSignals
	node      *cluster.Node
	http      *http.Server
	reminders *actors.ReminderScanner  // wakes actors whose durable timers or outbox retries are due
	sweeper   *http.IdempotencySweeper // deletes Idempotency-Key records whose retention has passed
	debug     *debugServer             // --debug-addr, or nil
}

// NewMain returns a Main that uses the process's stdout and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Logs: os.Stdout, Getenv: os.Getenv, IsTTY: isTerminal}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

const usage = `Usage: platter <command> [flags]

Commands:
  run       run a node until SIGINT or SIGTERM (platter run -h lists its flags)
  cert      create the cluster CA and node certificates (platter cert -h)
  sim       drive running nodes as a marketplace and report throughput and latency (platter sim -h)
  version   print the version
  help      print this help
`

// ParseFlags reads the command and its flags. For help and version it prints and sets Command; errUsage means
// help was printed for `run -h`.
func (m *Main) ParseFlags(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stdout, usage)
		return errors.New("missing command (run, version or help)")
	}
	m.Command = args[0]
	switch m.Command {
	case "help", "-h", "-help", "--help":
		m.Command = "help"
		fmt.Fprint(m.Stdout, usage)
		return nil
	case "version", "--version":
		m.Command = "version"
		fmt.Fprintf(m.Stdout, "platter %s %s\n", Version(), runtime.Version())
		return nil
	case "run":
		cfg, err := parseRunFlags(args[1:], m.Getenv, m.Stdout)
		m.Config = cfg
		return err
	case "cert":
		return runCert(args[1:], m.Stdout, time.Now())
	case "sim":
		return runSim(args[1:], m.Stdout, m.IsTTY)
	default:
		return fmt.Errorf("unknown command %q (run, cert, version or help)", m.Command)
	}
}

// Version is the program's version: the link-time version, else the module version and VCS revision.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}

func (m *Main) newLogger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: m.Config.LogLevel}
	format := m.Config.LogFormat
	if format == "auto" {
		format = "json"
		if m.IsTTY != nil && m.IsTTY(m.Logs) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(m.Logs, opts))
	}
	return slog.New(slog.NewJSONHandler(m.Logs, opts))
}

// Run starts the node: data directory, journal, HTTP edge, cluster membership. It returns once the node has joined
// and serves, or with one-line error saying what is wrong; on error the caller still calls Close.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	m.Logger = m.newLogger()
	log := m.Logger

	if err := prepareDataDir(cfg.DataDir); err != nil {
		return err
	}
	if cfg.DebugAddr != "" {
		debug, err := startDebugServer(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		m.debug = debug
	}
	j, kind, err := m.openJournal(ctx, log)
	if err != nil {
		return err
	}
	m.journal = j
	if m.journalID, err = journalIdentity(ctx, j, kind); err != nil {
		return err
	}

	ccfg, err := m.clusterConfig()
	if err != nil {
		return err
	}
	deps := actors.Deps{Journal: j, Logger: log, Now: time.Now, Workflow: cfg.actorsWorkflow()}
	node, err := cluster.NewNode(ccfg, func() []*pcluster.Kind { return actors.Kinds(deps) })
	if err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	m.node = node

	// The edge opens before the join so that /healthz answers (and /readyz says 503) while the node joins.
	hcfg := http.DefaultConfig(cfg.HTTPAddr)
	hcfg.Logger = log
	if hcfg.TLS, err = m.edgeTLS(); err != nil {
		return err
	}
	backend := http.NewClusterBackend(node, journalStore{j}, j, http.DefaultIdempotencyRetention)
	backend.Cluster = drainingCluster{Cluster: backend.Cluster, main: m} // POST /v1/admin/drain stops the process
	ocfg := oauth.DefaultConfig()
	ocfg.Logger = log
	ocfg.KeyRotateAfter = cfg.KeyRotateAfter
	if cfg.Profile == "local" {
		ocfg.KeyRefresh = 2 * time.Second // nodes of a test cluster agree on the signing keys quickly
	}
	auth, err := oauth.NewServer(ocfg, backend.Actors)
	if err != nil {
		return err
	}
	backend.Auth, backend.Accounts, backend.OAuth = auth, auth, auth
	srv, err := http.NewServer(hcfg, backend)
	if err != nil {
		return err
	}
	if err := srv.Open(); err != nil {
		return addrError("--http-addr", cfg.HTTPAddr, err)
	}
	m.http = srv

	if err := m.startNode(ctx); err != nil {
		return err
	}
	// Timers and outbox retries are durable reminders in the journal; the scanner wakes their actors (through the
	// cluster, so the owner fires them), including those that came due while the node was down.
	// With a shared journal every node sees every reminder: each wakes those it owns.
	m.reminders = actors.StartReminderScanner(deps, node.Cluster, actors.WakeOwnedOnly(node.Owns))
	if idem, ok := backend.Idempotency.(*http.JournalIdempotency); ok {
		m.sweeper = http.NewIdempotencySweeper(idem, http.IdempotencySweepConfig{Logger: log})
		m.sweeper.Start()
	}
	if err := m.startAuth(ctx, auth); err != nil {
		if ctx.Err() != nil {
			return errInterrupted // a signal while the signing keys were read: a stop, not a failure
		}
		return err
	}
	self := node.Self()
	log.Info("node started",
		slog.String("node", self.Name), slog.String("member_id", self.ID), slog.String("http", srv.URL()),
		slog.String("cluster_addr", self.GossipAddr), slog.String("remote_addr", self.RemoteAddr),
		slog.String("data_dir", cfg.DataDir), slog.String("journal", m.journalID))
	fmt.Fprintf(m.Stdout, "platter: node %s serving %s (cluster %s, remote %s, data %s, journal %s)\n",
		self.Name, srv.URL(), self.GossipAddr, self.RemoteAddr, cfg.DataDir, m.journalName())
	m.printTokenHint(srv.URL())
	return nil
}

// printTokenHint prints how to get an operator access token from this node: the client_credentials request with
// the bootstrap credentials in the data directory, or, on a node whose data directory has none (it joined a
// cluster another node bootstrapped), where they are.
func (m *Main) printTokenHint(url string) {
	creds := filepath.Join(m.Config.DataDir, oauth.OperatorCredentialsFile)
	if _, err := os.Stat(creds); err != nil {
		fmt.Fprintf(m.Stdout, "platter: operator token: POST %s/oauth2/token grant_type=client_credentials with the "+
			"client in %s of the node that started the cluster\n", url, oauth.OperatorCredentialsFile)
		return
	}
	curl := "curl -s"
	if m.edgeCA != "" {
		curl += " --cacert " + m.edgeCA
	}
	fmt.Fprintf(m.Stdout, "platter: get an operator token: %s %s/oauth2/token -d grant_type=client_credentials "+
		"-u \"$(jq -r '.client_id + \":\" + .client_secret' %s)\" | jq -r .access_token\n", curl, url, creds)
}

// errInterrupted is Run's answer to a stop requested (a signal) before the node had joined: not a failure.
var errInterrupted = errors.New("stopped before the node joined the cluster")

// startNode binds the cluster ports and joins the seeds, giving up after --join-timeout.
func (m *Main) startNode(ctx context.Context) error {
	cfg := m.Config
	if err := checkBindable("--cluster-addr", cfg.ClusterAddr, true); err != nil {
		return err
	}
	if err := checkBindable("--remote-addr", cfg.RemoteAddr, false); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	err := m.node.Start(startCtx)
	var refused *cluster.RefusedError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errInterrupted
	case startCtx.Err() != nil && len(cfg.Join) > 0:
		return fmt.Errorf("could not join the cluster: no --join seed of %v answered within %v", cfg.Join, cfg.JoinTimeout)
	case errors.As(err, &refused):
		return fmt.Errorf("refusing to join the cluster: the member at %s: %v", refused.Member.GossipAddr, refused.Reason)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("start cluster node: a port of --cluster-addr %s or --remote-addr %s is in use", cfg.ClusterAddr, cfg.RemoteAddr)
	default:
		return fmt.Errorf("start cluster node: %w", err)
	}
}

func (m *Main) clusterConfig() (cluster.Config, error) {
	cfg := m.Config
	c := cluster.DefaultLANConfig()
	if cfg.Profile == "local" {
		c = cluster.DefaultLocalConfig()
	}
	c.ClusterName = cfg.ClusterName
	c.BindAddr = cfg.ClusterAddr
	c.RemoteAddr = cfg.RemoteAddr
	c.Seeds = cfg.Join
	c.Logger = m.Logger
	c.Attributes = map[string]string{journalAttribute: m.journalID}
	c.Admit = admitJournal(m.journalID)
	c.Faults = m.faults()
	sec, err := loadClusterSecurity(cfg.CertsDir, cfg.GossipKey)
	if err != nil {
		return c, err
	}
	// Config.validate refused exposed links without --certs-dir; a certs dir without a gossip key shows only now.
	exposedFlag, exposedAddr := cfg.exposedClusterAddr()
	if exposedFlag != "" && len(sec.gossipKeys) == 0 && !cfg.Insecure {
		return c, fmt.Errorf("%s %s is off loopback and gossip would be unencrypted: put a gossip.key in --certs-dir %s "+
			"or give --gossip-key, or --insecure", exposedFlag, exposedAddr, cfg.CertsDir)
	}
	if exposedFlag != "" && (sec.cert == nil || len(sec.gossipKeys) == 0) {
		m.Logger.Warn("cluster links reachable off loopback without security (--insecure)",
			slog.String("flag", exposedFlag), slog.String("addr", exposedAddr))
	}
	if sec.cert != nil {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{*sec.cert}, RootCAs: sec.ca}
	} else {
		m.Logger.Warn("links between nodes are not authenticated or encrypted: give --certs-dir (platter cert create-ca, create-node)")
	}
	if len(sec.gossipKeys) > 0 {
		c.SecretKey, c.SecondaryKeys = sec.gossipKeys[0], sec.gossipKeys[1:]
	} else {
		m.Logger.Warn("gossip is not encrypted: give --gossip-key or a gossip.key in --certs-dir")
	}
	if cfg.AdvertiseAddr != "" {
		// Port 0 advertises the bound port: a bare host keeps both ports, host:port sets the gossip port.
		host, port, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			host, port = cfg.AdvertiseAddr, "0"
		}
		c.AdvertiseAddr = net.JoinHostPort(host, port)
		c.RemoteAdvertiseAddr = net.JoinHostPort(host, "0")
	}
	if cfg.RemoteAdvertise != "" {
		c.RemoteAdvertiseAddr = cfg.RemoteAdvertise
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("invalid cluster configuration: %w", err)
	}
	return c, nil
}

// Close stops the node gracefully, each step bounded by --shutdown-timeout: the edge stops accepting and drains
// requests in flight, the node leaves the cluster, the journal closes. It is safe after a failed Run.
func (m *Main) Close() error {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := m.Config.ShutdownTimeout
	if timeout <= 0 {
		timeout = defaultConfig().ShutdownTimeout
	}
	var errs []error
	if m.http != nil || m.node != nil || m.journal != nil {
		log.Info("stopping node")
	}
	if m.node != nil && m.node.Ready() {
		// Hand the identities over first, while the edge still serves: requests in flight, and those that arrive
		// before the edge closes, reach the identities' new owners.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := m.node.Drain(ctx); err != nil {
			log.Warn("drain", slog.Any("error", err))
		}
		cancel()
		// /readyz has answered 503 since the drain began; give load balancers --drain-grace to notice before the
		// edge stops accepting. Requests meanwhile still reach the actors' new owners.
		if grace := m.Config.DrainGrace; grace > 0 {
			time.Sleep(grace)
		}
	}
	m.stop.markDrained()
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := m.http.Close(ctx); err != nil {
			errs = append(errs, err)
		} else {
			log.Info("http edge stopped")
		}
		cancel()
		m.http = nil
	}
	if m.reminders != nil {
		m.reminders.Stop()
		m.reminders = nil
	}
	if m.sweeper != nil {
		m.sweeper.Stop()
		m.sweeper = nil
	}
	if m.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := m.node.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("leave cluster: %w", err))
		} else {
			log.Info("left the cluster")
		}
		cancel()
		m.node = nil
	}
	if m.debug != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = m.debug.close(ctx) // profiles in progress are cut off: the node is gone
		cancel()
		m.debug = nil
	}
	if m.journal != nil {
		if err := m.journal.Close(); err != nil {
			errs = append(errs, err)
		} else {
			log.Info("journal closed")
		}
		m.journal = nil
	}
	return errors.Join(errs...)
}

// URL is the base URL of the HTTP edge once Run has opened it.
func (m *Main) URL() string {
	if m.http == nil {
		return ""
	}
	return m.http.URL()
}

// prepareDataDir creates the data directory if needed and proves it writable by writing a file in it.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s cannot be created: %w", dir, unwrapPathError(err))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, unwrapPathError(err))
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	_ = os.Remove(name)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	return nil
}

// unwrapPathError drops the path and operation of a *PathError: the message around it names the directory.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// addrError explains a failed listen on a flag's address in one line.
func addrError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s is already in use by another process", flag, addr)
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("%s %s is not an address of this machine", flag, addr)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// checkBindable fails with a clear message when addr (and, for memberlist, its UDP port) cannot be bound, before
// the cluster packages try it and report it in their own words. A fixed port only: port 0 always binds.
func checkBindable(flag, addr string, udp bool) error {
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return addrError(flag, addr, err)
	}
	ln.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return addrError(flag, addr, err)
		}
		pc.Close()
	}
	return nil
}

// journalStore reports the journal's health to /readyz.
type journalStore struct{ j journal.Journal }

func (s journalStore) Ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := s.j.Streams(ctx, "", "", 1)
	return err
}
