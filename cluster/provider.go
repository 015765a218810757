package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
)

// provider is the memberlist-backed protoactor ClusterProvider of one incarnation.
//
// Concurrency contract: memberlist calls the delegate methods from its own goroutines; they only record notices
// and wake the topology loop. Exactly one goroutine, the topology loop, reads memberlist's member list, calls
// MemberList.UpdateClusterTopology (protoactor's member list and block list are not safe for concurrent
// updates), installs the new view and decides whether to fence. StartMember and Shutdown are called once each,
// by the incarnation.
type provider struct {
	cfg   Config
	log   *slog.Logger
	inc   *incarnation // nil in unit tests
	selfM *pcluster.Member

	metaMu      sync.Mutex
	meta        []byte // what NodeMeta announces: selfM, Config.Attributes, draining, activations
	draining    bool
	activations map[string]int // the local activations by kind, as last announced

	// Set before the loop starts.
	ml        *memberlist.Memberlist
	members   func() []*memberlist.Node                   // ml.Members in production
	send      func(to *memberlist.Node, msg []byte) error // ml.SendBestEffort in production
	topo      *pcluster.MemberList
	blocked   func(id string) bool
	install   func(v *view)    // hands a new view to the incarnation
	fence     func(string)     // asks the node to fence this incarnation, with the reason
	lastHeard func() time.Time // when another member was last heard (nil: no lease)
	suspend   func(on bool)    // suspends or resumes activations (the lease)
	now       func() time.Time

	reinstall atomic.Bool // install the view again even if unchanged (set when the member has joined)

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// memberlist hands out pointers to nodes it keeps mutating under its own lock (Members, LocalNode), so we
	// keep copies taken in the event callbacks, which memberlist calls with that lock held.
	tableMu sync.Mutex
	table   map[string]memberlist.Node // live nodes by name

	// Departed members by name, to rejoin (see Config.ReconnectInterval).
	failedMu sync.Mutex
	failed   map[string]failedNode

	reconnectDone chan struct{}
	announceDone  chan struct{}
	counts        func() map[string]int // the local activations by kind (nil: none announced)

	noticeMu sync.Mutex
	notices  map[string]time.Time // member id that declared us dead → when it last said so

	// Loop-confined.
	lastHash      uint64
	lastDrainHash uint64 // of the ids of draining members in the last installed view
	installed     bool
	suspended     bool                 // the lease lapsed (see Config.LeaseTimeout)
	peersInView   bool                 // the last installed view holds other members
	blockedSince  map[string]time.Time // live member ids we have blocked → since when
	recentPeers   map[string]time.Time // peer ids → last seen live (isolation check)

	leaving map[string]time.Time // peers that announced a graceful leave (under noticeMu)

	// Refusals by Config.Admit (memberlist goroutines).
	refusedMu     sync.Mutex
	refused       error           // the last refusal, for a join to report
	refusedLogged map[string]bool // member names whose refusal was logged
}

func newProvider(cfg Config, log *slog.Logger, self *pcluster.Member) (*provider, error) {
	meta, err := encodeMemberMeta(memberMeta{pm: self, attributes: cfg.Attributes, activations: map[string]int{}})
	if err != nil {
		return nil, err
	}
	return &provider{
		cfg:           cfg,
		log:           log,
		selfM:         self,
		meta:          meta,
		activations:   map[string]int{},
		now:           time.Now,
		wake:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
		notices:       map[string]time.Time{},
		table:         map[string]memberlist.Node{},
		failed:        map[string]failedNode{},
		reconnectDone: make(chan struct{}),
		announceDone:  make(chan struct{}),
		blockedSince:  map[string]time.Time{},
		recentPeers:   map[string]time.Time{},
		leaving:       map[string]time.Time{},
		refusedLogged: map[string]bool{},
	}, nil
}

// updateMeta re-encodes this member's metadata (after the remote address is known, or when it starts draining).
func (p *provider) updateMeta() error {
	p.metaMu.Lock()
	defer p.metaMu.Unlock()
	return p.updateMetaLocked()
}

