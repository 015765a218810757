// Package sim is Platter's marketplace simulator: it drives one or more nodes through the real HTTP API, with real
// OAuth tokens and long-poll feeds, the way restaurants, dashers and customers would, and reports the throughput,
// the latency of every API step, the errors by code and whether what it saw obeys the workflow's invariants.
// `platter sim` (node/sim.go) is its command line; `make demo` and `make bench` run it.
//
// # Using it
//
//	s, err := sim.New(sim.Config{Targets: []string{"https://127.0.0.1:8080"}, OperatorID: id, OperatorSecret: secret,
//		InsecureSkipVerify: true, Rate: 20, Duration: time.Minute, Progress: os.Stdout})
//	report, err := s.Run(ctx)
//	report.WriteText(os.Stdout) // or WriteJSON
//
// # What a run does
//
//  1. Setup. With the operator's client_credentials token it creates restaurants (at points of a city of H3 cells
//     around Config.Center, a cuisine each), a staff client per restaurant (whose own client_credentials token
//     then sets the menu and runs the kitchen), and dasher accounts; dashers sign in through the authorize form
//     (authorization code with PKCE S256) and go online. Customers sign up, sign in the same way, and set their
//     address and card. Signed-in tokens are renewed with their rotating refresh tokens.
//  2. Parties. Each restaurant long-polls its feed: on ORDER_PLACED it rejects (Config.RejectShare) or accepts,
//     cooks for PrepTime and marks the order ready; once ready and DASHER_ASSIGNED it marks it picked up. Each dasher
//     long-polls its feed: on DELIVERY_OFFERED it declines (DeclineShare, or when full) or accepts; with the order
//     it waits for the pickup, rides for TravelTime and marks it delivered. Idle dashers move to a neighbouring
//     cell every MoveEvery. The pickup is the one thing the simulator passes in process, from the restaurant's
//     goroutine to the dasher's: the two people meet at the counter.
//  3. Arrivals, open loop. Arrivals are scheduled by the clock at Config.Rate (evenly, or Poisson) whatever the
//     node's pace; each takes the customer idle the longest (a customer visits at most once per CustomerGap, the
//     edge's per-customer order limit), searches for a cuisine near its address, adds one or two items and orders.
//     A share of customers (CancelShare) cancel before the food is ready. The customer follows its feed while it
//     has orders in flight. arrival.to_placed is measured from the scheduled time, so a slow node, or too few
//     customers, shows as latency instead of a lower rate.
//  4. Drain, check, report. After Duration the simulator waits up to Drain for orders in flight to end, reads the
//     status of those that did not, and checks the invariants (Checker): feeds in cursor order without gaps, at
//     most one dasher per order, one ending per order, every placed order ended or accounted for.
//
// Workflow steps are retried (same Idempotency-Key) on transport failures and 503/429 answers; every failed
// attempt still counts in the errors by code. Codes the workflow produces by design (OFFER_TAKEN when dashers race,
// ORDER_NOT_CANCELLABLE for a late cancel) are marked "expected" in the report.
//
// # Files
//
// client.go is the only file that knows the API's paths and shapes (and the OAuth flows); a change of the
// contract is a change there. sim.go is the engine, world.go the city, stats.go the HDR histograms (microseconds,
// 1 µs to 10 min, 3 significant digits), invariants.go the checker, report.go the report.
//
// # Many people on one machine
//
// The edge rate-limits sign-up and sign-in per client address (burst 10, then 0.5/s). With Config.SpreadLogins and
// loopback targets, the simulator binds those requests to distinct addresses of 127.77.0.0/16 (four people per
// address), as many real people would come from many addresses; everything else uses one connection pool.
package sim
