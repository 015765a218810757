package main

import (
	"context"
	"sync"

	"github.com/platterhq/platter/http"
)

// Draining a node (SIGTERM, or POST /v1/admin/drain) is one path: Close drains the cluster node first (it stops
// taking activations and hands its identities over, while requests through this node keep reaching their new
// owners), then closes the edge (requests in flight finish), leaves the cluster and closes the journal; the
// process then exits 0. A load balancer sees /readyz answer 503 from the start of the drain.

// drainingCluster is the edge's Cluster with Drain wired to the process's graceful stop: POST /v1/admin/drain
// stops the node the way SIGTERM does.
type drainingCluster struct {
	http.Cluster
	main *Main
}

// Drain asks the process to stop gracefully and waits until the cluster node has handed its identities over (or
// ctx ends); the edge, the membership and the process end after that.
func (c drainingCluster) Drain(ctx context.Context) error {
	c.main.RequestStop()
	select {
	case <-c.main.stop.drainedCh():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RequestStop asks the process to stop gracefully: Stopping's channel closes, and main calls Close. Safe to call
// more than once, from any goroutine.
func (m *Main) RequestStop() { m.stop.request() }

// Stopping is closed once something other than a signal (POST /v1/admin/drain) asked the node to stop.
func (m *Main) Stopping() <-chan struct{} { return m.stop.requestedCh() }

// stopSignals are the two moments of a requested stop. The zero value is ready to use.
type stopSignals struct {
	once      sync.Once
	requested chan struct{} // closed by request
	drained   chan struct{} // closed by markDrained
	reqOnce   sync.Once
	drainOnce sync.Once
}

func (s *stopSignals) init() {
	s.once.Do(func() {
		s.requested = make(chan struct{})
		s.drained = make(chan struct{})
	})
}

func (s *stopSignals) request() {
	s.init()
	s.reqOnce.Do(func() { close(s.requested) })
}

func (s *stopSignals) markDrained() {
	s.init()
	s.drainOnce.Do(func() { close(s.drained) })
}

func (s *stopSignals) requestedCh() <-chan struct{} {
	s.init()
	return s.requested
}

func (s *stopSignals) drainedCh() <-chan struct{} {
	s.init()
	return s.drained
}
