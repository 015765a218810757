// Package clustertest starts N cluster members in one test process on 127.0.0.1 with free ports and
// cluster.DefaultLocalConfig, and drives faults through them.
//
//	c := clustertest.New(t, 3)                 // started, joined, converged; t.Cleanup stops them
//	who, err := c.Request(ctx, 0, "order-1")   // EchoKind answers with the member id that hosts the identity
//	c.Kill(1)                                  // like kill -9: no leave, no passivation
//	c.Restart(1)                               // same addresses, fresh member id
//	c.Stop(2)                                  // graceful
//	i := c.Add()                               // a new member joins
//	c.Pause(0); c.Resume(0)                    // transports paused in-process, like SIGSTOP/SIGCONT
//	c.WaitConverged(10 * time.Second)          // all up members ready and seeing each other
//	c.WaitFor(cond, 10*time.Second, "what")    // poll a condition; t.Fatalf on timeout
//	c.Registry().Live("order-1")               // live EchoKind activations of an identity, across members
//
// Every member hosts EchoKind, whose activations report to a shared Registry, so tests can count activations per
// identity over time. Failures go through t.Fatalf (from the test goroutine), never panics. Set CLUSTERTEST_LOG
// to debug, info, warn or error to see the members' logs on stderr.
package clustertest
