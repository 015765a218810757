package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is; the HTTP edge maps them to problem codes.
var (
	// ErrNotReady is returned by Request while the node does not serve identities: before Start has joined the
	// cluster, while it fences itself and rejoins, and once Stop or Kill has begun.
	ErrNotReady = errors.New("cluster: node not ready")

	// ErrNoMember is returned by Request when, until the deadline, no member of the cluster hosts the kind.
	ErrNoMember = errors.New("cluster: no member hosts the kind")

	// ErrRefused is wrapped by the *RefusedError that Start returns when Config.Admit refused a member of the
	// cluster it tried to join.
	ErrRefused = errors.New("cluster: member refused")

	// errActivationRefused is the reason an owner-checking placement actor gave for not activating an identity
	// (it does not own it in its own view, its view is settling, or it is draining). The caller retries.
	errActivationRefused = errors.New("activation refused")
)

// RefusedError says that Config.Admit refused a member: Start returns it (wrapped) when the cluster to join holds
// a member this node does not admit. errors.Is(err, ErrRefused) holds.
type RefusedError struct {
	Member Member // the refused member, as its metadata describes it
	Reason error  // what Admit returned
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("member %s at %s refused: %v", e.Member.ID, e.Member.GossipAddr, e.Reason)
}

func (e *RefusedError) Unwrap() []error { return []error{ErrRefused, e.Reason} }
