package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Config configures one Node. Build it from a profile (DefaultLANConfig for production, DefaultLocalConfig for
// tests on loopback) and override fields; every timing the protocol depends on is a field here, never a package
// variable. The zero value is not usable: Validate says what is wrong.
type Config struct {
	// ClusterName separates clusters that share a network: it is the protoactor cluster name and the memberlist
	// label, so nodes of another cluster are ignored. Default "platter".
	ClusterName string

	// BindAddr is the memberlist (gossip) listen address, host:port, TCP and UDP. Port 0 picks a free port (tests).
	// Default "0.0.0.0:7946". Flag --cluster-addr.
	BindAddr string

	// AdvertiseAddr is the gossip address other nodes use to reach this one, when it differs from BindAddr (NAT,
	// 0.0.0.0 binds). Empty: memberlist picks the bind address, or a private address for an unspecified bind host.
	// Flag --advertise-addr.
	AdvertiseAddr string

	// RemoteAddr is the protoactor remote (gRPC) listen address, host:port. Port 0 picks a free port.
	// Default "0.0.0.0:8090". Flag --remote-addr.
	RemoteAddr string

	// RemoteAdvertiseAddr is the remote address other nodes dial, when it differs from RemoteAddr. Empty: the bind
	// host, or the gossip advertise host for an unspecified bind host; the port defaults to the bound port.
	RemoteAdvertiseAddr string

	// Seeds are gossip addresses (host:port) of members to join. Empty: this node starts a new cluster. A node with
	// seeds serves no identity before it has joined one of them. Flag --join.
	Seeds []string

	// SecretKey encrypts gossip (16, 24 or 32 bytes, AES): the keyring's primary key, which encrypts what this
	// member sends and decrypts what it receives. Nodes without a key of the keyring cannot join. Default none.
	SecretKey []byte

	// SecondaryKeys are further keys of the gossip keyring (memberlist.Keyring): they only decrypt. They let the
	// key rotate without a full-cluster restart: give every member the new key as a secondary, then make it primary
	// everywhere, then drop the old one, one rolling restart per step. Needs SecretKey. Default none.
	SecondaryKeys [][]byte

	// TLS, when set, secures the actor remote with mutual TLS 1.3 and admits only members that pass the same
	// handshake (admission.go): Certificates holds this member's certificate (used as server and as client) and
	// RootCAs the cluster CA, which verifies both sides. Default nil: plaintext.
	TLS *tls.Config

	// RemoteServerOptions and RemoteDialOptions are extra gRPC options for the remote. Default none.
	RemoteServerOptions []grpc.ServerOption
	RemoteDialOptions   []grpc.DialOption

	// ProbeInterval is memberlist's failure-probe period. LAN 1 s, local 500 ms.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack before indirect probes. LAN 500 ms, local 250 ms.
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to probe a silent member. LAN 3, local 2.
	IndirectChecks int
	// SuspicionMult scales how long a suspect member has to refute before it is declared dead
	// (SuspicionMult * log10(n) * ProbeInterval, at least SuspicionMult * ProbeInterval). LAN 4, local 3.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout when few members confirm it. LAN 6, local 2.
	SuspicionMaxTimeoutMult int
	// GossipInterval is memberlist's gossip period; membership changes spread in a few of them. LAN 200 ms,
	// local 100 ms.
	GossipInterval time.Duration
	// GossipNodes is how many members each gossip round is sent to. LAN 3, local 3.
	GossipNodes int
	// GossipToTheDeadTime is how long dead members keep receiving gossip (helps a wrongly declared member learn
	// it). LAN 30 s, local 5 s.
	GossipToTheDeadTime time.Duration
	// RetransmitMult scales how often a broadcast is retransmitted (RetransmitMult * log(n+1)). LAN 4, local 3.
	RetransmitMult int
	// PushPullInterval is the period of full state exchanges (anti-entropy). LAN 30 s, local 2 s.
	PushPullInterval time.Duration
	// TCPTimeout bounds memberlist's stream operations (push/pull, join). LAN 10 s, local 1 s.
	TCPTimeout time.Duration
	// AwarenessMaxMultiplier lets a slow node stretch its own probe timings (lifeguard). LAN 8, local 4.
	AwarenessMaxMultiplier int

	// JoinRetryMin and JoinRetryMax bound the back-off between join attempts (at Start, and when rejoining after
	// a self-fence). LAN 200 ms..5 s, local 50 ms..500 ms.
	JoinRetryMin time.Duration
	JoinRetryMax time.Duration

	// RequestTimeout is the deadline of a request whose context has none, and of generated grain client calls
	// made without cluster.WithTimeout. LAN 5 s, local 3 s.
	RequestTimeout time.Duration
	// AttemptTimeout bounds one attempt of a request (activation plus call), so a request sent to a member that
	// died is retried elsewhere before the deadline. Actors must de-duplicate commands by id: a timed-out attempt
	// may have been applied. LAN 2 s, local 1 s.
	AttemptTimeout time.Duration
	// ActivationTimeout bounds one activation request to the owner's placement actor. LAN 1 s, local 500 ms.
	ActivationTimeout time.Duration
	// RetryBackoffMin and RetryBackoffMax bound the exponential back-off (with jitter) between attempts of one
	// request. LAN 20 ms..1 s, local 10 ms..250 ms.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration

	// TopologySettle is how long a member waits, after its view changed, before it activates an identity it did
	// not own in the previous view: the previous owner learns the change in a few gossip rounds and passivates its
	// activation meanwhile, so the two never run at once. It adds to failover time. LAN 2 s, local 750 ms.
	TopologySettle time.Duration
	// TopologyRefreshInterval is how often the topology loop re-reads memberlist even without events, and sends
	// block notices (see FenceGrace). LAN 1 s, local 200 ms.
	TopologyRefreshInterval time.Duration
	// BlockNoticeTTL is how long a received block notice ("member X has declared you dead") counts towards the
	// self-fence decision. LAN 5 s, local 1 s.
	BlockNoticeTTL time.Duration
	// FenceGrace is how long this member tolerates a live member that it has declared dead (and therefore
	// blocked) before it concludes that it is itself the odd one out and fences itself. It must cover the other
	// member's own fence (notice, drain, leave). LAN 30 s, local 8 s.
	FenceGrace time.Duration

	// IsolationWindow: a member that loses all of at least two peers seen live within this window (none of them
	// leaving gracefully) considers itself cut off and fences at once. Cover memberlist's longest suspicion
	// timeout (SuspicionMaxTimeoutMult * SuspicionMult * ProbeInterval). LAN 60 s, local 8 s.
	IsolationWindow time.Duration

	// LeaseTimeout: a member that has heard nothing from any other member (no gossip packet, probe, ack or
	// stream) for this long, while its view holds others, stops and refuses activations until it hears from one
	// again. The others may be about to declare it dead and activate its identities elsewhere, which takes at
	// least SuspicionMult × ProbeInterval + TopologySettle; by then its own activations must be gone, so that no
	// stale state is served. Healthy members hear each other every probe interval. LAN 2 s, local 1 s.
	LeaseTimeout time.Duration

	// ReconnectInterval is how often this member tries to rejoin the addresses of members that departed (declared
	// dead or left). memberlist never contacts dead members again, so without this two sides of a healed
	// partition (or a paused member and the rest) would each go on alone. LAN 5 s, local 500 ms.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a departed member's address is retried. LAN 30 min, local 30 s.
	ReconnectTimeout time.Duration

	// DrainTimeout bounds waiting for local activations to stop (graceful stop, self-fence). LAN 10 s, local 2 s.
	DrainTimeout time.Duration
	// LeaveTimeout bounds waiting for the memberlist leave broadcast. LAN 5 s, local 1 s.
	LeaveTimeout time.Duration
	// RemoteConnectRetries is protoactor's connection attempts per endpoint; each failure costs a fixed 2 s
	// inside protoactor, so keep it low. LAN 2, local 1.
	RemoteConnectRetries int

	// ProtoactorGossipInterval, ProtoactorGossipRequestTimeout and ProtoactorHeartbeatExpiration are handed to
	// protoactor's cluster configuration (its gossip's period, request timeout and the heartbeat age after which
	// its gossip blocks a member). Platter does not start protoactor's gossip (membership is memberlist's, see
	// doc.go), so they take effect only if something starts it; they are set so that nothing in protoactor runs on
	// its own fixed defaults (300 ms, 500 ms, 20 s). LAN 300 ms / 500 ms / 20 s, local 100 ms / 250 ms / 5 s.
	ProtoactorGossipInterval       time.Duration
	ProtoactorGossipRequestTimeout time.Duration
	ProtoactorHeartbeatExpiration  time.Duration

	// AdmissionReadTimeout is how long the mutual TLS admission check (Config.TLS) waits, after its handshake, for
	// the peer's refusal of this member's certificate (TLS 1.3 reports it only on the first read). LAN 100 ms,
	// local 100 ms.
	AdmissionReadTimeout time.Duration

	// DeadLetterThrottleInterval and DeadLetterThrottleCount throttle protoactor's dead-letter logs (they are
	// normal during membership changes). LAN 10 s / 10, local 1 s / 3.
	DeadLetterThrottleInterval time.Duration
	DeadLetterThrottleCount    int

	// Logger receives the node's logs, and protoactor's and memberlist's at mapped levels. nil: slog.Default().
	Logger *slog.Logger

	// Attributes are advertised to every member in this node's metadata (Member.Attributes), e.g. which journal
	// it keeps its actors' state in. Keys are non-empty and hold no "="; keys and values must fit memberlist's
	// 512-byte metadata together with the kinds. Default none.
	Attributes map[string]string

	// Admit decides whether this node shares a cluster with peer (as peer's metadata describes it: kinds,
	// Attributes). It is called from memberlist's goroutines for every member this node learns of, and must be
	// fast and safe for concurrent use. An error keeps peer out: when this node joins, a refused member behind
	// the seed fails Start at once with a *RefusedError; a refused member that joins this node's cluster is
	// ignored here (its own Admit usually refuses too). nil admits every member.
	Admit func(peer Member) error

	// Faults, when set, lets a test pause this node's transports (see Faults). nil in production.
	Faults *Faults
}

// DefaultLANConfig returns production defaults for a LAN: conservative failure detection (about 5-7 s after a
// crash) and a settle time that keeps activations single.
func DefaultLANConfig() Config {
	return Config{
		ClusterName:                    "platter",
		BindAddr:                       "0.0.0.0:7946",
		RemoteAddr:                     "0.0.0.0:8090",
		ProbeInterval:                  time.Second,
		ProbeTimeout:                   500 * time.Millisecond,
		IndirectChecks:                 3,
		SuspicionMult:                  4,
		SuspicionMaxTimeoutMult:        6,
		GossipInterval:                 200 * time.Millisecond,
		GossipNodes:                    3,
		GossipToTheDeadTime:            30 * time.Second,
		RetransmitMult:                 4,
		PushPullInterval:               30 * time.Second,
		TCPTimeout:                     10 * time.Second,
		AwarenessMaxMultiplier:         8,
		JoinRetryMin:                   200 * time.Millisecond,
		JoinRetryMax:                   5 * time.Second,
		RequestTimeout:                 5 * time.Second,
		AttemptTimeout:                 2 * time.Second,
		ActivationTimeout:              time.Second,
		RetryBackoffMin:                20 * time.Millisecond,
		RetryBackoffMax:                time.Second,
		TopologySettle:                 2 * time.Second,
		TopologyRefreshInterval:        time.Second,
		BlockNoticeTTL:                 5 * time.Second,
		FenceGrace:                     30 * time.Second,
		IsolationWindow:                60 * time.Second,
		LeaseTimeout:                   2 * time.Second,
		ReconnectInterval:              5 * time.Second,
		ReconnectTimeout:               30 * time.Minute,
		DrainTimeout:                   10 * time.Second,
		LeaveTimeout:                   5 * time.Second,
		RemoteConnectRetries:           2,
		ProtoactorGossipInterval:       300 * time.Millisecond,
		ProtoactorGossipRequestTimeout: 500 * time.Millisecond,
		ProtoactorHeartbeatExpiration:  20 * time.Second,
		AdmissionReadTimeout:           100 * time.Millisecond,
		DeadLetterThrottleInterval:     10 * time.Second,
		DeadLetterThrottleCount:        10,
	}
}

// DefaultLocalConfig returns fast timings for several members on loopback (tests): 127.0.0.1 with free ports,
// failure detection in about 1-3 s.
func DefaultLocalConfig() Config {
	c := DefaultLANConfig()
	c.BindAddr = "127.0.0.1:0"
	c.RemoteAddr = "127.0.0.1:0"
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.IndirectChecks = 2
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 2
	c.GossipInterval = 100 * time.Millisecond
	c.GossipToTheDeadTime = 5 * time.Second
	c.RetransmitMult = 3
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = time.Second
	c.AwarenessMaxMultiplier = 4
	c.JoinRetryMin = 50 * time.Millisecond
	c.JoinRetryMax = 500 * time.Millisecond
	c.RequestTimeout = 3 * time.Second
	c.AttemptTimeout = time.Second
	c.ActivationTimeout = 500 * time.Millisecond
	c.RetryBackoffMin = 10 * time.Millisecond
	c.RetryBackoffMax = 250 * time.Millisecond
	c.TopologySettle = 750 * time.Millisecond
	c.TopologyRefreshInterval = 200 * time.Millisecond
	c.BlockNoticeTTL = time.Second
	c.FenceGrace = 8 * time.Second
	c.IsolationWindow = 8 * time.Second
	c.LeaseTimeout = time.Second
	c.ReconnectInterval = 500 * time.Millisecond
	c.ReconnectTimeout = 30 * time.Second
	c.DrainTimeout = 2 * time.Second
	c.LeaveTimeout = time.Second
	c.RemoteConnectRetries = 1
	c.ProtoactorGossipInterval = 100 * time.Millisecond
	c.ProtoactorGossipRequestTimeout = 250 * time.Millisecond
	c.ProtoactorHeartbeatExpiration = 5 * time.Second
	c.AdmissionReadTimeout = 100 * time.Millisecond
	c.DeadLetterThrottleInterval = time.Second
	c.DeadLetterThrottleCount = 3
	return c
}

// Validate reports the first problem of the configuration as one line that names the setting.
func (c Config) Validate() error {
	if c.ClusterName == "" {
		return errors.New("cluster: ClusterName is empty")
	}
	if len(c.ClusterName) > 255 {
		return fmt.Errorf("cluster: ClusterName %q: longer than 255 bytes", c.ClusterName)
	}
	addrs := []struct {
		flag, value string
		optional    bool
	}{
		{"--cluster-addr", c.BindAddr, false},
		{"--advertise-addr", c.AdvertiseAddr, true},
		{"--remote-addr", c.RemoteAddr, false},
		{"--remote-advertise-addr", c.RemoteAdvertiseAddr, true},
	}
	for _, a := range addrs {
		if a.optional && a.value == "" {
			continue
		}
		if _, _, err := splitHostPort(a.value); err != nil {
			return fmt.Errorf("cluster: %s %q: %v", a.flag, a.value, err)
		}
	}
	for _, s := range c.Seeds {
		host, port, err := splitHostPort(s)
		if err == nil && (host == "" || port == 0) {
			err = errors.New("seed needs a host and a non-zero port")
		}
		if err != nil {
			return fmt.Errorf("cluster: --join %q: %v", s, err)
		}
	}
	if c.TLS != nil && (len(c.TLS.Certificates) == 0 || c.TLS.RootCAs == nil) {
		return errors.New("cluster: TLS needs Certificates (this member's) and RootCAs (the cluster CA)")
	}
	for k := range c.Attributes {
		if k == "" || strings.Contains(k, "=") {
			return fmt.Errorf("cluster: attribute name %q: want a non-empty name without \"=\"", k)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("cluster: SecretKey: %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if len(c.SecondaryKeys) > 0 && len(c.SecretKey) == 0 {
		return errors.New("cluster: SecondaryKeys need a SecretKey (the primary key)")
	}
	for i, k := range c.SecondaryKeys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("cluster: SecondaryKeys[%d]: %d bytes, want 16, 24 or 32", i, len(k))
		}
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"ProbeInterval", c.ProbeInterval},
		{"ProbeTimeout", c.ProbeTimeout},
		{"GossipInterval", c.GossipInterval},
		{"GossipToTheDeadTime", c.GossipToTheDeadTime},
		{"PushPullInterval", c.PushPullInterval},
		{"TCPTimeout", c.TCPTimeout},
		{"JoinRetryMin", c.JoinRetryMin},
		{"JoinRetryMax", c.JoinRetryMax},
		{"RequestTimeout", c.RequestTimeout},
		{"AttemptTimeout", c.AttemptTimeout},
		{"ActivationTimeout", c.ActivationTimeout},
		{"RetryBackoffMin", c.RetryBackoffMin},
		{"RetryBackoffMax", c.RetryBackoffMax},
		{"TopologyRefreshInterval", c.TopologyRefreshInterval},
		{"BlockNoticeTTL", c.BlockNoticeTTL},
		{"FenceGrace", c.FenceGrace},
		{"IsolationWindow", c.IsolationWindow},
		{"LeaseTimeout", c.LeaseTimeout},
		{"ReconnectInterval", c.ReconnectInterval},
		{"ReconnectTimeout", c.ReconnectTimeout},
		{"DrainTimeout", c.DrainTimeout},
		{"LeaveTimeout", c.LeaveTimeout},
		{"ProtoactorGossipInterval", c.ProtoactorGossipInterval},
		{"ProtoactorGossipRequestTimeout", c.ProtoactorGossipRequestTimeout},
		{"ProtoactorHeartbeatExpiration", c.ProtoactorHeartbeatExpiration},
		{"AdmissionReadTimeout", c.AdmissionReadTimeout},
		{"DeadLetterThrottleInterval", c.DeadLetterThrottleInterval},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return fmt.Errorf("cluster: %s is %v, want a positive duration", d.name, d.d)
		}
	}
	if c.TopologySettle < 0 {
		return fmt.Errorf("cluster: TopologySettle is %v, want zero or more", c.TopologySettle)
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return fmt.Errorf("cluster: ProbeTimeout %v must be shorter than ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.JoinRetryMin > c.JoinRetryMax {
		return fmt.Errorf("cluster: JoinRetryMin %v is above JoinRetryMax %v", c.JoinRetryMin, c.JoinRetryMax)
	}
	if c.RetryBackoffMin > c.RetryBackoffMax {
		return fmt.Errorf("cluster: RetryBackoffMin %v is above RetryBackoffMax %v", c.RetryBackoffMin, c.RetryBackoffMax)
	}
	if takeover := time.Duration(c.SuspicionMult)*c.ProbeInterval + c.TopologySettle; c.LeaseTimeout+c.TopologyRefreshInterval >= takeover {
		return fmt.Errorf("cluster: LeaseTimeout %v plus TopologyRefreshInterval %v must be shorter than SuspicionMult × ProbeInterval + TopologySettle (%v), the earliest the others take over", c.LeaseTimeout, c.TopologyRefreshInterval, takeover)
	}
	if c.LeaseTimeout <= c.ProbeInterval {
		return fmt.Errorf("cluster: LeaseTimeout %v must be longer than ProbeInterval %v", c.LeaseTimeout, c.ProbeInterval)
	}
	if c.FenceGrace <= c.TopologyRefreshInterval {
		return fmt.Errorf("cluster: FenceGrace %v must be longer than TopologyRefreshInterval %v", c.FenceGrace, c.TopologyRefreshInterval)
	}
	counts := []struct {
		name string
		n    int
	}{
		{"IndirectChecks", c.IndirectChecks},
		{"SuspicionMult", c.SuspicionMult},
		{"SuspicionMaxTimeoutMult", c.SuspicionMaxTimeoutMult},
		{"GossipNodes", c.GossipNodes},
		{"RetransmitMult", c.RetransmitMult},
		{"AwarenessMaxMultiplier", c.AwarenessMaxMultiplier},
		{"RemoteConnectRetries", c.RemoteConnectRetries},
		{"DeadLetterThrottleCount", c.DeadLetterThrottleCount},
	}
	for _, n := range counts {
		if n.n < 1 {
			return fmt.Errorf("cluster: %s is %d, want at least 1", n.name, n.n)
		}
	}
	return nil
}

// splitHostPort parses host:port with a numeric port (0 allowed: pick a free one). The host may be empty.
func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, errors.New(ae.Err)
		}
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0-65535", portStr)
	}
	return host, port, nil
}

// logger returns the configured logger or slog.Default().
func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}
