package http

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/messages"
)

// ClusterNode is the part of a running *cluster.Node the edge uses.
type ClusterNode interface {
	Ready() bool
	Members() []cluster.Member
	Activations() map[string]int
	State() string
	Cluster() *pcluster.Cluster
	Request(ctx context.Context, identity, kind string, msg any) (any, error)
	Drain(ctx context.Context) error
	Stop(ctx context.Context) error
}

// NewClusterBackend returns the production Backend: membership and actor calls through node, readiness of store,
// Idempotency-Key records in the journal j (kept for retention).
func NewClusterBackend(node ClusterNode, store Store, j journal.Journal, retention time.Duration) Backend {
	return Backend{
		Cluster:     nodeMembership{node},
		Store:       store,
		Actors:      clusterActors{node},
		Idempotency: NewJournalIdempotency(j, retention),
	}
}

// nodeMembership adapts the node's membership to Cluster.
type nodeMembership struct{ node ClusterNode }

func (c nodeMembership) Ready() bool                 { return c.node.Ready() }
func (c nodeMembership) Activations() map[string]int { return c.node.Activations() }
func (c nodeMembership) State() string               { return c.node.State() }

func (c nodeMembership) Members() []Member {
	ms := c.node.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{
			ID: m.ID, Name: m.Name, Address: m.GossipAddr, RemoteAddr: m.RemoteAddr,
			Status: m.Status, Kinds: m.Kinds, Self: m.Self, Draining: m.Draining, Attributes: m.Attributes,
			Activations: m.Activations,
		})
	}
	return out
}

// Drain hands the node's identities over (cluster.Node.Drain: it owns nothing, its activations move, requests
// through it keep working), then leaves the cluster (cluster.Node.Stop). The platter binary wires Drain to its
// graceful stop instead, which also closes the edge and exits.
func (c nodeMembership) Drain(ctx context.Context) error {
	if err := c.node.Drain(ctx); err != nil {
		return err
	}
	return c.node.Stop(ctx)
}

// clusterActors calls grains through the node: owner-checked activation and retries with back-off until the
// deadline.
type clusterActors struct{ node ClusterNode }

func (a clusterActors) Call(ctx context.Context, kind, identity, method string, req proto.Message) (proto.Message, error) {
	md, err := GrainMethod(kind, method, req)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", method, err)
	}
	res, err := a.node.Request(ctx, identity, kind, &pcluster.GrainRequest{MethodIndex: int32(md.Index()), MessageData: data})
	if err != nil {
		return nil, actorError(err)
	}
	switch m := res.(type) {
	case *pcluster.GrainErrorResponse:
		return nil, actorError(m)
	case proto.Message:
		if m.ProtoReflect().Descriptor().FullName() != md.Output().FullName() {
			return nil, fmt.Errorf("call %s.%s: answer is %T", kind, method, res)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("call %s.%s: answer is %T", kind, method, res)
	}
}

// PollFeed makes one call whose answer may take the whole wait: the node's Request bounds every attempt by its
// AttemptTimeout (seconds), which a parked poll outlasts, so this resolves the activation through the cluster
// context and waits on one future for the wait plus actors.PollFeedMargin.
func (a clusterActors) PollFeed(ctx context.Context, kind, identity string, req *messages.PollFeed) (*messages.FeedPage, error) {
	// Not Ready() alone: a draining node still routes polls to the feeds' new owners. The cluster context
	// answers cluster.ErrNotReady once the node stops serving.
	c := a.node.Cluster()
	if c == nil || (!a.node.Ready() && a.node.State() != "draining") {
		return nil, ErrNotReady
	}
	md, err := GrainMethod(kind, "PollFeed", req)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode PollFeed request: %w", err)
	}
	timeout := actors.PollFeedTimeout(req)
	type result struct {
		res any
		err error
	}
	var r result
	for deadline := time.Now().Add(timeout); ; {
		f, err := c.RequestFuture(identity, kind, &pcluster.GrainRequest{MethodIndex: int32(md.Index()), MessageData: data},
			pcluster.WithTimeout(time.Until(deadline)))
		if err != nil {
			return nil, actorError(err)
		}
		// The answer arrives through a callback, not a goroutine blocked in f.Result: a held poll costs the
		// handler's goroutine only (protoactor patch 8).
		done := make(chan result, 1)
		f.ContinueWith(func(res any, err error) { done <- result{res, err} })
		select {
		case r = <-done:
		case <-ctx.Done():
			return &messages.FeedPage{NextCursor: req.GetAfter()}, nil
		}
		// A dead letter was never delivered (the activation stopped as the identity moved): ask again, through
		// a fresh resolution, while the wait lasts.
		if !errors.Is(r.err, actor.ErrDeadLetter) || time.Until(deadline) < 100*time.Millisecond {
			break
		}
		c.PidCache.Remove(identity, kind)
	}
	if r.err != nil {
		if errors.Is(r.err, actor.ErrTimeout) {
			return &messages.FeedPage{NextCursor: req.GetAfter()}, nil
		}
		return nil, actorError(r.err)
	}
	switch m := r.res.(type) {
	case *messages.FeedPage:
		return m, nil
	case *pcluster.GrainErrorResponse:
		return nil, actorError(m)
	default:
		return nil, fmt.Errorf("call %s.PollFeed: answer is %T", kind, r.res)
	}
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
