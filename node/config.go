package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is a node's configuration, from flags and PLATTER_* environment variables (a flag wins over its
// variable). Every field has a default (see defaultConfig) and one flag.
type Config struct {
	DataDir         string        // --data-dir: the journal and other state live here; created if missing
	Journal         string        // --journal: "bbolt" (a file in the data dir) or a postgres:// URL shared by the cluster
	HTTPAddr        string        // --http-addr: the HTTP edge's listen address
	ClusterAddr     string        // --cluster-addr: memberlist bind address (TCP and UDP)
	RemoteAddr      string        // --remote-addr: protoactor remote (gRPC) bind address
	AdvertiseAddr   string        // --advertise-addr: host (or host:port) other nodes use to reach this one
	RemoteAdvertise string        // --remote-advertise-addr: host:port other nodes dial for the remote (a proxy in front of it)
	Join            []string      // --join: seed memberlist addresses; empty starts a new cluster
	ClusterName     string        // --cluster-name: nodes of different names never join each other
	Profile         string        // --cluster-profile: "lan" (production timings) or "local" (fast, for tests)
	JoinTimeout     time.Duration // --join-timeout: give up when no seed answers within this
	ShutdownTimeout time.Duration // --shutdown-timeout: bound on draining HTTP and leaving the cluster
	DrainGrace      time.Duration // --drain-grace: how long a draining node's edge keeps serving after the hand-over
	LogLevel        slog.Level    // --log-level: debug, info, warn, error
	LogFormat       string        // --log-format: auto (text on a terminal, JSON otherwise), text, json
	Insecure        bool          // --insecure: serve plain HTTP instead of HTTPS (development only; logs a warning)
	TLSCert         string        // --tls-cert: the edge's certificate (PEM); without it a development one is made
	TLSKey          string        // --tls-key: the key of --tls-cert (PEM)
	CertsDir        string        // --certs-dir: cluster CA and node certificates (platter cert ...): mutual TLS
	GossipKey       string        // --gossip-key: base64 key (16, 24 or 32 bytes) that encrypts gossip
	DebugAddr       string        // --debug-addr: plain-HTTP listener for Go's pprof profiles; empty: none
}

func defaultConfig() Config {
	return Config{
		DataDir:         "./data",
		Journal:         journalBolt,
		HTTPAddr:        "127.0.0.1:8080",
		ClusterAddr:     "127.0.0.1:7946",
		RemoteAddr:      "127.0.0.1:8090",
		ClusterName:     "platter",
		Profile:         "lan",
		JoinTimeout:     30 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		DrainGrace:      time.Second,
		LogLevel:        slog.LevelInfo,
		LogFormat:       "auto",
	}
}

// envPrefix starts the environment variable of every flag: --data-dir is PLATTER_DATA_DIR.
const envPrefix = "PLATTER_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// errUsage reports that the command line asked for help (usage already printed); main exits 0.
var errUsage = errors.New("usage requested")

