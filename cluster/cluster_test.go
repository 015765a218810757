package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
)

// request asks identity through member i with a short deadline.
func request(c *clustertest.Cluster, i int, identity string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.Request(ctx, i, identity)
}

// TestThreeMembers: an identity is reachable from every member and active on exactly one; after Kill of its host
// it answers from a survivor; after Restart the restarted member hosts activations again.
func TestThreeMembers(t *testing.T) {
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const id = "order-1"

	host, err := request(c, 0, id)
	if err != nil {
		t.Fatalf("request via member 0: %v", err)
	}
	for i := 1; i < 3; i++ {
		m, err := request(c, i, id)
		if err != nil {
			t.Fatalf("request via member %d: %v", i, err)
		}
		if m != host {
			t.Fatalf("member %d reached %s, member 0 reached %s", i, m, host)
		}
	}
	if n := reg.Live(id); n != 1 {
		t.Fatalf("%s has %d live activations, want 1", id, n)
	}
	// The protoactor cluster's own Request (what generated grain clients call) goes through our context.
	res, err := c.Node(1).Cluster().Request(id, clustertest.EchoKind, wrapperspb.String("ping"), pcluster.WithTimeout(3*time.Second))
	if err != nil {
		t.Fatalf("Cluster().Request: %v", err)
	}
	if got := res.(*wrapperspb.StringValue).GetValue(); got != host {
		t.Fatalf("Cluster().Request reached %s, want %s", got, host)
	}

	h := c.IndexOf(host)
	if h < 0 {
		t.Fatalf("host %s is not a member", host)
	}
	survivor := (h + 1) % 3
	start := time.Now()
	c.Kill(h)
	var after string
	c.WaitFor(func() bool {
		after, err = request(c, survivor, id)
		return err == nil
	}, 15*time.Second, "answer after killing the host")
	t.Logf("failover of %s took %v", id, time.Since(start).Round(time.Millisecond))
	if after == host {
		t.Fatalf("%s answered from the killed member %s", id, host)
	}
	if n := reg.Live(id); n != 1 {
		t.Fatalf("%s has %d live activations after failover, want 1", id, n)
	}

	c.Restart(h)
	c.WaitConverged(15 * time.Second)
	// Rendezvous hashing is by address: the restarted member owns the same identities again.
	restarted := c.Node(h).Self().ID
	if restarted == host {
		t.Fatalf("restarted member kept its member id %s", host)
	}
	c.WaitFor(func() bool {
		m, err := request(c, survivor, id)
		return err == nil && m == restarted
	}, 15*time.Second, "identity back on the restarted member")
	for i := 0; i < 20; i++ {
		if _, err := request(c, survivor, fmt.Sprintf("extra-%d", i)); err != nil {
			t.Fatalf("request extra-%d: %v", i, err)
		}
	}
	if n := c.Node(h).Activations()[clustertest.EchoKind]; n == 0 {
		t.Fatalf("restarted member hosts no activations")
	}
	if d := reg.Doubled(); len(d) > 0 {
		t.Fatalf("identities with two live activations: %v", d)
	}
}

// overlapMeter samples the registry and tracks, per identity, how long it had more than one live activation.
type overlapMeter struct {
	mu    sync.Mutex
	reg   *clustertest.Registry
	since map[string]time.Time
	worst time.Duration
	who   string
}

func (m *overlapMeter) sample(now time.Time) {
	snap := m.reg.Snapshot()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, n := range snap {
		if n < 2 {
			continue
		}
		if _, ok := m.since[id]; !ok {
			m.since[id] = now
		}
	}
	for id, s := range m.since {
		if snap[id] >= 2 {
			if d := now.Sub(s); d > m.worst {
				m.worst, m.who = d, id
			}
			continue
		}
		if d := now.Sub(s); d > m.worst {
			m.worst, m.who = d, id
		}
		delete(m.since, id)
	}
}

// result returns the longest overlap seen and its identity.
func (m *overlapMeter) result() (time.Duration, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.worst, m.who
}

