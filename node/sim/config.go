package sim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"time"
)

// Config is one simulation. Zero fields mean their defaults (DefaultConfig); Targets is required.
type Config struct {
	// Targets are the base URLs of the edges to drive (https://127.0.0.1:8080); each simulated party is bound to
	// one, round robin.
	Targets []string
	// OperatorID and OperatorSecret are the bootstrap operator client (operator-credentials.json). Both empty with
	// NoAuth: calls carry no token (a node without an authorization server).
	OperatorID, OperatorSecret string
	// NoAuth sends no tokens at all. Against a node without an authorization server only the operator and
	// restaurant routes work, so no order can be placed; it exists for engines and tests that plug their own auth.
	NoAuth bool
	// InsecureSkipVerify accepts the node's self-signed development certificate.
	InsecureSkipVerify bool

	// Restaurants, Dashers and Customers are the population. Defaults 20, 30, 100.
	Restaurants, Dashers, Customers int
	// DasherCapacity is how many orders a dasher carries at once (1-10). Default 3.
	DasherCapacity int
	// Rate is the target arrival rate of orders per second (open loop). Default 5.
	Rate float64
	// Duration is how long arrivals are scheduled. Default 30 s.
	Duration time.Duration
	// Poisson schedules arrivals with exponential gaps (a Poisson process) instead of evenly. Default false.
	Poisson bool
	// RejectShare, CancelShare and DeclineShare are the shares of orders restaurants reject, of orders customers
	// cancel, and of offers dashers decline. Defaults 0.02, 0.05, 0.1; a negative value means 0.
	RejectShare, CancelShare, DeclineShare float64
	// PrepTime is how long a kitchen takes to make an order after accepting it; TravelTime how long a dasher takes
	// from pickup to the door. Both are jittered ±50%. Defaults 500 ms and 500 ms.
	PrepTime, TravelTime time.Duration
	// MoveEvery is how often an idle dasher moves to a neighbouring cell. Default 10 s.
	MoveEvery time.Duration
	// CustomerGap is the least time between two orders of one customer: the edge limits each customer's orders
	// (default 0.2/s, so 5 s). Arrivals take the customer idle the longest. Default 5 s.
	CustomerGap time.Duration
	// PollWait is the wait of every feed long poll. Default 25 s.
	PollWait time.Duration
	// Drain is how long the simulator waits, after the last arrival, for the orders in flight to end. Default 30 s.
	Drain time.Duration
	// Center is the middle of the simulated city; GridRadius the number of H3 cell rings around it. Defaults San
	// Francisco (37.7749, -122.4194) and 2 (19 cells of about 0.74 km²).
	Center     Position
	GridRadius int
	// SetupConcurrency bounds the calls in flight while creating the population. Default 16.
	SetupConcurrency int
	// LoginAddrs are the local addresses sign-up and sign-in requests are spread over (see ClientOptions);
	// SpreadLogins fills them with loopback addresses when every target is on loopback. Default none.
	LoginAddrs   []net.IP
	SpreadLogins bool
	// Seed makes the simulation's choices repeatable (not its timing). Default 1.
	Seed uint64

	// Progress, when set, receives one line a second while the simulation runs.
	Progress io.Writer
	// ProgressEvery is the period of progress lines. Default 1 s.
	ProgressEvery time.Duration
	// OnWindow, when set, is called with true as the arrival window opens and false as it closes (a benchmark
	// samples the node's CPU time there). Default none.
	OnWindow func(open bool)
	// Logger receives the simulator's own logs. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: a small town at a gentle rate.
func DefaultConfig() Config {
	return Config{
		Restaurants: 20, Dashers: 30, Customers: 100, DasherCapacity: 3,
		Rate: 5, Duration: 30 * time.Second,
		RejectShare: 0.02, CancelShare: 0.05, DeclineShare: 0.1,
		PrepTime: 500 * time.Millisecond, TravelTime: 500 * time.Millisecond, MoveEvery: 10 * time.Second,
		CustomerGap: 5 * time.Second, PollWait: 25 * time.Second, Drain: 30 * time.Second,
		Center: Position{Lat: 37.7749, Lng: -122.4194}, GridRadius: 2, SetupConcurrency: 16, Seed: 1,
		ProgressEvery: time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.Restaurants, d.Restaurants)
	setInt(&c.Dashers, d.Dashers)
	setInt(&c.Customers, d.Customers)
	setInt(&c.DasherCapacity, d.DasherCapacity)
	setInt(&c.GridRadius, d.GridRadius)
	setInt(&c.SetupConcurrency, d.SetupConcurrency)
	if c.Rate <= 0 {
		c.Rate = d.Rate
	}
	setDur(&c.Duration, d.Duration)
	setDur(&c.PrepTime, d.PrepTime)
	setDur(&c.TravelTime, d.TravelTime)
	setDur(&c.MoveEvery, d.MoveEvery)
	setDur(&c.CustomerGap, d.CustomerGap)
	setDur(&c.PollWait, d.PollWait)
	setDur(&c.Drain, d.Drain)
	setDur(&c.ProgressEvery, d.ProgressEvery)
	if c.Center == (Position{}) {
		c.Center = d.Center
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem of the configuration, naming the field as its flag.
func (c Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("--target: at least one edge URL")
	}
	for _, t := range c.Targets {
		u, err := neturl.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--target %q: want http(s)://host:port", t)
		}
	}
	if !c.NoAuth && (c.OperatorID == "" || c.OperatorSecret == "") {
		return errors.New("--operator-credentials: the operator client id and secret are required")
	}
	for _, s := range []struct {
		flag string
		v    float64
	}{{"--reject-share", c.RejectShare}, {"--cancel-share", c.CancelShare}, {"--decline-share", c.DeclineShare}} {
		if s.v > 1 {
			return fmt.Errorf("%s %v: a share is 0-1", s.flag, s.v)
		}
	}
	if c.DasherCapacity > 10 {
		return fmt.Errorf("--dasher-capacity %d: at most 10", c.DasherCapacity)
	}
	if c.PollWait > 30*time.Second {
		return fmt.Errorf("--poll-wait %v: at most 30s", c.PollWait)
	}
	if c.Center.Lat < -90 || c.Center.Lat > 90 || c.Center.Lng < -180 || c.Center.Lng > 180 {
		return fmt.Errorf("--center %v: not a position", c.Center)
	}
	return nil
}

// loopbackTargets reports whether every target is a loopback address.
func loopbackTargets(targets []string) bool {
	for _, t := range targets {
		u, err := neturl.Parse(t)
		if err != nil {
			return false
		}
		ip := net.ParseIP(u.Hostname())
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return false
		}
	}
	return len(targets) > 0
}

// LoopbackAddrs returns n distinct IPv4 loopback addresses in 127.77.0.0/16 (Linux routes all of 127/8 to the
// loopback interface, so a socket may bind any of them without configuration).
func LoopbackAddrs(n int) []net.IP {
	out := make([]net.IP, 0, n)
	for i := range min(n, 250*250) {
		out = append(out, net.IPv4(127, 77, byte(i/250), byte(i%250+1)))
	}
	return out
}

// loginsPerAddr is how many parties share a login address: each makes at most 2 sign-up/sign-in calls, and the
// edge's default login limit allows a burst of 10 per address.
const loginsPerAddr = 4
