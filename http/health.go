package http

import (
	"context"
	nethttp "net/http"
	"sort"
)

// Member is one cluster member as the admin endpoint reports it.
type Member struct {
	ID         string   `json:"id"`             // the member id (fresh on every start of a node)
	Name       string   `json:"name"`           // the node's stable name
	Address    string   `json:"address"`        // memberlist (gossip) address, host:port
	RemoteAddr string   `json:"remote_address"` // protoactor remote (actor traffic) address, host:port
	Status     string   `json:"status"`         // "alive" or "suspect" as memberlist holds it; "left"/"dead" for a stopping self
	Kinds      []string `json:"kinds"`          // the actor kinds it hosts
	Self       bool     `json:"self"`           // true for the node that answered
	Draining   bool     `json:"draining"`       // it hands its identities over before it leaves
	// Attributes is what the member announces of itself, e.g. "journal": the journal it keeps state in.
	Attributes map[string]string `json:"attributes"`
	// Activations counts the member's actor activations by kind, as it last announced them (the answering node's
	// own are current). nil (JSON null) when unknown: a suspect member, or one that has announced none yet.
	Activations map[string]int `json:"activations"`
}

// Cluster is this node's view of the cluster. Implementations must be safe for concurrent use.
type Cluster interface {
	// Ready reports whether this node is a serving cluster member (joined, not fenced, not leaving).
	Ready() bool
	// Members lists the members this node knows of, itself included.
	Members() []Member
	// Activations counts the actors active on this node, by kind.
	Activations() map[string]int
	// State is this node's lifecycle state: "joining", "serving", "draining", "fencing", "stopping", "stopped".
	State() string
	// Drain stops this node gracefully: it stops taking activations, hands its identities over to the other
	// members, and leaves the cluster (in the platter binary the process then exits), returning once the
	// identities are handed over or ctx ends.
	Drain(ctx context.Context) error
}

// Store reports on the node's durable store. Implementations must be safe for concurrent use.
type Store interface {
	// Ping returns nil while the store is open and usable.
	Ping() error
}

func (s *Server) handleHealthz(c *call) error {
	ctx := c.ctx
	return s.writeJSON(ctx, nethttp.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(c *call) error {
	ctx := c.ctx
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
	Ready   bool     `json:"ready"`
	State   string   `json:"state"` // this node's lifecycle state (Cluster.State)
	Members []Member `json:"members"`
	// Activations counts the actors active on the answering node, by kind: the same counts as that node's own entry
	// in Members (current there too), kept at the top level for compatibility with clients that read them here.
	Activations map[string]int `json:"activations"`
}

func (s *Server) handleAdminCluster(c *call) error {
	ctx := c.ctx
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
		if members[i].Attributes == nil {
			members[i].Attributes = map[string]string{}
		}
	}
	act := s.backend.Cluster.Activations()
	if act == nil {
		act = map[string]int{}
	}
	return s.writeJSON(ctx, nethttp.StatusOK, clusterView{
		Ready: s.backend.Cluster.Ready(), State: s.backend.Cluster.State(), Members: members, Activations: act,
	})
}

// handleDrain starts draining this node in the background and answers 202 at once: the node stops taking
// activations, hands its identities over and leaves (the platter binary then exits, as on SIGTERM); /readyz
// answers 503 from the start and a load balancer stops sending traffic.
func (s *Server) handleDrain(c *call) error {
	if err := noBody(c.ctx); err != nil {
		return err
	}
	if !s.backend.Cluster.Ready() {
		return Errorf(CodeNotReady, "this node is not a serving cluster member")
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		defer cancel()
		if err := s.backend.Cluster.Drain(ctx); err != nil {
			s.log.Error("drain failed", errAttr(err))
			return
		}
		s.log.Info("node drained")
	}()
	return s.writeJSON(c.ctx, nethttp.StatusAccepted, map[string]string{"status": "draining"})
}