// TestChurn: callers on every member hit 200 identities while a member joins, one is killed and one leaves
// gracefully. No identity may have two live activations for longer than one membership change takes to settle,
// and none at the end.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-member churn")
	}
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const identities = 200
	id := func(i int) string { return fmt.Sprintf("churn-%03d", i) }

	stop := make(chan struct{})
	var callers sync.WaitGroup
	var ok, failed atomic.Int64
	call := func(member int, seed int) {
		defer callers.Done()
		for k := seed; ; k += 7 {
			select {
			case <-stop:
				return
			default:
			}
			_, err := request(c, member, id(k%identities))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, cluster.ErrNotReady):
				if !slices.Contains(c.Up(), member) {
					return // its member is down
				}
			default:
				failed.Add(1)
			}
		}
	}
	startCallers := func(member int) {
		for g := 0; g < 2; g++ {
			callers.Add(1)
			go call(member, member*31+g*97)
		}
	}
	for i := 0; i < 3; i++ {
		startCallers(i)
	}

	meter := &overlapMeter{reg: reg, since: map[string]time.Time{}}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tk.C:
				meter.sample(now)
			}
		}
	}()

	settled := func(what string) {
		c.WaitConverged(20 * time.Second)
		// Every identity answers through every live member again.
		c.WaitFor(func() bool {
			for _, i := range c.Up() {
				for k := 0; k < identities; k += 10 {
					if _, err := request(c, i, id(k)); err != nil {
						return false
					}
				}
			}
			return true
		}, 20*time.Second, "identities reachable after "+what)
		worst, who := meter.result()
		t.Logf("%s settled; worst overlap so far %v (%s)", what, worst.Round(time.Millisecond), who)
	}

	c.WaitFor(func() bool { return ok.Load() > 2*identities }, 20*time.Second, "warm-up traffic")
	added := c.Add()
	startCallers(added)
	settled("join")
	c.Kill(1)
	settled("kill")
	c.Stop(2)
	settled("graceful leave")

	close(stop)
	callers.Wait()
	<-sampled
	meter.sample(time.Now())

	for k := 0; k < identities; k++ {
		if _, err := request(c, 0, id(k)); err != nil {
			t.Fatalf("request %s: %v", id(k), err)
		}
	}
	for k := 0; k < identities; k++ {
		if n := reg.Live(id(k)); n != 1 {
			t.Errorf("%s has %d live activations at the end, want 1 (hosts %v)", id(k), n, reg.Hosts(id(k)))
		}
	}
	// One membership change settles within TopologySettle: by then every member has the new view and the
	// previous owner has passivated (the settle window exists for exactly that).
	bound := cluster.DefaultLocalConfig().TopologySettle
	worst, who := meter.result()
	t.Logf("requests: %d ok, %d failed; activations started: %d; worst overlap %v (%s), bound %v",
		ok.Load(), failed.Load(), reg.Total(), worst.Round(time.Millisecond), who, bound)
	if worst > bound {
		t.Errorf("identity %s had two live activations for %v, longer than the settle time %v", who, worst, bound)
	}
}

// TestPause: a member whose transports are paused long enough to be declared dead, then resumed, fences itself
// and rejoins under a fresh member id; the cluster ends with every identity active once and all members serving.
func TestPause(t *testing.T) {
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const identities = 60
	id := func(i int) string { return fmt.Sprintf("pause-%02d", i) }
	for k := 0; k < identities; k++ {
		if _, err := request(c, 0, id(k)); err != nil {
			t.Fatalf("request %s: %v", id(k), err)
		}
	}
	const p = 2
	oldID := c.Node(p).Self().ID
	c.Pause(p)
	c.WaitFor(func() bool {
		return len(c.Node(0).Members()) == 2 && len(c.Node(1).Members()) == 2
	}, 20*time.Second, "paused member declared dead by the others")
	// Cut off from everyone, the paused member stops serving instead of hosting every identity alone.
	c.WaitFor(func() bool { return !c.Node(p).Ready() }, 20*time.Second, "isolated member stops serving")
	// The survivors take over the paused member's identities.
	c.WaitFor(func() bool {
		for k := 0; k < identities; k++ {
			if _, err := request(c, 0, id(k)); err != nil {
				return false
			}
		}
		return true
	}, 20*time.Second, "identities served by the survivors")

	c.Resume(p)
	c.WaitFor(func() bool { return c.Node(p).Fences() >= 1 && c.Node(p).Self().ID != oldID },
		20*time.Second, "resumed member fenced itself")
	c.WaitConverged(20 * time.Second)
	for i, want := range []int{0, 0, 1} {
		if n := c.Node(i).Fences(); n != want {
			t.Errorf("member %d fenced itself %d times, want %d (the paused member once, the others never)", i, n, want)
		}
	}
	for _, i := range c.Up() {
		for k := 0; k < identities; k++ {
			if _, err := request(c, i, id(k)); err != nil {
				t.Fatalf("request %s via member %d: %v", id(k), i, err)
			}
		}
	}
	for k := 0; k < identities; k++ {
		if n := reg.Live(id(k)); n != 1 {
			t.Errorf("%s has %d live activations, want 1 (hosts %v)", id(k), n, reg.Hosts(id(k)))
		}
	}
	if n := c.Node(p).Activations()[clustertest.EchoKind]; n == 0 {
		t.Errorf("the rejoined member hosts no activations")
	}
}

