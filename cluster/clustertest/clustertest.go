package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/cluster"
)

// Cluster is a test cluster: N members in this process on 127.0.0.1 with free ports and DefaultLocalConfig.
// Every member hosts EchoKind (plus the kinds of WithKinds). Methods fail the test through t.Fatalf and must be
// called from the test goroutine, except Node, Registry, Live and Request, which are safe anywhere.
type Cluster struct {
	t      testing.TB
	reg    *Registry
	opts   options
	logger *slog.Logger

	mu      sync.Mutex
	members []*member
}

type member struct {
	index  int
	node   *cluster.Node
	cfg    cluster.Config
	faults *cluster.Faults
	gossip string // bound gossip address, reused by Restart
	remote string // bound remote address, reused by Restart
	down   bool   // killed or stopped
}

type options struct {
	configure       func(*cluster.Config)
	configureMember func(i int, c *cluster.Config)
	kinds           func() []*pcluster.Kind
}

// Option changes how New builds members.
type Option func(*options)

// WithConfig lets a test adjust every member's configuration (after DefaultLocalConfig, before addresses and
// seeds are set).
func WithConfig(f func(*cluster.Config)) Option {
	return func(o *options) { o.configure = f }
}

// WithMemberConfig lets a test adjust member i's configuration (after WithConfig's function, before addresses and
// seeds are set). It is called for every start of the member (Add, Restart).
func WithMemberConfig(f func(i int, c *cluster.Config)) Option {
	return func(o *options) { o.configureMember = f }
}

// WithKinds adds kinds to every member, next to EchoKind. f is called for every incarnation.
func WithKinds(f func() []*pcluster.Kind) Option {
	return func(o *options) { o.kinds = f }
}

// New starts n members (member 0 first, the others joining it) and waits until all of them are ready and see
// each other. t.Cleanup stops them all.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, reg: newRegistry(), logger: testLogger()}
	for _, o := range opts {
		o(&c.opts)
	}
	t.Cleanup(c.stopAll)
	for i := 0; i < n; i++ {
		c.Add()
	}
	c.WaitConverged(30 * time.Second)
	return c
}

// testLogger writes to stderr at the level of CLUSTERTEST_LOG (debug, info, warn, error); default error.
func testLogger() *slog.Logger {
	var level slog.Level
	switch strings.ToLower(os.Getenv("CLUSTERTEST_LOG")) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Registry returns the registry of EchoKind activations.
func (c *Cluster) Registry() *Registry { return c.reg }

// Len returns the number of members ever added (live or down).
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Node returns member i's current node.
func (c *Cluster) Node(i int) *cluster.Node {
	return c.member(i).node
}

func (c *Cluster) member(i int) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.members) {
		c.t.Fatalf("clustertest: no member %d (have %d)", i, len(c.members))
	}
	return c.members[i]
}

// Up returns the indexes of the members that are not killed or stopped.
func (c *Cluster) Up() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range c.members {
		if !m.down {
			out = append(out, i)
		}
	}
	return out
}

func (c *Cluster) config(m *member, seeds []string) cluster.Config {
	cfg := cluster.DefaultLocalConfig()
	if c.opts.configure != nil {
		c.opts.configure(&cfg)
	}
	if c.opts.configureMember != nil {
		c.opts.configureMember(m.index, &cfg)
	}
	cfg.BindAddr = m.gossip
	cfg.RemoteAddr = m.remote
	cfg.Seeds = seeds
	cfg.Faults = m.faults
	cfg.Logger = c.logger.With(slog.Int("test_member", m.index))
	return cfg
}

func (c *Cluster) kinds() []*pcluster.Kind {
	ks := []*pcluster.Kind{echoKind(c.reg)}
	if c.opts.kinds != nil {
		ks = append(ks, c.opts.kinds()...)
	}
	return ks
}

// liveSeeds returns the gossip addresses of the members that are up, except skip.
func (c *Cluster) liveSeeds(skip int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, m := range c.members {
		if i != skip && !m.down {
			out = append(out, m.gossip)
		}
	}
	return out
}

// start builds and starts m's node, joining seeds.
func (c *Cluster) start(m *member, seeds []string) {
	c.t.Helper()
	cfg := c.config(m, seeds)
	node, err := cluster.NewNode(cfg, c.kinds)
	if err != nil {
		c.t.Fatalf("clustertest: new node: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		c.t.Fatalf("clustertest: start member on %s: %v", m.gossip, err)
	}
	self := node.Self()
	c.mu.Lock()
	m.node, m.cfg, m.down = node, cfg, false
	m.gossip, m.remote = self.GossipAddr, self.RemoteAddr
	c.mu.Unlock()
}

// Add starts a new member that joins the members that are up, and returns its index. It does not wait for the
// others to see it (use WaitConverged).
func (c *Cluster) Add() int {
	c.t.Helper()
	c.mu.Lock()
	m := &member{index: len(c.members), faults: cluster.NewFaults(), gossip: "127.0.0.1:0", remote: "127.0.0.1:0", down: true}
	c.members = append(c.members, m)
	c.mu.Unlock()
	c.start(m, c.liveSeeds(m.index))
	return m.index
}

// Kill ends member i abruptly (no leave, no passivation), like kill -9 of its process; its activations stop
// counting in the registry at once.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.member(i)
	id := m.node.Self().ID
	m.node.Kill()
	c.reg.memberDied(id)
	c.mu.Lock()
	m.down = true
	c.mu.Unlock()
}