func (p *provider) updateMetaLocked() error {
	meta, err := encodeMemberMeta(memberMeta{pm: p.selfM, attributes: p.cfg.Attributes, draining: p.draining,
		activations: p.activations})
	if err != nil {
		return err
	}
	p.meta = meta
	return nil
}

// announceLoop announces this member's activation counts in its metadata (see Member.Activations): every
// TopologyRefreshInterval, when they changed since the last announcement. An announcement is one memberlist
// metadata update (an alive broadcast), so a member that activates all the time costs one small broadcast per
// interval, not one per activation.
func (p *provider) announceLoop() {
	defer close(p.announceDone)
	t := time.NewTicker(p.cfg.TopologyRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		counts := p.counts()
		p.metaMu.Lock()
		if maps.Equal(counts, p.activations) {
			p.metaMu.Unlock()
			continue
		}
		prev := p.activations
		p.activations = counts
		err := p.updateMetaLocked()
		if err != nil {
			p.activations = prev
		}
		p.metaMu.Unlock()
		if err != nil {
			p.log.Warn("activation counts not announced", slog.Any("error", err))
			continue
		}
		// The wait covers the broadcast going out; a member alone in the cluster has no one to wait for.
		if err := p.ml.UpdateNode(p.cfg.TopologyRefreshInterval); err != nil {
			p.log.Debug("activation counts announcement", slog.Any("error", err))
		}
	}
}

// setDraining announces that this member is draining: every member (this one included) then leaves it out of
// the owners of every identity. It waits up to LeaveTimeout for the announcement to go out.
func (p *provider) setDraining() error {
	p.metaMu.Lock()
	p.draining = true
	p.metaMu.Unlock()
	if err := p.updateMeta(); err != nil {
		return err
	}
	defer p.poke()
	if p.ml == nil {
		return nil
	}
	return p.ml.UpdateNode(p.cfg.LeaveTimeout)
}

var _ pcluster.ClusterProvider = (*provider)(nil)

// StartMember creates the memberlist of the incarnation (its transport is already bound) and starts the
// topology loop. It does not join: the node joins its seeds with retries afterwards.
func (p *provider) StartMember(c *pcluster.Cluster) error {
	inc := p.inc
	mc := memberlist.DefaultLANConfig()
	mc.Name = p.selfM.Id
	mc.Transport = inc.transport
	mc.BindAddr, mc.BindPort = inc.gossipHost, inc.gossipPort
	mc.AdvertiseAddr, mc.AdvertisePort = inc.gossipAdvHost, inc.gossipAdvPort
	mc.Label = p.cfg.ClusterName
	mc.ProbeInterval = p.cfg.ProbeInterval
	mc.ProbeTimeout = p.cfg.ProbeTimeout
	mc.IndirectChecks = p.cfg.IndirectChecks
	mc.SuspicionMult = p.cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = p.cfg.SuspicionMaxTimeoutMult
	mc.GossipInterval = p.cfg.GossipInterval
	mc.GossipNodes = p.cfg.GossipNodes
	mc.GossipToTheDeadTime = p.cfg.GossipToTheDeadTime
	mc.RetransmitMult = p.cfg.RetransmitMult
	mc.PushPullInterval = p.cfg.PushPullInterval
	mc.TCPTimeout = p.cfg.TCPTimeout
	mc.AwarenessMaxMultiplier = p.cfg.AwarenessMaxMultiplier
	if len(p.cfg.SecretKey) > 0 {
		// A keyring: the primary key encrypts, every key decrypts (the secondaries serve a rotation).
		keys := make([][]byte, 0, len(p.cfg.SecondaryKeys))
		for _, k := range p.cfg.SecondaryKeys {
			keys = append(keys, append([]byte(nil), k...))
		}
		kr, err := memberlist.NewKeyring(keys, append([]byte(nil), p.cfg.SecretKey...))
		if err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
	}
	mc.Delegate = p
	mc.Events = p
	mc.Merge = p
	mc.Alive = p
	if p.cfg.TLS != nil {
		mc.Merge = newAdmission(p.selfM.Id, p.cfg.TLS, p.cfg.TCPTimeout, p.cfg.AdmissionReadTimeout, p.log, mc.Merge)
	}
	mc.Logger = newMemberlistLogger(p.log)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return err
	}
	p.ml = ml
	p.members = p.liveNodes
	p.send = ml.SendBestEffort
	p.topo = c.MemberList
	blockList := c.Remote.BlockList()
	p.blocked = blockList.IsBlocked
	go p.loop()
	go p.reconnectLoop()
	if inc != nil {
		p.counts = inc.counts.snapshot
		go p.announceLoop()
	} else {
		close(p.announceDone)
	}
	return nil
}

