package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
)

// KindsFunc builds the protoactor kinds for one incarnation of the node. It is called at Start and again after
// every self-fence, so each actor system gets fresh Kind values.
type KindsFunc func() []*pcluster.Kind

// Node is one Platter cluster member. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	kinds KindsFunc
	log   *slog.Logger

	mu         sync.Mutex
	state      nodeState
	inc        *incarnation
	gossipBind string // bound addresses, reused by every incarnation (fixed ports after the first)
	remoteBind string
	ctx        context.Context // ends when Stop or Kill begins
	cancel     context.CancelFunc
	fenceCh    chan *incarnation
	runDone    chan struct{}
	fences     int
}

// NewNode validates cfg and returns a node that is not started.
func NewNode(cfg Config, kinds KindsFunc) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Seeds = slices.Clone(cfg.Seeds)
	cfg.Attributes = maps.Clone(cfg.Attributes)
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		cfg:        cfg,
		kinds:      kinds,
		log:        cfg.logger(),
		state:      stateNew,
		gossipBind: cfg.BindAddr,
		remoteBind: cfg.RemoteAddr,
		ctx:        ctx,
		cancel:     cancel,
		fenceCh:    make(chan *incarnation, 1),
		runDone:    make(chan struct{}),
	}, nil
}

// Start binds the gossip and remote addresses and, when seeds are configured, joins one of them, retrying
// until ctx ends. It returns once the node serves identities. On error nothing is left running.
func (n *Node) Start(ctx context.Context) error {
	if err := n.transition(stateNew, stateJoining); err != nil {
		return err
	}
	inc, err := startIncarnation(n.cfg, n.kinds, n.gossipBind, n.remoteBind, n.requestFence)
	if err != nil {
		n.transition(stateJoining, stateStopped)
		close(n.runDone)
		return err
	}
	n.mu.Lock()
	n.inc = inc
	n.gossipBind, n.remoteBind = inc.gossipBind, inc.remoteBind
	n.mu.Unlock()

	jctx, cancel := mergeContexts(ctx, n.ctx)
	defer cancel()
	err = inc.join(jctx, n.cfg.Seeds)
	if err == nil {
		err = inc.waitServing(jctx)
	}
	if err != nil {
		inc.kill()
		n.transition(stateJoining, stateStopped)
		close(n.runDone)
		return err
	}
	if err := n.transition(stateJoining, stateServing); err != nil {
		inc.kill() // Stop or Kill raced with Start
		close(n.runDone)
		return err
	}
	go n.run()
	return nil
}

// run performs self-fences until the node stops.
func (n *Node) run() {
	defer close(n.runDone)
	for {
		select {
		case <-n.ctx.Done():
			return
		case old := <-n.fenceCh:
			n.fence(old)
		}
	}
}

// requestFence is called by an incarnation's topology loop.
func (n *Node) requestFence(inc *incarnation, reason string) {
	n.mu.Lock()
	current := n.inc == inc && n.state == stateServing
	n.mu.Unlock()
	if !current {
		return
	}
	select {
	case n.fenceCh <- inc:
		n.log.Warn("fencing: this member was declared dead", slog.String("member", inc.id), slog.String("reason", reason))
	default:
	}
}