// Stop stops member i gracefully.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	m := c.member(i)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.node.Stop(ctx); err != nil {
		c.t.Fatalf("clustertest: stop member %d: %v", i, err)
	}
	c.mu.Lock()
	m.down = true
	c.mu.Unlock()
}

// Drain drains member i (cluster.Node.Drain): it keeps routing requests but owns and hosts nothing once Drain
// returns. Stop it afterwards.
func (c *Cluster) Drain(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.member(i).node.Drain(ctx); err != nil {
		c.t.Fatalf("clustertest: drain member %d: %v", i, err)
	}
}

// Restart starts member i again (after Kill or Stop; a live member is killed first) on the same addresses with a
// fresh member id, joining the members that are up.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.member(i)
	c.mu.Lock()
	down := m.down
	c.mu.Unlock()
	if !down {
		c.Kill(i)
	}
	m.faults.Resume()
	c.start(m, c.liveSeeds(i))
}

// Pause stops all traffic of member i (see cluster.Faults): the others declare it dead after failure detection.
func (c *Cluster) Pause(i int) { c.member(i).faults.Pause() }

// Resume lets member i's traffic flow again.
func (c *Cluster) Resume(i int) { c.member(i).faults.Resume() }

// Request asks identity's EchoKind activation through member i and returns the id of the member that answered.
func (c *Cluster) Request(ctx context.Context, i int, identity string) (string, error) {
	res, err := c.Node(i).Request(ctx, identity, EchoKind, wrapperspb.String("ping"))
	if err != nil {
		return "", err
	}
	s, ok := res.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("clustertest: unexpected reply %T", res)
	}
	return s.GetValue(), nil
}

// IndexOf returns the index of the member whose current member id is id, or -1.
func (c *Cluster) IndexOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.node != nil && m.node.Self().ID == id {
			return i
		}
	}
	return -1
}

// WaitFor polls cond every 20 ms until it holds, failing the test with msg after timeout.
func (c *Cluster) WaitFor(cond func() bool, timeout time.Duration, msg string) {
	c.t.Helper()
	if err := Poll(cond, timeout); err != nil {
		c.t.Fatalf("clustertest: %s: %v", msg, err)
	}
}

// Poll polls cond every 20 ms until it holds or timeout passes.
func Poll(cond func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Converged reports whether every member that is up is ready, sees exactly the members that are up (all alive),
// and serves from the same view, installed at least TopologySettle ago: then every member agrees on each
// identity's owner and the owners activate what they gained in the last change.
func (c *Cluster) Converged() error {
	up := c.Up()
	want := map[string]bool{}
	var hash uint64
	for k, i := range up {
		n := c.Node(i)
		if !n.Ready() {
			return fmt.Errorf("member %d not ready", i)
		}
		want[n.Self().ID] = true
		h, at := n.Topology()
		if k == 0 {
			hash = h
		} else if h != hash {
			return fmt.Errorf("member %d serves view %x, member %d view %x", i, h, up[0], hash)
		}
		if settle := c.member(i).cfg.TopologySettle; time.Since(at) < settle {
			return fmt.Errorf("member %d installed its view %v ago, less than the settle time %v", i, time.Since(at), settle)
		}
	}
	for _, i := range up {
		ms := c.Node(i).Members()
		if len(ms) != len(want) {
			return fmt.Errorf("member %d sees %d members, want %d", i, len(ms), len(want))
		}
		for _, m := range ms {
			if !want[m.ID] || m.Status != cluster.StatusAlive {
				return fmt.Errorf("member %d sees %s as %s", i, m.ID, m.Status)
			}
		}
	}
	return nil
}

// WaitConverged waits until Converged holds.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.t.Helper()
	var last error
	err := Poll(func() bool { last = c.Converged(); return last == nil }, timeout)
	if err != nil {
		c.t.Fatalf("clustertest: cluster did not converge: %v (last: %v)", err, last)
	}
}

// stopAll stops every member that is up, in parallel (t.Cleanup).
func (c *Cluster) stopAll() {
	c.mu.Lock()
	var nodes []*cluster.Node
	for _, m := range c.members {
		if !m.down && m.node != nil {
			nodes = append(nodes, m.node)
			m.down = true
		}
		m.faults.Resume()
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	var errs []error
	var emu sync.Mutex
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.Stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("clustertest: stop: %v", err)
	}
}
