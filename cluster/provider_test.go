package cluster

import (
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/memberlist"
)

// fakeMemberlist scripts what memberlist reports and records what the provider sends.
type fakeMemberlist struct {
	mu    sync.Mutex
	nodes []*memberlist.Node
	sent  []string // "to" member ids of block notices
}

func (f *fakeMemberlist) set(ns ...*memberlist.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = ns
}

func (f *fakeMemberlist) members() []*memberlist.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nodes)
}

func (f *fakeMemberlist) send(to *memberlist.Node, msg []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	from, id, ok := decodeNotice(msg)
	if ok && from == "self" {
		f.sent = append(f.sent, id)
	}
	return nil
}

// newTestProvider returns a provider wired to a real (not started) protoactor cluster and a fake memberlist, with
// a controllable clock.
func newTestProvider(t *testing.T) (*provider, *fakeMemberlist, *pcluster.Cluster, *time.Time, *[]*view, *[]string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem(actor.WithLoggerFactory(protoactorLoggerFactory(logger)))
	rc := remote.Configure("127.0.0.1", 0)
	cfg := DefaultLocalConfig()
	p, err := newProvider(cfg, logger, &pcluster.Member{Id: "self", Host: "127.0.0.1", Port: 1, Kinds: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	c := pcluster.New(system, pcluster.Configure("test", p, &identityLookup{}, rc))
	c.Remote = remote.NewRemote(system, rc)
	fake := &fakeMemberlist{}
	now := time.Unix(1000, 0)
	var views []*view
	var fences []string
	p.members = fake.members
	p.send = fake.send
	p.topo = c.MemberList
	p.blocked = c.Remote.BlockList().IsBlocked
	p.install = func(v *view) { views = append(views, v) }
	p.fence = func(reason string) { fences = append(fences, reason) }
	p.now = func() time.Time { return now }
	return p, fake, c, &now, &views, &fences
}

func mnode(id string, port int32) *memberlist.Node {
	return node(id, &pcluster.Member{Id: id, Host: "127.0.0.1", Port: port, Kinds: []string{"k"}}, memberlist.StateAlive)
}

func ids(ms pcluster.Members) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Id)
	}
	slices.Sort(out)
	return out
}

// TestProviderTopology: memberlist joins, updates and leaves are pushed to protoactor's member list; a member
// that left is blocked and stays out even if memberlist reports it again, and it is told so.
func TestProviderTopology(t *testing.T) {
	p, fake, c, now, views, fences := newTestProvider(t)
	self, a, b := mnode("self", 1), mnode("a", 2), mnode("b", 3)

	fake.set(self)
	p.refresh()
	if got := ids(c.MemberList.Members().Members()); !slices.Equal(got, []string{"self"}) {
		t.Fatalf("members = %v, want [self]", got)
	}
	fake.set(self, a, b)
	p.refresh()
	if got := ids(c.MemberList.Members().Members()); !slices.Equal(got, []string{"a", "b", "self"}) {
		t.Fatalf("after join: members = %v", got)
	}
	if len(*views) != 2 || len((*views)[1].members) != 3 {
		t.Fatalf("views installed = %d, want 2 with 3 members", len(*views))
	}
	// An update with unchanged membership installs no new view.
	b2 := node("b", &pcluster.Member{Id: "b", Host: "127.0.0.1", Port: 3, Kinds: []string{"k", "k2"}}, memberlist.StateAlive)
	fake.set(self, a, b2)
	p.refresh()
	if len(*views) != 2 {
		t.Fatalf("unchanged membership installed a view")
	}
	// b leaves.
	fake.set(self, a)
	p.refresh()
	if got := ids(c.MemberList.Members().Members()); !slices.Equal(got, []string{"a", "self"}) {
		t.Fatalf("after leave: members = %v", got)
	}
	if !c.Remote.BlockList().IsBlocked("b") {
		t.Fatal("member that left is not blocked")
	}
	// b comes back under the same id (it was paused): it stays out and is told it is blocked.
	fake.set(self, a, b)
	p.refresh()
	if got := ids(c.MemberList.Members().Members()); !slices.Equal(got, []string{"a", "self"}) {
		t.Fatalf("blocked member readmitted: members = %v", got)
	}
	if !slices.Contains(fake.sent, "b") {
		t.Fatalf("no block notice sent to b (sent %v)", fake.sent)
	}
	if len(*fences) != 0 {
		t.Fatalf("fenced: %v", *fences)
	}
	// b does not fence within FenceGrace: then this member is the odd one out and fences itself.
	*now = now.Add(p.cfg.FenceGrace)
	p.refresh()
	if len(*fences) != 1 {
		t.Fatalf("fences = %v, want one after FenceGrace", *fences)
	}
}

