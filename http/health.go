package http

import (
	nethttp "net/http"
	"sort"

	"github.com/valyala/fasthttp"
)

// Member is one cluster member as the admin endpoint reports it.
type Member struct {
	ID         string   `json:"id"`             // the member id (fresh on every start of a node)
	Name       string   `json:"name"`           // the node's stable name
	Address    string   `json:"address"`        // memberlist (gossip) address, host:port
	RemoteAddr string   `json:"remote_address"` // protoactor remote (actor traffic) address, host:port
	Status     string   `json:"status"`         // e.g. "alive", "suspect", "dead", "left"
	Kinds      []string `json:"kinds"`          // the actor kinds it hosts
	Self       bool     `json:"self"`           // true for the node that answered
}

// Cluster is this node's view of the cluster. Implementations must be safe for concurrent use.
type Cluster interface {
	// Ready reports whether this node is a serving cluster member (joined, not fenced, not leaving).
	Ready() bool
	// Members lists the members this node knows of, itself included.
	Members() []Member
	// Activations counts the actors active on this node, by kind.
	Activations() map[string]int
}

// Store reports on the node's durable store. Implementations must be safe for concurrent use.
type Store interface {
	// Ping returns nil while the store is open and usable.
	Ping() error
}

func (s *Server) handleHealthz(ctx *fasthttp.RequestCtx, _ params) error {
	return s.writeJSON(ctx, nethttp.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(ctx *fasthttp.RequestCtx, _ params) error {
	if !s.backend.Cluster.Ready() {
		return Errorf(CodeNotReady, "this node is not a serving cluster member")
	}
	if err := s.backend.Store.Ping(); err != nil {
		s.log.Warn("store not usable", errAttr(err))
		return Errorf(CodeNotReady, "the store is not open")
	}
	return s.writeJSON(ctx, nethttp.StatusOK, map[string]string{"status": "ready"})
}

// clusterView is the body of GET /v1/admin/cluster.
type clusterView struct {
	Ready       bool           `json:"ready"`
	Members     []Member       `json:"members"`
	Activations map[string]int `json:"activations"` // actors active on the answering node, by kind
}

func (s *Server) handleAdminCluster(ctx *fasthttp.RequestCtx, _ params) error {
	members := s.backend.Cluster.Members()
	if members == nil {
		members = []Member{}
	}
	sort.Slice(members, func(i, j int) bool {
		if members[i].Address != members[j].Address {
			return members[i].Address < members[j].Address
		}
		return members[i].ID < members[j].ID
	})
	for i := range members {
		if members[i].Kinds == nil {
			members[i].Kinds = []string{}
		}
	}
	act := s.backend.Cluster.Activations()
	if act == nil {
		act = map[string]int{}
	}
	return s.writeJSON(ctx, nethttp.StatusOK, clusterView{
		Ready: s.backend.Cluster.Ready(), Members: members, Activations: act,
	})
}
