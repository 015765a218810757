package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
)

// sameStore admits only members that advertise the same "store" attribute as own.
func sameStore(own string) func(cluster.Member) error {
	return func(peer cluster.Member) error {
		if theirs := peer.Attributes["store"]; theirs != own {
			return fmt.Errorf("it uses store %q, this node %q", theirs, own)
		}
		return nil
	}
}

// TestAdmitRefusesJoin: a node whose Admit refuses a member of the cluster fails Start at once with a
// *RefusedError naming that member and the reason, and the cluster never lists it; an admitted node joins.
func TestAdmitRefusesJoin(t *testing.T) {
	c := clustertest.New(t, 2, clustertest.WithConfig(func(cfg *cluster.Config) {
		cfg.Attributes = map[string]string{"store": "shared-1"}
		cfg.Admit = sameStore("shared-1")
	}))
	for _, m := range c.Node(1).Members() {
		if m.Attributes["store"] != "shared-1" {
			t.Fatalf("member %s advertises %v, want store=shared-1", m.ID, m.Attributes)
		}
	}

	cfg := cluster.DefaultLocalConfig()
	cfg.Logger = quietLogger()
	cfg.Seeds = []string{c.Node(0).Self().GossipAddr}
	cfg.Attributes = map[string]string{"store": "local-xyz"}
	cfg.Admit = sameStore("local-xyz")
	node, err := cluster.NewNode(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = node.Start(ctx)
	if err == nil {
		_ = node.Stop(ctx)
		t.Fatal("a node with another store joined")
	}
	var refused *cluster.RefusedError
	if !errors.Is(err, cluster.ErrRefused) || !errors.As(err, &refused) {
		t.Fatalf("Start error = %v, want a RefusedError", err)
	}
	if refused.Member.Attributes["store"] != "shared-1" || !strings.Contains(err.Error(), `it uses store "shared-1", this node "local-xyz"`) {
		t.Fatalf("Start error = %q (member %+v)", err, refused.Member)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the refused join took %v: it was retried", took)
	}
	// The cluster never saw the refused node as a member (it refuses it too).
	for i := range 2 {
		if n := len(c.Node(i).Members()); n != 2 {
			t.Fatalf("member %d lists %d members after the refused join, want 2", i, n)
		}
	}

	added := c.Add() // same store: admitted
	c.WaitConverged(20 * time.Second)
	if _, err := request(c, added, "after-admit"); err != nil {
		t.Fatalf("request through the admitted member: %v", err)
	}
}

// TestOwns: in a settled cluster every identity has exactly one member that Owns it, and that member hosts it.
func TestOwns(t *testing.T) {
	c := clustertest.New(t, 3)
	for k := range 60 {
		id := fmt.Sprintf("owned-%02d", k)
		var owners []int
		for i := range 3 {
			if c.Node(i).Owns(clustertest.EchoKind, id) {
				owners = append(owners, i)
			}
		}
		if len(owners) != 1 {
			t.Fatalf("%s is owned by members %v, want exactly one", id, owners)
		}
		host, err := request(c, (k+1)%3, id)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		if want := c.Node(owners[0]).Self().ID; host != want {
			t.Fatalf("%s answered from %s, but member %d (%s) owns it", id, host, owners[0], want)
		}
	}
}

// TestDrain: while callers on every member hit 200 identities, a member drains: it reports draining and not
// ready, owns nothing, its activations move to the others, and no request fails, neither through the others nor
// through the draining member itself (it keeps routing). It then stops, and no identity is active twice at the end.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-member drain")
	}
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const identities = 200
	id := func(i int) string { return fmt.Sprintf("drain-%03d", i) }
	for k := range identities {
		if _, err := request(c, k%3, id(k)); err != nil {
			t.Fatalf("warm-up %s: %v", id(k), err)
		}
	}
	const drained = 2
	drainedID := c.Node(drained).Self().ID
	before := 0
	for k := range identities {
		if hosts := reg.Hosts(id(k)); len(hosts) == 1 && hosts[0] == drainedID {
			before++
		}
	}
	if before == 0 {
		t.Fatalf("member %d hosts none of %d identities before the drain", drained, identities)
	}

	stop := make(chan struct{})
	var callers sync.WaitGroup
	var ok atomic.Int64
	var leaving atomic.Bool // set when the drained member stops: its callers then end with ErrNotReady
	var failMu sync.Mutex
	var failures []string
	for member := range 3 {
		for g := range 2 {
			callers.Add(1)
			go func() {
				defer callers.Done()
				for k := member*31 + g*97; ; k += 7 {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := request(c, member, id(k%identities)); err != nil {
						if member == drained && errors.Is(err, cluster.ErrNotReady) && leaving.Load() {
							return // its member has left
						}
						failMu.Lock()
						failures = append(failures, fmt.Sprintf("via %d: %v", member, err))
						failMu.Unlock()
						continue
					}
					ok.Add(1)
				}
			}()
		}
	}
	c.WaitFor(func() bool { return ok.Load() > 500 }, 20*time.Second, "traffic before the drain")

	n := c.Node(drained)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Drain(drained)
	}()
	c.WaitFor(func() bool { return n.State() == "draining" }, 5*time.Second, "the member to report draining")
	if n.Ready() {
		t.Fatal("a draining member reports ready")
	}
	<-done
	if acts := n.Activations()[clustertest.EchoKind]; acts != 0 {
		t.Fatalf("%d activations left on the drained member", acts)
	}
	for k := range identities {
		if n.Owns(clustertest.EchoKind, id(k)) {
			t.Fatalf("the drained member still owns %s", id(k))
		}
	}
	c.WaitFor(func() bool {
		for i := range 2 {
			for _, m := range c.Node(i).Members() {
				if m.ID == drainedID && !m.Draining {
					return false
				}
			}
		}
		return true
	}, 5*time.Second, "the others to see the member draining")
	mark := ok.Load()
	c.WaitFor(func() bool { return ok.Load() > mark+500 }, 20*time.Second, "traffic after the drain")
	leaving.Store(true)
	c.Stop(drained)
	mark = ok.Load()
	c.WaitFor(func() bool { return ok.Load() > mark+200 }, 20*time.Second, "traffic after the drained member left")
	close(stop)
	callers.Wait()

	failMu.Lock()
	defer failMu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during the drain, first: %s", len(failures), ok.Load()+int64(len(failures)), failures[0])
	}
	for k := range identities {
		if live := reg.Live(id(k)); live > 1 {
			t.Errorf("%s has %d live activations (hosts %v)", id(k), live, reg.Hosts(id(k)))
		}
	}
	t.Logf("%d requests, none failed; %d identities moved off the drained member", ok.Load(), before)
}