// TestProviderFencesOnMajorityNotices: block notices from a majority of live peers fence this member; from a
// minority they do not; stale notices expire.
func TestProviderFencesOnMajorityNotices(t *testing.T) {
	p, fake, _, now, _, fences := newTestProvider(t)
	fake.set(mnode("self", 1), mnode("a", 2), mnode("b", 3))
	p.refresh()

	p.NotifyMsg(encodeNotice("a", "self"))
	p.NotifyMsg(encodeNotice("x", "someone-else")) // not about us
	p.NotifyMsg([]byte("garbage"))
	p.refresh()
	if len(*fences) != 0 {
		t.Fatalf("fenced on a minority: %v", *fences)
	}
	*now = now.Add(2 * p.cfg.BlockNoticeTTL) // a's notice expires
	p.NotifyMsg(encodeNotice("b", "self"))
	p.refresh()
	if len(*fences) != 0 {
		t.Fatalf("fenced on one fresh notice and one expired: %v", *fences)
	}
	p.NotifyMsg(encodeNotice("a", "self"))
	p.refresh()
	if len(*fences) != 1 {
		t.Fatalf("fences = %v, want one on a majority", *fences)
	}
}

func TestNoticeCodec(t *testing.T) {
	from, to, ok := decodeNotice(encodeNotice("m1", "m2"))
	if !ok || from != "m1" || to != "m2" {
		t.Fatalf("decode = %q %q %v", from, to, ok)
	}
	for _, b := range [][]byte{nil, []byte("platter/blocked\x00"), []byte("platter/blocked\x00only"), []byte("other\x00a\x00b")} {
		if _, _, ok := decodeNotice(b); ok {
			t.Errorf("decoded %q", b)
		}
	}
}

// TestProviderIsolation: losing every peer at once (at least two) fences; peers that announced their leave do
// not count; a two-member cluster's survivor does not fence.
func TestProviderIsolation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		peers   []string
		leaving []string
		fence   bool
	}{
		{"all peers lost", []string{"a", "b"}, nil, true},
		{"peers left gracefully", []string{"a", "b"}, []string{"a", "b"}, false},
		{"one left, one lost", []string{"a", "b"}, []string{"a"}, false},
		{"two-member cluster", []string{"a"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fake, _, now, _, fences := newTestProvider(t)
			nodes := []*memberlist.Node{mnode("self", 1)}
			for i, id := range tc.peers {
				nodes = append(nodes, mnode(id, int32(10+i)))
			}
			fake.set(nodes...)
			p.refresh()
			for _, id := range tc.leaving {
				p.NotifyMsg(append(append([]byte(nil), leavingMagic...), id...))
			}
			*now = now.Add(time.Second)
			fake.set(mnode("self", 1))
			p.refresh()
			if got := len(*fences) > 0; got != tc.fence {
				t.Fatalf("fenced = %v (%v), want %v", got, *fences, tc.fence)
			}
		})
	}
	// Peers lost one by one, further apart than IsolationWindow, do not fence.
	p, fake, _, now, _, fences := newTestProvider(t)
	fake.set(mnode("self", 1), mnode("a", 2), mnode("b", 3))
	p.refresh()
	fake.set(mnode("self", 1), mnode("b", 3))
	p.refresh()
	*now = now.Add(2 * p.cfg.IsolationWindow)
	fake.set(mnode("self", 1))
	p.refresh()
	if len(*fences) != 0 {
		t.Fatalf("fenced after losing peers one by one: %v", *fences)
	}
}

// TestProviderLease: activations are suspended when no other member was heard for LeaseTimeout while the view
// holds others, resumed when one is heard again, never suspended alone in the view, and kept suspended while
// fencing.
func TestProviderLease(t *testing.T) {
	p, fake, _, now, _, _ := newTestProvider(t)
	heard := *now
	var calls []bool
	p.lastHeard = func() time.Time { return heard }
	p.suspend = func(on bool) { calls = append(calls, on) }
	lease := p.cfg.LeaseTimeout

	fake.set(mnode("self", 1), mnode("a", 2), mnode("b", 3))
	p.refresh()
	*now = now.Add(lease / 2)
	p.refresh()
	if len(calls) != 0 {
		t.Fatalf("suspended within the lease: %v", calls)
	}
	*now = now.Add(lease)
	p.refresh()
	p.refresh()
	if !slices.Equal(calls, []bool{true}) {
		t.Fatalf("after %v of silence: calls %v, want one suspension", lease*3/2, calls)
	}
	heard = *now
	p.refresh()
	if !slices.Equal(calls, []bool{true, false}) {
		t.Fatalf("after hearing a member: calls %v, want a resumption", calls)
	}

	// Alone in the view (the survivor of a two-member cluster): never suspended.
	fake.set(mnode("self", 1))
	*now = now.Add(10 * lease)
	p.refresh()
	if len(calls) != 2 {
		t.Fatalf("suspended alone in the view: %v", calls)
	}

	// Fencing (every peer lost at once) keeps the member suspended, alone or not.
	p2, fake2, _, now2, _, fences := newTestProvider(t)
	var calls2 []bool
	p2.lastHeard = func() time.Time { return *now2 }
	p2.suspend = func(on bool) { calls2 = append(calls2, on) }
	fake2.set(mnode("self", 1), mnode("a", 2), mnode("b", 3))
	p2.refresh()
	fake2.set(mnode("self", 1))
	p2.refresh()
	if len(*fences) == 0 || !slices.Equal(calls2, []bool{true}) {
		t.Fatalf("isolated: fences %v, calls %v; want a fence with activations suspended", *fences, calls2)
	}
}