// TestLeaseNoOverlap: a member cut off from the others (paused transports) stops its activations when its lease
// lapses, before the others declare it dead and activate its identities: no identity is ever active twice, while
// every identity is served by the others after failure detection.
func TestLeaseNoOverlap(t *testing.T) {
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const identities = 60
	id := func(i int) string { return fmt.Sprintf("lease-%02d", i) }
	for k := 0; k < identities; k++ {
		if _, err := request(c, 0, id(k)); err != nil {
			t.Fatalf("request %s: %v", id(k), err)
		}
	}
	const p = 2
	hosted := c.Node(p).Activations()[clustertest.EchoKind]
	if hosted == 0 {
		t.Fatalf("member %d hosts none of %d identities", p, identities)
	}
	stop := make(chan struct{})
	var doubled []string
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if d := reg.Doubled(); len(d) > 0 && doubled == nil {
				doubled = d
			}
		}
	}()
	c.Pause(p)
	paused := time.Now()
	c.WaitFor(func() bool { return c.Node(p).Activations()[clustertest.EchoKind] == 0 && !c.Node(p).Ready() },
		5*time.Second, "the cut-off member to stop its activations")
	stopped := time.Since(paused)
	if n := len(c.Node(0).Members()); n != 3 {
		t.Fatalf("the others dropped the cut-off member (%d members) before its activations stopped", n)
	}
	c.WaitFor(func() bool {
		for k := 0; k < identities; k++ {
			if _, err := request(c, 0, id(k)); err != nil {
				return false
			}
		}
		return true
	}, 20*time.Second, "identities served by the others")
	close(stop)
	<-sampled
	if doubled != nil {
		t.Fatalf("identities active twice during the partition: %v", doubled)
	}
	t.Logf("the cut-off member stopped its %d activations %v after the cut; the others took over after %v",
		hosted, stopped.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond))
	c.Resume(p)
	c.WaitConverged(30 * time.Second)
}

// TestMembersStatusAndActivations: every member lists every member with its activations per kind, and the counts
// match where the identities live (the registry); a paused member is listed as suspect, without counts, until it
// is declared dead.
func TestMembersStatusAndActivations(t *testing.T) {
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const identities = 45
	ids := make([]string, identities)
	for k := range ids {
		ids[k] = fmt.Sprintf("count-%02d", k)
		if _, err := request(c, k%3, ids[k]); err != nil {
			t.Fatalf("request %s: %v", ids[k], err)
		}
	}
	hosted := func() map[string]int {
		out := map[string]int{}
		for _, id := range ids {
			for _, h := range reg.Hosts(id) {
				out[h]++
			}
		}
		return out
	}
	var last string
	err := clustertest.Poll(func() bool {
		want := hosted()
		for i := range 3 {
			ms := c.Node(i).Members()
			if len(ms) != 3 {
				last = fmt.Sprintf("member %d lists %d members", i, len(ms))
				return false
			}
			for _, m := range ms {
				if m.Status != cluster.StatusAlive || m.Activations == nil || m.Activations[clustertest.EchoKind] != want[m.ID] {
					last = fmt.Sprintf("member %d lists %s as %s with %v, the registry has %d there", i, m.ID, m.Status,
						m.Activations, want[m.ID])
					return false
				}
			}
		}
		return true
	}, 10*time.Second)
	if err != nil {
		t.Fatalf("counts per member: %v (last: %s)", err, last)
	}
	t.Logf("activations per member: %v", hosted())

	const p = 2
	pausedID := c.Node(p).Self().ID
	c.Pause(p)
	c.WaitFor(func() bool {
		for _, i := range []int{0, 1} {
			found := false
			for _, m := range c.Node(i).Members() {
				if m.ID == pausedID && m.Status == cluster.StatusSuspect && m.Activations == nil {
					found = true
				}
			}
			if !found {
				return false
			}
		}
		return true
	}, 20*time.Second, "the paused member listed as suspect, without counts, by both others")
	c.Resume(p)
	c.WaitConverged(30 * time.Second)
}