type failedNode struct {
	addr  string
	since time.Time
}

// reconnectLoop periodically joins the addresses of members declared dead, until they are alive again or
// ReconnectTimeout passes. A joined push/pull makes both sides refute the other's death claims, after which the
// block notices sort out who must fence.
func (p *provider) reconnectLoop() {
	defer close(p.reconnectDone)
	t := time.NewTicker(p.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		live := map[string]bool{}
		for _, n := range p.liveNodes() {
			live[n.Address()] = true
		}
		now := p.now()
		var addrs []string
		p.failedMu.Lock()
		for name, f := range p.failed {
			switch {
			case now.Sub(f.since) > p.cfg.ReconnectTimeout:
				delete(p.failed, name)
			case !live[f.addr] && !slices.Contains(addrs, f.addr):
				addrs = append(addrs, f.addr)
			}
		}
		p.failedMu.Unlock()
		if len(addrs) == 0 {
			continue
		}
		if n, err := p.ml.Join(addrs); n > 0 {
			p.log.Info("reconnected to members declared dead", slog.Int("contacted", n))
		} else {
			p.log.Debug("reconnect failed", slog.Any("addrs", addrs), slog.Any("error", err))
		}
	}
}

// StartClient is not supported: every Platter node is a member.
func (p *provider) StartClient(*pcluster.Cluster) error {
	return errors.New("cluster: client mode is not supported")
}

// Shutdown stops the topology loop, leaves the memberlist when graceful (waiting up to LeaveTimeout for the
// broadcast) and shuts it down.
func (p *provider) Shutdown(graceful bool) error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	if p.ml == nil {
		return nil
	}
	<-p.done
	<-p.reconnectDone
	<-p.announceDone
	var err error
	if graceful {
		if lerr := p.ml.Leave(p.cfg.LeaveTimeout); lerr != nil {
			err = lerr
		}
	}
	if serr := p.ml.Shutdown(); serr != nil && err == nil {
		err = serr
	}
	return err
}

// poke wakes the topology loop without blocking.
func (p *provider) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *provider) loop() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.TopologyRefreshInterval)
	defer t.Stop()
	p.refresh()
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		case <-t.C:
		}
		p.refresh()
	}
}