// parseRunFlags parses the flags of `platter run` over defaults, then fills every flag not given on the command
// line from its environment variable (parsed by the same code, so a bad value names its variable).
func parseRunFlags(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("platter run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the journal and node state (created if missing)")
	fs.StringVar(&cfg.Journal, "journal", cfg.Journal, "where actors keep their state: bbolt (a file in the data dir, one node only) or a postgres://user:password@host:port/database URL shared by every node of a cluster")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen address host:port (port 0 picks one)")
	fs.StringVar(&cfg.ClusterAddr, "cluster-addr", cfg.ClusterAddr, "memberlist bind address host:port, TCP and UDP")
	fs.StringVar(&cfg.RemoteAddr, "remote-addr", cfg.RemoteAddr, "actor remote (gRPC) bind address host:port")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", cfg.AdvertiseAddr, "host or host:port other nodes reach this one at (default: the bind host)")
	fs.StringVar(&cfg.RemoteAdvertise, "remote-advertise-addr", cfg.RemoteAdvertise, "host:port other nodes dial for this node's actor remote, when it differs from --remote-addr, e.g. a TCP proxy in front of it (default: the --remote-addr port at the --advertise-addr host, else the bind host)")
	fs.Func("join", "comma-separated memberlist addresses of nodes to join (empty: start a new cluster)", func(s string) error {
		cfg.Join = nil
		for _, seed := range strings.Split(s, ",") {
			if seed = strings.TrimSpace(seed); seed != "" {
				cfg.Join = append(cfg.Join, seed)
			}
		}
		return nil
	})
	fs.StringVar(&cfg.ClusterName, "cluster-name", cfg.ClusterName, "cluster name; nodes with different names never join")
	fs.StringVar(&cfg.Profile, "cluster-profile", cfg.Profile, "cluster timings: lan (production) or local (fast failure detection, for tests)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "give up when no --join seed answers within this")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "bound on a graceful stop (drain HTTP, leave the cluster)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", cfg.DrainGrace, "on a drain (SIGTERM, POST /v1/admin/drain), how long the edge keeps serving, with /readyz at 503, after the node handed its actors over, so that load balancers stop sending before it closes")
	fs.Func("log-level", "debug, info, warn or error (default info)", func(s string) error {
		return cfg.LogLevel.UnmarshalText([]byte(s))
	})
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "auto (text on a terminal, JSON otherwise), text or json")
	fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "serve plain HTTP, without TLS (development only)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "HTTPS certificate file (PEM; default: a self-signed development certificate in the data dir)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "key file of --tls-cert (PEM)")
	fs.StringVar(&cfg.CertsDir, "certs-dir", cfg.CertsDir, "directory with ca.crt, node.crt, node.key (platter cert ...) for mutual TLS between nodes, and gossip.key")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr, "host:port of a plain-HTTP listener serving Go's profiles at /debug/pprof/ (default: none; keep it on loopback, it has no authentication)")
	fs.StringVar(&cfg.GossipKey, "gossip-key", cfg.GossipKey, "base64 key (16, 24 or 32 bytes) that encrypts gossip (default: gossip.key in --certs-dir)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printRunUsage(usage, fs)
			return cfg, errUsage
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (flags are --name=value)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		if v, ok := lookupEnv(getenv, envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid %s %q: %v", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	return cfg, cfg.validate()
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func printRunUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: platter run [flags]\n\nRuns a Platter node. Every flag can also be set by its environment variable\n(--data-dir is %s); a flag on the command line wins.\n\nFlags:\n", envName("data-dir"))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// validate checks what can be checked without touching the network or the disk; the first problem is reported as
// one line naming the flag.
func (c Config) validate() error {
	for _, a := range []struct{ flag, addr string }{
		{"--http-addr", c.HTTPAddr}, {"--cluster-addr", c.ClusterAddr}, {"--remote-addr", c.RemoteAddr},
	} {
		if err := checkHostPort(a.addr); err != nil {
			return fmt.Errorf("invalid %s %q: %v", a.flag, a.addr, err)
		}
	}
	for _, seed := range c.Join {
		if err := checkHostPort(seed); err != nil {
			return fmt.Errorf("invalid --join seed %q: %v", seed, err)
		}
	}
	if c.AdvertiseAddr != "" {
		host := c.AdvertiseAddr
		if h, p, err := net.SplitHostPort(c.AdvertiseAddr); err == nil {
			host = h
			if err := checkPort(p); err != nil {
				return fmt.Errorf("invalid --advertise-addr %q: %v", c.AdvertiseAddr, err)
			}
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("invalid --advertise-addr %q: want an IP address or IP:port", c.AdvertiseAddr)
		}
	}
	if c.RemoteAdvertise != "" {
		if err := checkHostPort(c.RemoteAdvertise); err != nil {
			return fmt.Errorf("invalid --remote-advertise-addr %q: %v", c.RemoteAdvertise, err)
		}
		if _, port, _ := net.SplitHostPort(c.RemoteAdvertise); port == "0" {
			return fmt.Errorf("invalid --remote-advertise-addr %q: port 0: other nodes need the port to dial", c.RemoteAdvertise)
		}
	}
	if c.DataDir == "" {
		return errors.New("invalid --data-dir: empty")
	}
	if err := checkJournalFlag(c.Journal); err != nil {
		return err
	}
	if len(c.Join) > 0 && !isPostgresDSN(c.Journal) {
		return errors.New("--join needs a shared journal: with the default bbolt journal a node keeps its actors' " +
			"state in its own data dir; give every node of the cluster --journal postgres://... (PLATTER_JOURNAL)")
	}
	if c.Profile != "lan" && c.Profile != "local" {
		return fmt.Errorf("invalid --cluster-profile %q: want lan or local", c.Profile)
	}
	if c.LogFormat != "auto" && c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("invalid --log-format %q: want auto, text or json", c.LogFormat)
	}
	if c.JoinTimeout <= 0 {
		return fmt.Errorf("invalid --join-timeout %v: must be positive", c.JoinTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("invalid --shutdown-timeout %v: must be positive", c.ShutdownTimeout)
	}
	if c.DrainGrace < 0 {
		return fmt.Errorf("invalid --drain-grace %v: must not be negative", c.DrainGrace)
	}
	if c.ClusterName == "" {
		return errors.New("invalid --cluster-name: empty")
	}
	if c.Insecure && (c.TLSCert != "" || c.TLSKey != "") {
		return errors.New("--insecure serves plain HTTP: drop it, or drop --tls-cert and --tls-key")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both, or neither for a development certificate")
	}
	if c.GossipKey != "" {
		if _, err := decodeGossipKey(c.GossipKey); err != nil {
			return fmt.Errorf("invalid --gossip-key: %v", err)
		}
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port and a host that is an IP address or a plausible DNS name.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if err := checkPort(port); err != nil {
		return err
	}
	if host == "" {
		return errors.New("missing host (use 0.0.0.0 to listen on every interface)")
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
