// Command bench is Platter's benchmark suite (`make bench`, `go run ./node/bench`) and `make demo`.
//
// In one run it measures the ceilings and what Platter does on top of them, prints each result with its ratio to
// its ceiling, and writes BENCHMARKS.md (machine, Go version, commit, load average before and after):
//
//   - ceilings: the disk's fsync rate (200 B + fdatasync), raw bbolt appends in batches of 64 per transaction, a
//     raw fasthttp hello-world loaded by the same client (64 keep-alive connections) as the edge;
//   - Go benchmarks (go test -bench): the journal on bbolt (actors/journal BenchmarkBolt: one writer, 16 and 64
//     writers with group commit), and in this package BenchmarkActorRequest (one node, across nodes, clustertest),
//     BenchmarkEdgeStatus (GET /v1/orders/{id}/status through the edge over a real listener) and
//     BenchmarkLongPollFanout (200 polls parked on one feed woken by one entry); the edge benchmark runs again with
//     a CPU profile whose top entries go into the report;
//   - edge: GET /v1/orders/{id}/status of a real `platter run` process (plain HTTP, like the hello-world; a real
//     customer JWT) against the hello-world rate;
//   - simulator (package node/sim, in this process, against a `platter run` process over TLS): a saturation
//     scenario at --rate offered orders/s, then half of what it sustained; each report goes into BENCHMARKS.md,
//     with a CPU profile of the node taken through its --debug-addr listener in the middle of the saturation run;
//   - fan-out: --pollers long polls held on as many restaurant feeds of one node, its resident memory, and how long
//     an ORDER_PLACED entry takes to reach its parked poller;
//   - cluster: the simulator against one node, then three nodes, on one throwaway PostgreSQL (actors/journal/pgtest).
//
// --quick runs every step at tiny scales to check the suite (minutes, not measurements); --only picks steps
// (ceilings, go, edge, sim, fanout, cluster). The hand-written analysis (what limits each number, what would lift
// it) is node/bench/analysis.md, copied into the report, followed by node/bench/failover.md (failover times from
// TestFailoverBenchmark, a system test the bench does not run). Run it on an otherwise idle machine: the load average is
// recorded because the simulator and the node share the cores.
//
// --demo (make demo) starts one node in a fresh temporary data dir and runs `platter sim` against it at 3 orders/s
// for 30 s with slow kitchens and rides, so a newcomer sees orders placed, accepted, picked up and delivered.
package main
