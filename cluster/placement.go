package cluster

import (
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// placementName is the actor name of every member's placement actor; callers address it as
// actor.NewPID(ownerAddress, placementName).
const placementName = "platter-placement"

// placement is the owner-checked activator of one incarnation (our replacement for disthash's placement
// actor). It activates an identity only when this member owns it in its own view, and has owned it for the
// whole settle window; it passivates the activations it no longer owns whenever its view changes. All state is
// confined to the actor; counts is the only thing shared (read by Node.Activations).
//
// Transitions of one activation: absent → active (ActivationRequest, owner) → stopping (view moved it away, or
// drain) → absent (Terminated). A stopping activation is never handed out, so no caller reaches an activation
// that is on its way out while a new owner may already run one.
type placement struct {
	self      string // remote address of this member
	kinds     map[string]*pcluster.Kind
	history   viewHistory
	active    map[string]*activation // by ClusterIdentity.AsKey()
	byPID     map[string]string      // PID.Id → key
	draining  bool
	suspended bool         // the lease lapsed (Config.LeaseTimeout): refuse and stop activations until renewed
	waiters   []*actor.PID // drain requesters, answered when active is empty
	counts    *activationCounts
	log       *slog.Logger
	now       func() time.Time
}

type activation struct {
	ci       *pcluster.ClusterIdentity
	pid      *actor.PID
	stopping bool
}

// viewUpdate tells the placement actor that its member installed a new view.
type viewUpdate struct{ v *view }

// drainRequest makes the placement actor refuse new activations and stop all of them; it answers drained once
// none is left.
type drainRequest struct{}

// suspendRequest stops (on) the activations and refuses new ones until a suspendRequest with on false.
type suspendRequest struct{ on bool }

type drained struct{}

func newPlacement(self string, kinds map[string]*pcluster.Kind, settle time.Duration, counts *activationCounts, log *slog.Logger) *placement {
	return &placement{
		self:    self,
		kinds:   kinds,
		history: viewHistory{settle: settle},
		active:  map[string]*activation{},
		byPID:   map[string]string{},
		counts:  counts,
		log:     log,
		now:     time.Now,
	}
}

func (p *placement) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ActivationRequest:
		p.onActivationRequest(ctx, msg)
	case *viewUpdate:
		p.onView(ctx, msg.v)
	case *actor.Terminated:
		p.onTerminated(ctx, msg)
	case *drainRequest:
		p.onDrain(ctx)
	case *suspendRequest:
		p.onSuspend(ctx, msg.on)
	}
}

func (p *placement) refuse(ctx actor.Context) {
	ctx.Respond(&pcluster.ActivationResponse{Failed: true})
}

func (p *placement) onActivationRequest(ctx actor.Context, req *pcluster.ActivationRequest) {
	ci := req.GetClusterIdentity()
	if ci == nil || p.draining || p.suspended {
		p.refuse(ctx)
		return
	}
	key := ci.AsKey()
	if a, ok := p.active[key]; ok {
		if a.stopping {
			p.refuse(ctx)
			return
		}
		ctx.Respond(&pcluster.ActivationResponse{Pid: a.pid})
		return
	}
	if !p.history.ownedThroughout(p.self, ci.Kind, ci.Identity, p.now()) {
		p.refuse(ctx)
		return
	}
	kind, ok := p.kinds[ci.Kind]
	if !ok {
		p.log.Warn("activation of unknown kind refused", slog.String("kind", ci.Kind))
		p.refuse(ctx)
		return
	}
	props := pcluster.WithClusterIdentity(kind.Props, ci)
	// The name carries kind and identity: a caller's stale cached PID (say, of a member that was restarted on the
	// same address, whose name counter starts again) can then only reach an activation of the same identity.
	pid := ctx.SpawnPrefix(props, ci.Kind+"/"+ci.Identity)
	p.active[key] = &activation{ci: ci, pid: pid}
	p.byPID[pid.Id] = key
	p.counts.add(ci.Kind, 1)
	p.log.Debug("activated", slog.String("kind", ci.Kind), slog.String("identity", ci.Identity))
	ctx.Respond(&pcluster.ActivationResponse{Pid: pid})
}

func (p *placement) onView(ctx actor.Context, v *view) {
	p.history.add(v, p.now())
	moved := 0
	for _, a := range p.active {
		if a.stopping || v.owner(a.ci.Kind, a.ci.Identity) == p.self {
			continue
		}
		a.stopping = true
		ctx.Poison(a.pid)
		moved++
	}
	if moved > 0 {
		p.log.Debug("passivating moved activations", slog.Int("count", moved))
	}
}

func (p *placement) onTerminated(ctx actor.Context, t *actor.Terminated) {
	key, ok := p.byPID[t.Who.GetId()]
	if !ok {
		return
	}
	a := p.active[key]
	delete(p.byPID, t.Who.GetId())
	delete(p.active, key)
	p.counts.add(a.ci.Kind, -1)
	p.answerDrained(ctx)
}

func (p *placement) onSuspend(ctx actor.Context, on bool) {
	p.suspended = on
	if !on {
		return
	}
	stopped := 0
	for _, a := range p.active {
		if !a.stopping {
			a.stopping = true
			ctx.Poison(a.pid)
			stopped++
		}
	}
	p.log.Debug("activations suspended", slog.Int("count", stopped))
}

func (p *placement) onDrain(ctx actor.Context) {
	p.draining = true
	if s := ctx.Sender(); s != nil {
		p.waiters = append(p.waiters, s)
	}
	for _, a := range p.active {
		if !a.stopping {
			a.stopping = true
			ctx.Poison(a.pid)
		}
	}
	p.answerDrained(ctx)
}

func (p *placement) answerDrained(ctx actor.Context) {
	if !p.draining || len(p.active) > 0 {
		return
	}
	for _, w := range p.waiters {
		ctx.Send(w, &drained{})
	}
	p.waiters = nil
}

// activationCounts counts live activations per kind for Node.Activations.
type activationCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *activationCounts) add(kind string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[kind] += d
	if c.m[kind] == 0 {
		delete(c.m, kind)
	}
}

func (c *activationCounts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}