// fence ends the incarnation old (stop serving, shut its memberlist down without a leave, passivate: see
// incarnation.abandon) and rejoins under a fresh member id on the same addresses, through the configured seeds
// and the peers old last saw.
func (n *Node) fence(old *incarnation) {
	n.mu.Lock()
	if n.inc != old || n.state != stateServing {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	if n.transition(stateServing, stateFencing) != nil {
		return
	}
	seeds := mergeSeeds(n.cfg.Seeds, old.peers(), n.gossipBind, old.gossipAdvHost, old.gossipAdvPort)
	old.abandon()
	start := time.Now()
	bo := newBackoff(n.cfg.JoinRetryMin, n.cfg.JoinRetryMax)
	for attempt := 0; n.ctx.Err() == nil; attempt++ {
		inc, err := startIncarnation(n.cfg, n.kinds, n.gossipBind, n.remoteBind, n.requestFence)
		if err == nil {
			n.mu.Lock()
			if n.state != stateFencing {
				n.mu.Unlock()
				inc.kill()
				return
			}
			n.inc = inc
			n.mu.Unlock()
			err = inc.join(n.ctx, seeds)
			if err == nil {
				err = inc.waitServing(n.ctx)
			}
			if err == nil {
				if n.transition(stateFencing, stateServing) == nil {
					n.mu.Lock()
					n.fences++
					n.mu.Unlock()
					n.log.Info("rejoined after fence", slog.String("from", old.id), slog.String("to", inc.id),
						slog.Duration("took", time.Since(start)))
				}
				return
			}
			inc.kill()
		}
		n.log.Warn("rejoin after fence failed", slog.Int("attempt", attempt), slog.Any("error", err))
		if bo.wait(n.ctx, attempt) != nil {
			return
		}
	}
}

// mergeSeeds returns seeds plus peers, without this node's own gossip addresses.
func mergeSeeds(seeds, peers []string, bind, advHost string, advPort int) []string {
	own := map[string]bool{bind: true, net.JoinHostPort(advHost, strconv.Itoa(advPort)): true}
	var out []string
	for _, s := range append(slices.Clone(seeds), peers...) {
		if !own[s] && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Stop stops the node gracefully: it stops serving, passivates its activations, leaves the memberlist (so the
// others take over its identities without waiting for failure detection) and shuts protoactor down. ctx bounds
// the wait for an ongoing self-fence; the drain and leave are bounded by DrainTimeout and LeaveTimeout.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	switch n.state {
	case stateStopping, stateStopped, stateKilled:
		n.mu.Unlock()
		return nil
	case stateNew:
		n.state = stateStopped
		n.mu.Unlock()
		n.cancel()
		return nil
	}
	n.mu.Unlock()
	if err := n.transitionFrom([]nodeState{stateJoining, stateServing, stateDraining, stateFencing}, stateStopping); err != nil {
		return nil
	}
	n.cancel()
	select {
	case <-n.runDone:
	case <-ctx.Done():
		return fmt.Errorf("cluster: stop: %w", ctx.Err())
	}
	n.mu.Lock()
	inc := n.inc
	n.mu.Unlock()
	if inc != nil {
		inc.stop()
	}
	_ = n.transition(stateStopping, stateStopped)
	return nil
}

// Drain hands this node's identities over to the other members without leaving the cluster: it announces in
// its metadata that it is draining (every member, this one included, then counts it out of the owners of every
// identity, and the new owners activate its identities once their views have settled), refuses activations
// here and stops the local ones. It returns once none is left, or with an error when ctx ends or DrainTimeout
// passes first. From the start Ready reports false (a load balancer stops sending traffic), while Request keeps
// working: requests through this node reach the new owners, so requests in flight finish. Stop then leaves.
// Drain on a node that is not serving returns ErrNotReady; a node drains once.
func (n *Node) Drain(ctx context.Context) error {
	if err := n.transition(stateServing, stateDraining); err != nil {
		return ErrNotReady
	}
	inc := n.current()
	start := time.Now()
	n.log.Info("draining", slog.Any("activations", inc.counts.snapshot()))
	if err := inc.provider.setDraining(); err != nil {
		// The activations still stop here; the others learn of the drain when this member leaves.
		n.log.Warn("announce drain", slog.Any("error", err))
	}
	timeout := n.cfg.DrainTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if _, err := inc.system.Root.RequestFuture(inc.placement, &drainRequest{}, timeout).Result(); err != nil {
		return fmt.Errorf("cluster: drain: activations still running after %v: %w", timeout, err)
	}
	n.log.Info("drained", slog.Duration("took", time.Since(start)))
	return nil
}

// State returns the node's lifecycle state: "new", "joining", "serving", "draining", "fencing", "stopping",
// "stopped" or "killed".
func (n *Node) State() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state.String()
}

// Owns reports whether this node owns identity of kind in its current view: it is serving (not draining), and
// would activate the identity if asked (once its view has settled). Other members may disagree for a moment
// during a membership change; a caller that acts on ownership (the reminder scanner) still goes through the
// cluster, which activates the identity at most once.
func (n *Node) Owns(kind, identity string) bool {
	n.mu.Lock()
	inc, state := n.inc, n.state
	n.mu.Unlock()
	if state != stateServing || inc == nil || !inc.serving.Load() || inc.suspended.Load() {
		return false
	}
	v := inc.view.Load()
	return v != nil && v.owner(kind, identity) == inc.remoteAddr
}

// Kill ends the node abruptly, like kill -9 of its process: transports close without leaving the memberlist,
// activations are not passivated. For tests.
func (n *Node) Kill() {
	n.mu.Lock()
	if n.state == stateKilled || n.state == stateStopped {
		n.mu.Unlock()
		return
	}
	prev := n.state
	n.state = stateKilled
	inc := n.inc
	n.mu.Unlock()
	n.log.Debug("node state", slog.String("from", prev.String()), slog.String("to", stateKilled.String()))
	n.cancel()
	if inc != nil {
		inc.kill()
	}
	if prev != stateNew {
		<-n.runDone
	}
	n.mu.Lock()
	last := n.inc
	n.mu.Unlock()
	if last != nil && last != inc {
		last.kill()
	}
}

// Ready reports whether the node serves identities: started, joined (when seeds are configured), its first
// topology installed, not fencing, draining or stopping, and its lease not lapsed (Config.LeaseTimeout).
func (n *Node) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state == stateServing && n.inc != nil && n.inc.serving.Load() && !n.inc.suspended.Load()
}

