package main

import (
	"context"
	"fmt"

	"github.com/platterhq/platter/actors/journal/pgtest"
)

// clusterRate is the offered rate of the PostgreSQL scenarios: the same for one node and for three, so that the
// difference is the cost of the hops between nodes (and of three processes sharing the machine).
const clusterRate = 100

// clusterScenario runs the simulator against one node, then three nodes, on one throwaway PostgreSQL server (a
// database each), at the same offered rate, the parties spread over the nodes' edges.
func clusterScenario(r *results) error {
	pg, err := pgtest.StartServer(pgtest.Options{SharedBuffers: "256MB"})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()
	rate := float64(clusterRate)
	if r.opts.quick {
		rate = 10
	}
	for _, size := range []int{1, 3} {
		dsn, err := pg.CreateDatabase(context.Background(), fmt.Sprintf("bench_%d", size))
		if err != nil {
			return err
		}
		var nodes []*nodeProc
		stopAll := func() {
			for i := len(nodes) - 1; i >= 0; i-- {
				nodes[i].stop()
			}
		}
		first, err := startNode(r, "--journal", dsn)
		if err != nil {
			return err
		}
		nodes = append(nodes, first)
		for range size - 1 {
			n, err := startNode(r, "--journal", dsn, "--join", first.cluster)
			if err != nil {
				stopAll()
				return err
			}
			nodes = append(nodes, n)
		}
		var targets []string
		for _, n := range nodes {
			targets = append(targets, n.url)
		}
		cfg := scenarioConfig(r, rate)
		cfg.Targets = targets
		rep, err := r.simulate(fmt.Sprintf("%d node(s) on one PostgreSQL (%g orders/s)", size, rate), first, cfg, false)
		stopAll()
		if err != nil {
			return err
		}
		p := rep.Step("arrival.to_placed")
		r.add("cluster", fmt.Sprintf("lifecycles/s, %d node(s) on PostgreSQL", size), rep.LifecyclesPerSec, "lifecycles/s", "",
			fmt.Sprintf("%g/s offered; placement p50 %.1f ms, p99 %.1f ms; lifecycle p50 %.0f ms", rate, p.P50, p.P99, rep.Step("lifecycle.delivered").P50))
	}
	return nil
}
