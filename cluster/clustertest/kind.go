package clustertest

import (
	"sort"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// EchoKind is the kind of the test actor every member hosts. Send it any *wrapperspb.StringValue; it answers a
// *wrapperspb.StringValue holding the member id of the activation that answered.
const EchoKind = "clustertest-echo"

// Registry records the live activations of EchoKind across all members of a test cluster, so tests can count
// activations per identity. Safe for concurrent use.
type Registry struct {
	mu    sync.Mutex
	live  map[string]map[string]string // identity → activation PID → member id
	dead  map[string]bool              // member ids of killed incarnations: their activations no longer count
	total int                          // activations ever started
}

func newRegistry() *Registry {
	return &Registry{live: map[string]map[string]string{}, dead: map[string]bool{}}
}

func (r *Registry) activated(identity, pid, member string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if r.dead[member] {
		return
	}
	if r.live[identity] == nil {
		r.live[identity] = map[string]string{}
	}
	r.live[identity][pid] = member
}

func (r *Registry) deactivated(identity, pid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live[identity], pid)
	if len(r.live[identity]) == 0 {
		delete(r.live, identity)
	}
}

// memberDied forgets the activations of a killed member incarnation (its process would be gone).
func (r *Registry) memberDied(member string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead[member] = true
	for id, acts := range r.live {
		for pid, m := range acts {
			if m == member {
				delete(acts, pid)
			}
		}
		if len(acts) == 0 {
			delete(r.live, id)
		}
	}
}

// Live returns the number of live activations of identity.
func (r *Registry) Live(identity string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live[identity])
}

// Hosts returns the member ids hosting identity, sorted.
func (r *Registry) Hosts(identity string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.live[identity] {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Snapshot returns the number of live activations per identity (identities with none are absent).
func (r *Registry) Snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.live))
	for id, acts := range r.live {
		out[id] = len(acts)
	}
	return out
}

// Doubled returns the identities with more than one live activation, sorted.
func (r *Registry) Doubled() []string {
	var out []string
	for id, n := range r.Snapshot() {
		if n > 1 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Total returns how many activations were ever started.
func (r *Registry) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// echo is the test actor.
type echo struct {
	reg      *Registry
	identity string
	member   string
}

func (e *echo) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		e.identity = msg.Identity.GetIdentity()
		e.member = ctx.ActorSystem().ID
		e.reg.activated(e.identity, ctx.Self().String(), e.member)
	case *wrapperspb.StringValue:
		ctx.Respond(wrapperspb.String(e.member))
	case *actor.Stopped:
		if e.identity != "" {
			e.reg.deactivated(e.identity, ctx.Self().String())
		}
	}
}

// echoKind returns a fresh EchoKind bound to reg.
func echoKind(reg *Registry) *pcluster.Kind {
	return pcluster.NewKind(EchoKind, actor.PropsFromProducer(func() actor.Actor { return &echo{reg: reg} }))
}
