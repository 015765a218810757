// Package cluster runs one Platter node as a member of a protoactor-go cluster whose membership is
// hashicorp/memberlist, and makes protoactor's virtual actors safe to build on.
//
// # Using it
//
//	cfg := cluster.DefaultLANConfig()          // or DefaultLocalConfig() in tests
//	cfg.BindAddr, cfg.RemoteAddr = "10.0.0.5:7946", "10.0.0.5:8090"
//	cfg.RemoteAdvertiseAddr = "203.0.113.5:9090" // optional: what others dial for the remote (NAT, a proxy)
//	cfg.Seeds = []string{"10.0.0.4:7946"}      // empty: start a new cluster
//	node, err := cluster.NewNode(cfg, func() []*pcluster.Kind { return []*pcluster.Kind{messages.GetRestaurantKind()} })
//	err = node.Start(ctx)                      // binds, joins a seed (retrying until ctx ends), serves
//	reply, err := node.Request(ctx, "r-42", "Restaurant", msg)
//	view, err := messages.GetRestaurantGrainClient(node.Cluster(), "r-42").Get(&messages.GetRestaurant{})
//	err = node.Drain(ctx)                      // optional: hand identities over, keep routing requests
//	err = node.Stop(ctx)                       // passivate, leave, shut down
//
// Fetch node.Cluster() for every use: it changes when the node fences itself (below).
//
// # How it is built (one file per concern)
//
//   - provider.go: the memberlist ClusterProvider. Node metadata is protoactor's Member message (id, remote
//     host/port, kinds); the memberlist node name is the actor system id, fresh for every start. One goroutine,
//     the topology loop, pushes memberlist's live members (alive or suspect) to MemberList.UpdateClusterTopology,
//     installs the resulting view and decides about fencing. Departed members' addresses are rejoined
//     periodically, since memberlist never talks to a dead member again.
//   - view.go, placement.go, request.go: our IdentityLookup. Owners are chosen by rendezvous hashing over remote
//     addresses. The owner's placement actor activates an identity only if this member owns it in its own view
//     and has owned it for Config.TopologySettle (so the previous owner has passivated it), passivates the
//     activations it no longer owns whenever its view changes, and refuses everything while draining. Callers
//     retry refused, dead-lettered and timed-out attempts with exponential back-off and jitter until the
//     deadline; the same logic is installed as protoactor's cluster Context, so generated grain clients get it.
//   - node.go, state.go, incarnation.go: the node's lifecycle (new → joining → serving ⇄ fencing → stopping →
//     stopped, or killed) as an explicit transition table. An incarnation is one actor system + remote +
//     memberlist under one member id. Its remote address (announced, and its actor system's own, so no PID
//     carries the bind address) is Config.RemoteAdvertiseAddr when set (a proxy or NAT in front of the remote
//     port), else the bind address with an unspecified host replaced by the gossip advertise host.
//   - member.go: the metadata a member announces. protoactor's Member message plus, in field numbers it does not
//     use, Config.Attributes (e.g. the journal the node keeps state in), a draining flag and its activation
//     counts by kind (re-announced every TopologyRefreshInterval when they changed). Node.Members lists each
//     member with its status as memberlist holds it (alive or suspect, from the patched Memberlist.NodeStates)
//     and those counts (unknown for a suspect). Config.Admit sees each peer's metadata and can keep it out of the
//     cluster (provider.go: memberlist's merge and alive delegates); a join refused that way fails Start at once
//     with a *RefusedError.
//   - faults.go: Faults pauses a node's transports in-process for tests (see clustertest; NewGossipFaults pauses
//     gossip alone, for a process whose remote is cut by a proxy outside it); the gossip transport
//     wrapper there also records when another member was last heard (the lease, below).
//   - log.go: protoactor and memberlist logs go to the configured slog logger at mapped levels.
//
// # Draining, scale out, ownership
//
// Node.Drain hands a node's identities over without leaving: it announces "draining" in its metadata, so every
// member (itself included) counts it out of the owners of every identity; its placement actor refuses
// activations and stops the local ones, while the other members activate them once their views have settled.
// Requests through a draining node keep working (they reach the new owners); Ready is false. Node.Stop then
// leaves. A node that joins takes over the identities it owns in the new view the same way: the previous
// owners passivate what they no longer own as soon as their view changes, the joiner activates after the settle
// time. Node.Owns tells whether this node owns an identity in its view (the reminder scanner wakes only those).
//
// # Self-fencing
//
// protoactor blocks a member id for good once it left the topology. A member that was declared dead and comes
// back (a long GC pause, SIGSTOP, a partition) is therefore never readmitted under that id, and it would keep
// serving its own view: a split brain. Every member sends a "block notice" to each live member whose id it has
// blocked. A member fences itself when a majority of its live peers sent it notices, or when a member it has
// blocked stays alive for Config.FenceGrace (then it is the odd one out), or when it loses all of at least two
// peers at once (Config.IsolationWindow: it is cut off, so it stops serving its one-member view and later rejoins
// with a fresh memberlist instead of spreading stale death claims). Fencing stops serving, shuts the memberlist
// down without a leave broadcast (its suspicion timers from the time it heard nothing would otherwise declare
// healthy members dead to the others while the leave goes out), passivates, and starts a new incarnation on the
// same addresses under a fresh member id, calling the KindsFunc again. A node configured with seeds serves nothing
// until it has joined, so it never forms a cluster of its own.
//
// Fencing follows the cut-off member's own failure detection, which is slower than the others' (alone, nobody
// confirms its suspicions). So each member also holds a lease: when it has heard nothing from any other member
// for Config.LeaseTimeout while its view holds others, it stops and refuses activations (Ready turns false) until
// it hears from one again. The lease is shorter than the others' earliest takeover (SuspicionMult × ProbeInterval
// + TopologySettle), so the cut-off member's activations are gone before new ones start elsewhere: it serves no
// stale state. A cached PID is used only while its member owns the identity in the current view.
//
// # What is deliberately not used from protoactor
//
// Cluster.StartMember and Cluster.Shutdown (protoactor gossip with heartbeat-expiry blocking, panics, fixed
// sleeps), disthash (no owner check, fixed 5 s timeouts), DefaultContext (no real back-off, ignores deadlines),
// and graceful remote shutdown (races, 10 s waits). protoactor itself is used from the patched copy in
// third_party/protoactor-go (see its PATCHES.md): its upstream races under -race in any process with more than
// one remote. memberlist is used from the patched copy in third_party/memberlist (see its PATCHES.md), which
// tells each node's state (alive or suspect) through Memberlist.NodeStates.
package cluster
