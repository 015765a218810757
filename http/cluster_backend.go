package http

import (
	"context"
	"errors"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/messages"
)

// ClusterNode is the part of a running *cluster.Node the edge uses.
type ClusterNode interface {
	Ready() bool
	Members() []cluster.Member
	Activations() map[string]int
	Cluster() *pcluster.Cluster
}

// NewClusterBackend returns the production Backend: membership and actor calls through node, readiness of store.
func NewClusterBackend(node ClusterNode, store Store) Backend {
	return Backend{
		Cluster:     nodeMembership{node},
		Store:       store,
		Restaurants: clusterRestaurants{node},
	}
}

// nodeMembership adapts the node's membership to Cluster.
type nodeMembership struct{ node ClusterNode }

func (c nodeMembership) Ready() bool                 { return c.node.Ready() }
func (c nodeMembership) Activations() map[string]int { return c.node.Activations() }

func (c nodeMembership) Members() []Member {
	ms := c.node.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{
			ID: m.ID, Name: m.Name, Address: m.GossipAddr, RemoteAddr: m.RemoteAddr,
			Status: m.Status, Kinds: m.Kinds, Self: m.Self,
		})
	}
	return out
}

// clusterRestaurants calls Restaurant actors through the generated grain client. The node installs its own cluster
// context, so these calls get owner-checked activation and retries with back-off until the deadline.
type clusterRestaurants struct{ node ClusterNode }

func (r clusterRestaurants) client(ctx context.Context, id string) (*messages.RestaurantGrainClient, pcluster.GrainCallOption, error) {
	c := r.node.Cluster()
	if c == nil || !r.node.Ready() {
		return nil, nil, ErrNotReady
	}
	timeout := time.Duration(0) // zero: the cluster's RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, nil, ErrUnavailable
		}
	}
	return messages.GetRestaurantGrainClient(c, id), pcluster.WithTimeout(timeout), nil
}

func (r clusterRestaurants) Create(ctx context.Context, id string, cmd *messages.CreateRestaurant) (*messages.RestaurantView, error) {
	g, opt, err := r.client(ctx, id)
	if err != nil {
		return nil, err
	}
	view, err := g.Create(cmd, opt)
	return view, actorError(err)
}

func (r clusterRestaurants) Get(ctx context.Context, id string) (*messages.RestaurantView, error) {
	g, opt, err := r.client(ctx, id)
	if err != nil {
		return nil, err
	}
	view, err := g.Get(&messages.GetRestaurant{}, opt)
	return view, actorError(err)
}

// actorError turns what an actor call returned into an *Error with the actor's stable code (keeping the original
// error as the cause, for the log). actors.AsError decides the code: the actor's refusal, UNAVAILABLE for calls
// that got no answer, INTERNAL for answers without a known code.
func actorError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, cluster.ErrNotReady) {
		return &Error{Code: CodeNotReady, Detail: ErrNotReady.Detail, Cause: err}
	}
	e := actors.AsError(err)
	return &Error{Code: e.Code.String(), Detail: e.Message, Cause: err}
}