// refresh is one turn of the topology loop: push memberlist's live members to protoactor, install the resulting
// view, send block notices and decide whether to fence.
func (p *provider) refresh() {
	nodes := p.members()
	metas := liveMetas(nodes, func(name string, err error) {
		p.log.Warn("member with unreadable metadata ignored", slog.String("node", name), slog.Any("error", err))
	})
	members := make(pcluster.Members, 0, len(metas))
	for _, mm := range metas {
		members = append(members, mm.pm)
	}
	p.topo.UpdateClusterTopology(members)
	set := p.topo.Members()
	// The view is protoactor's active (not blocked) members as they announce themselves now: protoactor keeps the
	// Member it saw first, so a member's later change (it started draining) is read from memberlist. A draining
	// member is in the view but hosts no kind: it owns nothing.
	var active pcluster.Members
	var draining []string
	for _, mm := range metas {
		if !set.ContainsID(mm.pm.Id) {
			continue
		}
		m := mm.pm
		if mm.draining {
			m = &pcluster.Member{Id: m.Id, Host: m.Host, Port: m.Port}
			draining = append(draining, m.Id)
		}
		active = append(active, m)
	}
	drainHash := hashStrings(draining)
	if !p.installed || set.TopologyHash() != p.lastHash || drainHash != p.lastDrainHash || p.reinstall.Swap(false) {
		p.installed = true
		p.lastHash, p.lastDrainHash = set.TopologyHash(), drainHash
		v := newView(set.TopologyHash(), active, p.now())
		p.peersInView = len(v.members) > 1
		p.log.Info("topology changed", slog.Int("members", len(v.members)), slog.Int("draining", len(draining)),
			slog.Uint64("hash", v.hash))
		if p.install != nil {
			p.install(v)
		}
	}
	reason := p.checkFence(nodes)
	p.checkLease(reason != "")
	if reason != "" && p.fence != nil {
		p.fence(reason)
	}
}

// checkLease suspends this member's activations when it has heard nothing from any other member for LeaseTimeout
// while its view still holds others, and resumes them when it hears from one again. A member cut off from the
// others (a partition, a long pause) keeps its view until its own failure detection runs, which takes as long as
// the others' (longer when alone: no one confirms its suspicions). Meanwhile the others declare it dead and,
// after TopologySettle, activate its identities. Suspending at LeaseTimeout, well before that, means the cut-off
// member's activations are stopped before the new ones start: no stale state is served. fencing keeps a
// member suspended in the turn it fences. A member alone in its view (a one-member cluster, or the survivor of a
// two-member cluster) is never suspended.
func (p *provider) checkLease(fencing bool) {
	if p.lastHeard == nil || p.suspend == nil {
		return
	}
	silent := p.now().Sub(p.lastHeard())
	lapsed := fencing || (p.peersInView && silent > p.cfg.LeaseTimeout)
	if lapsed == p.suspended {
		return
	}
	p.suspended = lapsed
	if lapsed {
		p.log.Warn("lease lapsed: no other member heard; activations suspended", slog.Duration("silent", silent))
	} else {
		p.log.Info("lease renewed: activations resumed")
	}
	p.suspend(lapsed)
}

// checkFence sends block notices to live members that this member has blocked, and returns a reason to fence
// this incarnation, or "".
//
// protoactor blocks a member id forever once it left the topology. When a member M is declared dead by memberlist
// and comes back (a pause, a partition), the members that saw it dead keep it out of their topology for good,
// and M keeps its own view: the cluster is split. Whoever is blocked must restart under a fresh member id. This
// member learns it is blocked from notices, and fences when
//   - a majority of its live peers have declared it dead (the usual case: M was paused, everyone else agrees), or
//   - a live member it has itself blocked has not fenced within FenceGrace (then it is this member whose view is
//     the odd one: the other did not get a majority against it).
func (p *provider) checkFence(nodes []*memberlist.Node) string {
	now := p.now()
	self := p.selfM.Id
	live := map[string]bool{}
	for _, n := range nodes {
		if n.Name == self || (n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect) {
			continue
		}
		live[n.Name] = true
		if !p.blocked(n.Name) {
			delete(p.blockedSince, n.Name)
			continue
		}
		if _, ok := p.blockedSince[n.Name]; !ok {
			p.blockedSince[n.Name] = now
			p.log.Warn("member declared dead is alive again", slog.String("member", n.Name))
		}
		if err := p.send(n, encodeNotice(self, n.Name)); err != nil {
			p.log.Debug("block notice not sent", slog.String("member", n.Name), slog.Any("error", err))
		}
	}
	for id := range p.blockedSince {
		if !live[id] {
			delete(p.blockedSince, id)
		}
	}

	p.noticeMu.Lock()
	against := 0
	for id, at := range p.notices {
		if now.Sub(at) > p.cfg.BlockNoticeTTL {
			delete(p.notices, id)
			continue
		}
		if live[id] {
			against++
		}
	}
	p.noticeMu.Unlock()

	if len(live) > 0 && 2*against > len(live) {
		return "declared dead by a majority of members"
	}
	if reason := p.checkIsolated(live, now); reason != "" {
		return reason
	}
	for id, since := range p.blockedSince {
		if now.Sub(since) >= p.cfg.FenceGrace {
			return "member " + id + " stayed alive after this member declared it dead"
		}
	}
	return ""
}

