package cluster

import "errors"

// Sentinel errors. Callers test them with errors.Is; the HTTP edge maps them to problem codes.
var (
	// ErrNotReady is returned by Request while the node does not serve identities: before Start has joined the
	// cluster, while it fences itself and rejoins, and once Stop or Kill has begun.
	ErrNotReady = errors.New("cluster: node not ready")

	// ErrNoMember is returned by Request when, until the deadline, no member of the cluster hosts the kind.
	ErrNoMember = errors.New("cluster: no member hosts the kind")

	// errActivationRefused is the reason an owner-checking placement actor gave for not activating an identity
	// (it does not own it in its own view, its view is settling, or it is draining). The caller retries.
	errActivationRefused = errors.New("activation refused")
)
