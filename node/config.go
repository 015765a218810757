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

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http/oauth"
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
	Insecure        bool          // --insecure: plain HTTP on the edge, and cluster links and --debug-addr allowed off loopback without security (development only; logs warnings)
	TLSCert         string        // --tls-cert: the edge's certificate (PEM); without it a development one is made
	TLSKey          string        // --tls-key: the key of --tls-cert (PEM)
	CertsDir        string        // --certs-dir: cluster CA and node certificates (platter cert ...): mutual TLS
	GossipKey       string        // --gossip-key: gossip keyring, comma-separated base64 keys (16, 24 or 32 bytes); the first encrypts
	DebugAddr       string        // --debug-addr: plain-HTTP listener for Go's pprof profiles; empty: none
	KeyRotateAfter  time.Duration // --key-rotate-after: age at which the cluster replaces its access-token signing key

	// Workflow holds the order workflow's timings and policies (--accept-sla, --dispatch-sla, --offer-ttl, ...;
	// workflowFlags); the node passes it to the actors (actors.Deps.Workflow).
	Workflow actors.WorkflowConfig
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
		Workflow:        defaultWorkflow(),
		KeyRotateAfter:  oauth.DefaultConfig().KeyRotateAfter,
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
	fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "serve plain HTTP, without TLS, and unauthenticated, unencrypted cluster links; needed to bind --cluster-addr, --remote-addr or --debug-addr off loopback, or to join or advertise a non-loopback address, without --certs-dir and a gossip key (development only)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "HTTPS certificate file (PEM; default: a self-signed development certificate in the data dir)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "key file of --tls-cert (PEM)")
	fs.StringVar(&cfg.CertsDir, "certs-dir", cfg.CertsDir, "directory with ca.crt, node.crt, node.key (platter cert ...) for mutual TLS between nodes, and gossip.key")
	workflowFlags(fs, &cfg.Workflow)
	fs.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr, "host:port of a plain-HTTP listener serving Go's profiles at /debug/pprof/ (default: none); it has no authentication: a host off loopback needs --insecure")
	fs.DurationVar(&cfg.KeyRotateAfter, "key-rotate-after", cfg.KeyRotateAfter, "age at which a node replaces the cluster's access-token signing key; the previous key verifies its tokens until they expire (POST /v1/admin/signing-keys/rotate rotates at once)")
	fs.StringVar(&cfg.GossipKey, "gossip-key", cfg.GossipKey, "gossip keyring: comma-separated base64 keys (16, 24 or 32 bytes each); the first encrypts, all decrypt, so that the key rotates without a full-cluster restart (default: gossip.key in --certs-dir, one key a line)")

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
	if c.KeyRotateAfter <= 0 {
		return fmt.Errorf("invalid --key-rotate-after %v: must be positive", c.KeyRotateAfter)
	}
	if err := validateWorkflow(c.Workflow); err != nil {
		return err
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
		if _, err := decodeGossipKeys(c.GossipKey); err != nil {
			return fmt.Errorf("invalid --gossip-key: %v", err)
		}
	}
	if flag, addr := c.exposedClusterAddr(); flag != "" && !c.Insecure && c.CertsDir == "" {
		return fmt.Errorf("%s %s is off loopback and the cluster links would be unauthenticated and unencrypted: "+
			"give --certs-dir (mutual TLS; platter cert) and a gossip key (gossip.key in it, or --gossip-key), or --insecure", flag, addr)
	}
	if c.DebugAddr != "" && !c.Insecure && !loopbackHostPort(c.DebugAddr) {
		return fmt.Errorf("--debug-addr %s is off loopback: the profiles have no authentication (/debug/pprof/cmdline shows "+
			"the command line); bind it to 127.0.0.1, or give --insecure", c.DebugAddr)
	}
	return nil
}

