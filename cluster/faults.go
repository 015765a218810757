package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc/credentials"
)

// Faults injects network faults into one node's transports, in-process, for tests. While paused the node behaves
// to its peers like a process stopped with SIGSTOP: its gossip packets are dropped both ways, gossip streams are
// refused, and (unless made by NewGossipFaults) its gRPC connections stall (nothing is read or written) until
// Resume. The node's own goroutines keep running, as its timers would after SIGCONT. Set Config.Faults to use
// it. The remote may be plaintext or mutual TLS (Config.TLS): the server's connections are seen through the
// transport credentials the incarnation installs (trackingCreds), which run the TLS handshake when there is one.
//
// All methods are safe for concurrent use.
type Faults struct {
	gossipOnly bool // the remote is left alone (NewGossipFaults)

	mu      sync.Mutex
	paused  bool
	resumed chan struct{} // closed by Resume; replaced by Pause
}

// NewFaults returns an unpaused fault injector for gossip and the actor remote: the in-process cut of clustertest,
// whose members share one process and so one network.
func NewFaults() *Faults {
	ch := make(chan struct{})
	close(ch)
	return &Faults{resumed: ch}
}

// NewGossipFaults returns an unpaused fault injector for gossip alone. The actor remote is cut outside the
// process, by a proxy in front of its port that the node advertises (Config.RemoteAdvertiseAddr), as the node's
// system tests do; stalling the connections here as well would hide whether the proxy cut anything.
func NewGossipFaults() *Faults {
	f := NewFaults()
	f.gossipOnly = true
	return f
}

// Pause stops all traffic of the node's transports.
func (f *Faults) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.paused {
		f.paused = true
		f.resumed = make(chan struct{})
	}
}

// Resume lets traffic flow again; stalled connections carry on where they stopped.
func (f *Faults) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused {
		f.paused = false
		close(f.resumed)
	}
}

// Paused reports whether traffic is stopped.
func (f *Faults) Paused() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused
}

// wait blocks while paused; it returns early with net.ErrClosed when done closes.
func (f *Faults) wait(done <-chan struct{}) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	ch := f.resumed
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-done:
		return net.ErrClosed
	}
}

// errPaused is what a paused node's dials fail with.
var errPaused = errors.New("transport paused")

// connSet tracks the connections of one incarnation (gRPC client and server side), so Kill can close them all
// at once like a dying process would, and applies Faults to them.
type connSet struct {
	faults *Faults
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newConnSet(f *Faults) *connSet {
	if f != nil && f.gossipOnly {
		f = nil
	}
	return &connSet{faults: f, conns: map[*trackedConn]struct{}{}}
}

// wrap tracks c; it fails (closing c) when the set is already closed.
func (s *connSet) wrap(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, set: s, done: make(chan struct{})}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// dial is the gRPC context dialer of the remote.
func (s *connSet) dial(ctx context.Context, addr string) (net.Conn, error) {
	if s.faults.Paused() {
		return nil, errPaused
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return s.wrap(c)
}

// closeAll closes every tracked connection and refuses new ones.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

// trackedConn is a connection that stalls while its node is paused and leaves its set when closed.
type trackedConn struct {
	net.Conn
	set       *connSet
	closeOnce sync.Once
	done      chan struct{}
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if err := c.set.faults.wait(c.done); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	// Data that arrived while paused is held back until Resume, as a stopped process would not read it.
	if werr := c.set.faults.wait(c.done); werr != nil {
		return 0, werr
	}
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	if err := c.set.faults.wait(c.done); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.set.mu.Lock()
		delete(c.set.conns, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// trackingCreds are gRPC transport credentials whose job is to hand the server's accepted connections to a
// connSet (gRPC offers no other hook on a listener it creates itself); with tls set they then run its handshake
// (mutual TLS, Config.TLS), else they are plaintext.
type trackingCreds struct {
	set *connSet
	tls credentials.TransportCredentials
}

type plainAuthInfo struct{ credentials.CommonAuthInfo }

func (plainAuthInfo) AuthType() string { return "insecure" }

func (t trackingCreds) ClientHandshake(ctx context.Context, authority string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if t.tls != nil {
		return t.tls.ClientHandshake(ctx, authority, c)
	}
	return c, plainAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (t trackingCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	wc, err := t.set.wrap(c)
	if err != nil {
		return nil, nil, err
	}
	if t.tls != nil {
		return t.tls.ServerHandshake(wc)
	}
	return wc, plainAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (t trackingCreds) Info() credentials.ProtocolInfo {
	if t.tls != nil {
		return t.tls.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (t trackingCreds) Clone() credentials.TransportCredentials { return t }

func (t trackingCreds) OverrideServerName(string) error { return nil }

// faultTransport wraps memberlist's network transport. It records when a packet or stream from another member
// last arrived (the member's lease, see Config.LeaseTimeout), and applies Faults: while paused, packets are
// dropped both ways, dials fail and accepted streams are closed.
type faultTransport struct {
	*memberlist.NetTransport
	faults   *Faults // nil: no faults
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	stop     chan struct{}
	wg       sync.WaitGroup
	heard    atomic.Int64 // Unix nanoseconds of the last packet or stream delivered to memberlist
}

func newFaultTransport(nt *memberlist.NetTransport, f *Faults) *faultTransport {
	t := &faultTransport{
		NetTransport: nt,
		faults:       f,
		packetCh:     make(chan *memberlist.Packet),
		streamCh:     make(chan net.Conn),
		stop:         make(chan struct{}),
	}
	t.heard.Store(time.Now().UnixNano())
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

func (t *faultTransport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.NetTransport.PacketCh():
			if t.faults.Paused() {
				continue
			}
			t.heard.Store(time.Now().UnixNano())
			select {
			case t.packetCh <- p:
			case <-t.stop:
				return
			}
		case <-t.stop:
			return
		}
	}
}

func (t *faultTransport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.NetTransport.StreamCh():
			if t.faults.Paused() {
				_ = c.Close()
				continue
			}
			t.heard.Store(time.Now().UnixNano())
			select {
			case t.streamCh <- c:
			case <-t.stop:
				_ = c.Close()
				return
			}
		case <-t.stop:
			return
		}
	}
}

// lastHeard returns when a packet or stream from another member last arrived (the transport's start before any).
func (t *faultTransport) lastHeard() time.Time { return time.Unix(0, t.heard.Load()) }

func (t *faultTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *faultTransport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.faults.Paused() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.faults.Paused() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.faults.Paused() {
		return nil, errPaused
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.faults.Paused() {
		return nil, errPaused
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

func (t *faultTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	close(t.stop)
	t.wg.Wait()
	return err
}