// Topology returns the hash of the view this node serves from (protoactor's topology hash of the member ids in
// it) and when the node installed it. Members with the same hash agree on every identity's owner; an owner
// activates an identity it gained only TopologySettle after the view changed. Zero values before the first view.
func (n *Node) Topology() (hash uint64, installed time.Time) {
	inc := n.current()
	if inc == nil {
		return 0, time.Time{}
	}
	v := inc.view.Load()
	if v == nil {
		return 0, time.Time{}
	}
	return v.hash, v.at
}

// Fences returns how many times the node has fenced itself and rejoined.
func (n *Node) Fences() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fences
}

func (n *Node) current() *incarnation {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.inc
}

// Members returns the live members (alive and suspect) in this node's memberlist view, itself included, sorted
// by name, with their status as memberlist holds it and their activations (see Member.Activations). Empty
// before Start.
func (n *Node) Members() []Member {
	inc := n.current()
	if inc == nil || inc.provider == nil || inc.provider.ml == nil || inc.ended.Load() {
		if inc == nil {
			return nil
		}
		return []Member{n.Self()}
	}
	nodes := inc.provider.liveNodes()
	states := inc.provider.ml.NodeStates()
	out := make([]Member, 0, len(nodes))
	for _, nd := range nodes {
		state, ok := states[nd.Name]
		if !ok || nd.Name == inc.id {
			state = memberlist.StateAlive // this member (memberlist never suspects itself), or just joined
		}
		m := memberOf(nd, state, inc.id)
		if m.Self {
			m.Activations = inc.counts.snapshot()
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Self returns this node as a member. After Stop its status is left, after Kill dead.
func (n *Node) Self() Member {
	n.mu.Lock()
	inc, state := n.inc, n.state
	n.mu.Unlock()
	if inc == nil {
		return Member{Self: true, Status: StatusDead}
	}
	m := inc.self()
	switch state {
	case stateStopped, stateStopping:
		m.Status = StatusLeft
	case stateDraining:
		m.Draining = true
	case stateKilled:
		m.Status = StatusDead
	}
	return m
}

// Cluster returns the protoactor cluster of the current incarnation (it changes after a self-fence: fetch it
// for each use). nil before Start.
func (n *Node) Cluster() *pcluster.Cluster {
	inc := n.current()
	if inc == nil {
		return nil
	}
	return inc.cluster
}

// Request sends msg to the activation of identity (of kind) and returns its reply, retrying with back-off
// until ctx's deadline (Config.RequestTimeout when ctx has none). It returns ErrNotReady when the node does not
// serve identities (it does while draining: the requests reach the identities' new owners).
func (n *Node) Request(ctx context.Context, identity, kind string, msg any) (any, error) {
	n.mu.Lock()
	inc, state := n.inc, n.state
	n.mu.Unlock()
	if (state != stateServing && state != stateDraining) || inc == nil || !inc.serving.Load() {
		return nil, ErrNotReady
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
	}
	return inc.request(ctx, inc.system.Root, identity, kind, msg)
}

// Activations returns the number of local activations per kind.
func (n *Node) Activations() map[string]int {
	inc := n.current()
	if inc == nil {
		return map[string]int{}
	}
	return inc.counts.snapshot()
}

// mergeContexts returns a context that ends when either a or b ends.
func mergeContexts(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
