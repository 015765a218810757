package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// placementFixture runs a placement actor in a local actor system, with a clock the test moves.
type placementFixture struct {
	t      *testing.T
	system *actor.ActorSystem
	pid    *actor.PID
	counts *activationCounts
	now    atomic.Int64 // unix nanoseconds
}

func newPlacementFixture(t *testing.T, self string) *placementFixture {
	t.Helper()
	f := &placementFixture{t: t, counts: &activationCounts{}}
	f.now.Store(time.Unix(1000, 0).UnixNano())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.system = actor.NewActorSystem(actor.WithLoggerFactory(protoactorLoggerFactory(logger)))
	kinds := map[string]*pcluster.Kind{"k": {Kind: "k", Props: actor.PropsFromFunc(func(actor.Context) {})}}
	pl := newPlacement(self, kinds, time.Second, f.counts, logger)
	pl.now = func() time.Time { return time.Unix(0, f.now.Load()) }
	f.pid = f.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pl }))
	t.Cleanup(func() { _ = f.system.Root.StopFuture(f.pid).Wait(); f.system.Shutdown() })
	return f
}

func (f *placementFixture) advance(d time.Duration) { f.now.Add(int64(d)) }

func (f *placementFixture) view(addrs ...string) {
	f.system.Root.Send(f.pid, &viewUpdate{v: newView(0, members(addrs...), time.Unix(0, f.now.Load()))})
}

func (f *placementFixture) activate(identity string) *pcluster.ActivationResponse {
	f.t.Helper()
	res, err := f.system.Root.RequestFuture(f.pid, &pcluster.ActivationRequest{ClusterIdentity: pcluster.NewClusterIdentity(identity, "k")}, time.Second).Result()
	if err != nil {
		f.t.Fatalf("activation request: %v", err)
	}
	return res.(*pcluster.ActivationResponse)
}

func (f *placementFixture) waitCount(want int) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.counts.snapshot()["k"] != want {
		if time.Now().After(deadline) {
			f.t.Fatalf("activations = %d, want %d", f.counts.snapshot()["k"], want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ownedBy returns an identity that owner owns in the view of addrs.
func ownedBy(owner string, addrs ...string) string {
	v := newView(0, members(addrs...), time.Now())
	for i := 0; ; i++ {
		id := fmt.Sprintf("id%d", i)
		if v.owner("k", id) == owner {
			return id
		}
	}
}

func TestPlacementOwnerCheck(t *testing.T) {
	f := newPlacementFixture(t, "a:1")
	mine := ownedBy("a:1", "a", "b")
	theirs := ownedBy("b:1", "a", "b")

	if r := f.activate(mine); !r.Failed {
		t.Fatal("activated before any view")
	}
	f.view("a", "b")
	if r := f.activate(mine); !r.Failed {
		t.Fatal("activated within the settle time of the first view")
	}
	f.advance(time.Second)
	r := f.activate(mine)
	if r.Failed || r.Pid == nil {
		t.Fatal("owner refused an identity it owns")
	}
	if r2 := f.activate(mine); r2.Pid == nil || !r2.Pid.Equal(r.Pid) {
		t.Fatal("second activation request did not return the same activation")
	}
	if r := f.activate(theirs); !r.Failed {
		t.Fatal("activated an identity owned by another member")
	}
	f.waitCount(1)

	// The identity moves away (b is now its only owner): the activation is passivated, and refused meanwhile.
	f.view("b")
	f.waitCount(0)
	if r := f.activate(mine); !r.Failed {
		t.Fatal("activated an identity after it moved away")
	}
}

func TestPlacementDrain(t *testing.T) {
	f := newPlacementFixture(t, "a:1")
	f.view("a")
	f.advance(time.Second)
	for _, id := range []string{"x", "y", "z"} {
		if r := f.activate(id); r.Failed {
			t.Fatalf("activate %s refused", id)
		}
	}
	f.waitCount(3)
	if _, err := f.system.Root.RequestFuture(f.pid, &drainRequest{}, 5*time.Second).Result(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n := f.counts.snapshot()["k"]; n != 0 {
		t.Fatalf("%d activations after drain", n)
	}
	if r := f.activate("x"); !r.Failed {
		t.Fatal("activated while drained")
	}
}