// exposedClusterAddr returns the first address that takes the cluster links off loopback, and its flag: a bind
// address (--cluster-addr, --remote-addr), a --join seed or an advertised address; "" when they all stay on
// loopback, where only this machine's processes reach the links (tests, make run).
func (c Config) exposedClusterAddr() (flag, addr string) {
	for _, a := range []struct{ flag, addr string }{{"--cluster-addr", c.ClusterAddr}, {"--remote-addr", c.RemoteAddr}} {
		if !loopbackHostPort(a.addr) {
			return a.flag, a.addr
		}
	}
	for _, seed := range c.Join {
		if !loopbackHostPort(seed) {
			return "--join seed", seed
		}
	}
	if c.AdvertiseAddr != "" && !loopbackHost(c.AdvertiseAddr) && !loopbackHostPort(c.AdvertiseAddr) {
		return "--advertise-addr", c.AdvertiseAddr
	}
	if c.RemoteAdvertise != "" && !loopbackHostPort(c.RemoteAdvertise) {
		return "--remote-advertise-addr", c.RemoteAdvertise
	}
	return "", ""
}

// loopbackHostPort reports whether host:port names a loopback host; an unspecified host (0.0.0.0, "") is every
// interface, and a DNS name other than localhost may resolve anywhere: neither is loopback.
func loopbackHostPort(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

// defaultWorkflow is the workflow configuration of a node: the actors' defaults of the fields that have a flag
// (the others stay zero: the actors default them). OpeningWaveSize stays 0, "same as --wave-size", so that
// --wave-size alone sets both (actorsWorkflow resolves it).
func defaultWorkflow() actors.WorkflowConfig {
	return actors.WorkflowConfig{
		AcceptSLA:            actors.DefaultAcceptSLA,
		DispatchSLA:          actors.DefaultDispatchSLA,
		OfferTTL:             actors.DefaultOfferTTL,
		WaveSize:             actors.DefaultWaveSize,
		CancelRefundShare:    actors.DefaultCancelRefundShare,
		PaymentRetryMin:      actors.DefaultPaymentRetryMin,
		PaymentRetryMax:      actors.DefaultPaymentRetryMax,
		PaymentTimeout:       actors.DefaultPaymentTimeout,
		OutboxRetryMin:       actors.DefaultOutboxRetryMin,
		OutboxRetryMax:       actors.DefaultOutboxRetryMax,
		DeliverTimeout:       actors.DefaultDeliverTimeout,
		ReminderScanInterval: actors.DefaultReminderScanInterval,
		OrderCallTimeout:     actors.DefaultOrderCallTimeout,
	}
}

// workflowFlags registers the flags of the order workflow's timings and policies (docs/workflow.md) on fs.
func workflowFlags(fs *flag.FlagSet, w *actors.WorkflowConfig) {
	fs.DurationVar(&w.AcceptSLA, "accept-sla", w.AcceptSLA, "how long a restaurant has to accept a placed order before the system cancels it with a full refund")
	fs.DurationVar(&w.DispatchSLA, "dispatch-sla", w.DispatchSLA, "how long an accepted order may wait for a dasher (from acceptance or a release) before the system cancels it with a full refund")
	fs.DurationVar(&w.OfferTTL, "offer-ttl", w.OfferTTL, "how long a dasher has to answer a delivery offer before the area offers the order to the next wave")
	fs.IntVar(&w.OpeningWaveSize, "opening-wave-size", w.OpeningWaveSize, "how many of the nearest eligible dashers the first dispatch wave of an order offers it to; 0: the same as --wave-size (1: fewer lost races under load, an --offer-ttl wait when that dasher ignores it)")
	fs.IntVar(&w.WaveSize, "wave-size", w.WaveSize, "how many dashers each later dispatch wave offers an order to")
	fs.Float64Var(&w.CancelRefundShare, "cancel-refund-share", w.CancelRefundShare, "share (0-1) of the total refunded when the customer cancels after acceptance and before a dasher is assigned")
	fs.DurationVar(&w.PaymentRetryMin, "payment-retry-min", w.PaymentRetryMin, "first delay before a capture or void that failed transiently is tried again (doubles per attempt)")
	fs.DurationVar(&w.PaymentRetryMax, "payment-retry-max", w.PaymentRetryMax, "cap of the delay between attempts of a capture or void")
	fs.DurationVar(&w.PaymentTimeout, "payment-timeout", w.PaymentTimeout, "bound on one payment gateway call")
	fs.DurationVar(&w.OutboxRetryMin, "outbox-retry-min", w.OutboxRetryMin, "first delay before an actor sends an unacknowledged message again (doubles per attempt); also the first retry of a payment authorisation that failed transiently")
	fs.DurationVar(&w.OutboxRetryMax, "outbox-retry-max", w.OutboxRetryMax, "cap of the delay between attempts of an unacknowledged message")
	fs.DurationVar(&w.DeliverTimeout, "deliver-timeout", w.DeliverTimeout, "bound on one delivery of a message between actors")
	fs.DurationVar(&w.ReminderScanInterval, "reminder-scan-interval", w.ReminderScanInterval, "how often the node scans the journal for due timers of actors that are not active")
	fs.DurationVar(&w.OrderCallTimeout, "order-call-timeout", w.OrderCallTimeout, "bound on a dasher's call to an order (accepting an offer, giving an assignment back)")
}

// validateWorkflow checks the workflow flags; the first problem is one line naming the flag.
func validateWorkflow(w actors.WorkflowConfig) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--accept-sla", w.AcceptSLA}, {"--dispatch-sla", w.DispatchSLA}, {"--offer-ttl", w.OfferTTL},
		{"--payment-retry-min", w.PaymentRetryMin}, {"--payment-retry-max", w.PaymentRetryMax},
		{"--payment-timeout", w.PaymentTimeout}, {"--outbox-retry-min", w.OutboxRetryMin},
		{"--outbox-retry-max", w.OutboxRetryMax}, {"--deliver-timeout", w.DeliverTimeout},
		{"--reminder-scan-interval", w.ReminderScanInterval}, {"--order-call-timeout", w.OrderCallTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("invalid %s %v: must be positive", d.flag, d.v)
		}
	}
	if w.WaveSize < 1 {
		return fmt.Errorf("invalid --wave-size %d: must be at least 1", w.WaveSize)
	}
	if w.OpeningWaveSize < 0 {
		return fmt.Errorf("invalid --opening-wave-size %d: must be 0 (same as --wave-size) or more", w.OpeningWaveSize)
	}
	if !(w.CancelRefundShare >= 0 && w.CancelRefundShare <= 1) { // also refuses NaN
		return fmt.Errorf("invalid --cancel-refund-share %v: want a share from 0 to 1", w.CancelRefundShare)
	}
	if w.PaymentRetryMax < w.PaymentRetryMin {
		return fmt.Errorf("invalid --payment-retry-max %v: below --payment-retry-min %v", w.PaymentRetryMax, w.PaymentRetryMin)
	}
	if w.OutboxRetryMax < w.OutboxRetryMin {
		return fmt.Errorf("invalid --outbox-retry-max %v: below --outbox-retry-min %v", w.OutboxRetryMax, w.OutboxRetryMin)
	}
	return nil
}

// actorsWorkflow is Workflow as actors.Deps takes it: a refund share of 0 given on the command line means
// "refund nothing", which WorkflowConfig spells as a negative share (its 0 means the default); an opening wave of
// 0 is the --wave-size given (the actors read 0 the same way; resolved here so that the node says what it runs).
func (c Config) actorsWorkflow() actors.WorkflowConfig {
	w := c.Workflow
	if w.OpeningWaveSize == 0 {
		w.OpeningWaveSize = w.WaveSize
	}
	if w.CancelRefundShare == 0 {
		w.CancelRefundShare = -1
	}
	return w
}
