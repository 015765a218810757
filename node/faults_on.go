//go:build platterfaults

package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/platterhq/platter/cluster"
)

// Fault injection for system tests, only in binaries built with -tags platterfaults (never in a release build):
// SIGUSR1 cuts the node's gossip off from the other nodes (cluster.NewGossipFaults: packets dropped both ways,
// streams refused), SIGUSR2 heals it. The actor remote is not touched here: the test cuts it with a TCP proxy in
// front of every node's remote port (--remote-advertise-addr), outside the process, and counts what the proxies
// refused and severed. The HTTP edge and the journal stay reachable, as in a partition of the cluster network
// alone. Each change is logged ("fault injected", "fault healed"), so a test can prove it fired.
func (m *Main) faults() *cluster.Faults {
	f := cluster.NewGossipFaults()
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	log := m.Logger
	go func() {
		for sig := range ch {
			if sig == syscall.SIGUSR1 {
				f.Pause()
				log.Warn("fault injected", slog.String("fault", "partition"))
			} else {
				f.Resume()
				log.Warn("fault healed", slog.String("fault", "partition"))
			}
		}
	}()
	return f
}