// checkIsolated fences a member that lost every other member at once: all of at least two peers seen live within
// IsolationWindow are gone, and none of them announced it was leaving. Crashing together is far less likely than
// this member being cut off (paused, partitioned); fencing now means it stops serving its one-member view, and it
// rejoins later with a fresh memberlist instead of spreading its stale death claims about the others (which make
// healthy members suspect each other). A two-member cluster never fences this way: there the survivor of a
// crash must go on serving.
func (p *provider) checkIsolated(live map[string]bool, now time.Time) string {
	for id := range live {
		p.recentPeers[id] = now
	}
	p.noticeMu.Lock()
	defer p.noticeMu.Unlock()
	lost := 0
	for id, seen := range p.recentPeers {
		left, announced := p.leaving[id]
		switch {
		case now.Sub(seen) > p.cfg.IsolationWindow:
			delete(p.recentPeers, id)
		case announced && now.Sub(left) <= p.cfg.IsolationWindow:
		case !live[id]:
			lost++
		}
	}
	for id, at := range p.leaving {
		if now.Sub(at) > p.cfg.IsolationWindow {
			delete(p.leaving, id)
		}
	}
	if len(live) == 0 && lost >= 2 {
		return "lost every other member at once: isolated"
	}
	return ""
}

// Block notices are memberlist user messages: a magic prefix, the sender's id and the id it has blocked.
var noticeMagic = []byte("platter/blocked\x00")

// Leaving notices ("platter/leaving\x00<id>") are sent by a member that stops gracefully, so its peers do not
// count its departure towards isolation.
var leavingMagic = []byte("platter/leaving\x00")

// announceLeaving tells every live peer that this member is leaving on purpose.
func (p *provider) announceLeaving() {
	msg := append(append([]byte(nil), leavingMagic...), p.selfM.Id...)
	for _, n := range p.liveNodes() {
		if n.Name != p.selfM.Id && p.send != nil {
			_ = p.send(n, msg)
		}
	}
}

func encodeNotice(from, to string) []byte {
	b := append([]byte(nil), noticeMagic...)
	b = append(b, from...)
	b = append(b, 0)
	return append(b, to...)
}

func decodeNotice(b []byte) (from, to string, ok bool) {
	rest, found := bytes.CutPrefix(b, noticeMagic)
	if !found {
		return "", "", false
	}
	f, t, found := bytes.Cut(rest, []byte{0})
	if !found || len(f) == 0 || len(t) == 0 {
		return "", "", false
	}
	return string(f), string(t), true
}

// memberlist.Delegate (called from memberlist goroutines).

func (p *provider) NodeMeta(int) []byte {
	p.metaMu.Lock()
	defer p.metaMu.Unlock()
	return p.meta
}

func (p *provider) NotifyMsg(b []byte) {
	if id, found := bytes.CutPrefix(b, leavingMagic); found && len(id) > 0 {
		p.noticeMu.Lock()
		p.leaving[string(id)] = p.now()
		p.noticeMu.Unlock()
		return
	}
	from, to, ok := decodeNotice(b)
	if !ok || to != p.selfM.Id {
		return
	}
	p.noticeMu.Lock()
	_, seen := p.notices[from]
	p.notices[from] = p.now()
	p.noticeMu.Unlock()
	if !seen {
		p.log.Warn("member says it declared this member dead", slog.String("from", from))
	}
	p.poke()
}

func (p *provider) GetBroadcasts(int, int) [][]byte { return nil }

func (p *provider) LocalState(bool) []byte { return nil }

func (p *provider) MergeRemoteState([]byte, bool) {}

// memberlist.MergeDelegate and memberlist.AliveDelegate (called from memberlist goroutines): Config.Admit keeps
// refused members out, both when this member joins a cluster (the merge of the seed's member list) and when a
// member joins this one or is gossiped about (its alive messages are ignored).

func (p *provider) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		if err := p.admit(n); err != nil {
			return err
		}
	}
	return nil
}

func (p *provider) NotifyAlive(peer *memberlist.Node) error { return p.admit(peer) }

// admit asks Config.Admit about n. Members whose metadata does not decode are left to the topology loop (which
// skips them).
func (p *provider) admit(n *memberlist.Node) error {
	if p.cfg.Admit == nil || n.Name == p.selfM.Id {
		return nil
	}
	if _, err := decodeMemberMeta(n.Name, n.Meta); err != nil {
		return nil
	}
	m := memberOf(n, memberlist.StateAlive, p.selfM.Id)
	aerr := p.cfg.Admit(m)
	if aerr == nil {
		return nil
	}
	err := &RefusedError{Member: m, Reason: aerr}
	p.refusedMu.Lock()
	p.refused = err
	logged := p.refusedLogged[n.Name]
	p.refusedLogged[n.Name] = true
	p.refusedMu.Unlock()
	if !logged {
		p.log.Warn("member refused", slog.String("node", n.Name), slog.String("addr", m.GossipAddr), slog.Any("error", aerr))
	}
	return err
}

// refusal returns the last refusal by Config.Admit, or nil.
func (p *provider) refusal() error {
	p.refusedMu.Lock()
	defer p.refusedMu.Unlock()
	return p.refused
}

// memberlist.EventDelegate (called from memberlist goroutines).

func (p *provider) NotifyJoin(n *memberlist.Node) {
	p.record(n)
	p.failedMu.Lock()
	delete(p.failed, n.Name)
	p.failedMu.Unlock()
	p.log.Debug("memberlist join", slog.String("node", n.Name), slog.String("addr", n.Address()))
	p.poke()
}

func (p *provider) NotifyLeave(n *memberlist.Node) {
	p.tableMu.Lock()
	delete(p.table, n.Name)
	p.tableMu.Unlock()
	// memberlist does not tell dead from left here (the Node copy's State is not maintained), so departed
	// members of both kinds are retried; a member that left is simply not there any more.
	if n.Name != p.selfM.Id {
		p.failedMu.Lock()
		p.failed[n.Name] = failedNode{addr: n.Address(), since: p.now()}
		p.failedMu.Unlock()
	}
	p.log.Info("memberlist leave", slog.String("node", n.Name), slog.String("addr", n.Address()))
	p.poke()
}

func (p *provider) NotifyUpdate(n *memberlist.Node) {
	p.record(n)
	p.log.Debug("memberlist update", slog.String("node", n.Name))
	p.poke()
}

// record copies n into the table (memberlist holds its node lock while calling the event delegate).
func (p *provider) record(n *memberlist.Node) {
	c := *n
	c.Addr = append(net.IP(nil), n.Addr...)
	c.Meta = append([]byte(nil), n.Meta...)
	p.tableMu.Lock()
	p.table[n.Name] = c
	p.tableMu.Unlock()
}

// liveNodes returns copies of the live nodes (self included), sorted by name.
func (p *provider) liveNodes() []*memberlist.Node {
	p.tableMu.Lock()
	defer p.tableMu.Unlock()
	out := make([]*memberlist.Node, 0, len(p.table))
	for _, n := range p.table {
		c := n
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *memberlist.Node) int { return compareStrings(a.Name, b.Name) })
	return out
}

// localNode returns a copy of this member's own node, if memberlist has announced it.
func (p *provider) localNode() (*memberlist.Node, bool) {
	p.tableMu.Lock()
	defer p.tableMu.Unlock()
	n, ok := p.table[p.selfM.Id]
	return &n, ok
}
