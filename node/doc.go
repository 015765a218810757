// Command platter runs one Platter node: a member of a protoactor cluster (membership over memberlist) that hosts
// virtual actors persisted in a journal (embedded bbolt for one node, PostgreSQL shared by a cluster), behind a
// fasthttp edge.
//
//	platter run [flags]   run a node until SIGINT or SIGTERM
//	platter cert create-ca --certs-dir DIR                  the cluster CA (ca.crt, ca.key) and gossip.key
//	platter cert create-node --certs-dir DIR --host H,...   a node certificate signed by the CA (node.crt, node.key)
//	platter version       print the version
//	platter help          print this help
//
// Every flag of `run` can also come from an environment variable: --data-dir is PLATTER_DATA_DIR, --http-addr
// PLATTER_HTTP_ADDR, and so on; a flag on the command line wins. Defaults suit one node on a laptop:
//
//	--data-dir ./data  --http-addr 127.0.0.1:8080  --cluster-addr 127.0.0.1:7946  --remote-addr 127.0.0.1:8090
//
// A second node joins with --join pointing at the first node's --cluster-addr. `--cluster-profile local` shortens
// failure detection to a few seconds (tests); the default "lan" profile uses memberlist's LAN timings.
// --advertise-addr is the host (or host:port) other nodes reach this one at; --remote-advertise-addr
// (PLATTER_REMOTE_ADVERTISE_ADDR) is the host:port they dial for its actor remote when that differs from
// --remote-addr, e.g. behind NAT or a TCP proxy in front of the remote port (default: the --remote-addr port at the
// --advertise-addr host, else the bind host).
//
// # The order workflow's timings and policies (config.go, workflowFlags)
//
// The workflow's SLAs, dispatch waves, refund share and retry timings are flags with their PLATTER_* variables,
// passed to actors.Deps.Workflow (docs/workflow.md says what each does; the other WorkflowConfig fields, feed and
// reminder-scan limits among them, keep the actors' defaults): --accept-sla (5m), --dispatch-sla (15m),
// --offer-ttl (45s), --opening-wave-size (0: as --wave-size), --wave-size (3), --cancel-refund-share (0.5),
// --payment-retry-min/--payment-retry-max (100ms/5m), --payment-timeout (10s),
// --outbox-retry-min/--outbox-retry-max (200ms/30s), --deliver-timeout (5s), --reminder-scan-interval (1s),
// --order-call-timeout (5s). A value that cannot work (zero or negative, a negative opening wave, a share
// outside 0-1, a maximum below its minimum) stops the node with one line naming the flag. The system tests run the
// binary with short SLAs through these flags (workflow_system_test.go).
//
// # Cluster mode (issue 6; journal.go, drain.go)
//
// --journal (PLATTER_JOURNAL) is "bbolt" (the default: data-dir/journal.db, this node only) or a postgres:// URL
// that every node of a cluster shares, so that any node can activate any actor, after a failover too. A bbolt
// node refuses --join (one line, exit 2); every node announces its journal's identity (a random id kept in the
// journal) in its cluster metadata and admits only members with the same one, so a node joining a bbolt node, or
// a cluster on another database, is refused at once and says why. Each node's reminder scanner wakes only the
// actors it owns. faults_on.go (built with -tags platterfaults, for system tests only) cuts the node's gossip off
// from the others on SIGUSR1 and heals it on SIGUSR2; the system tests cut the actor remote with a TCP proxy in
// front of each node's remote port (--remote-advertise-addr), outside the process.
//
// The operator's routes: GET /v1/admin/cluster (this node's state and activations, and every member with its
// status as memberlist holds it, alive or suspect, draining, journal and activations per kind), POST
// /v1/admin/drain (below), PUT /v1/admin/areas/{area}/auto-assign (an area's auto-assign mode) and POST
// /v1/admin/signing-keys/rotate (below).
//
// # Security (issue 5; tls.go, cert.go, auth.go)
//
// The edge serves HTTPS (TLS 1.2+, AEAD suites) with --tls-cert/--tls-key, or with a self-signed development
// certificate made in the data directory on first start (tls-dev-cert.pem; its path and SHA-256 are printed).
// --insecure serves plain HTTP and warns. Requests carry OAuth 2.0 access tokens from the node's authorization
// server (http/oauth); once the node serves, the first node of a cluster makes the signing key and the operator
// client, whose secret it writes once to data-dir/operator-credentials.json (mode 0600). The signing key is
// replaced once it is --key-rotate-after old (PLATTER_KEY_ROTATE_AFTER, default 720h, 30 days), or at once by POST
// /v1/admin/signing-keys/rotate ({"retire_previous":true} also revokes every previous key); a previous key keeps
// verifying its tokens until they expire, and keys live in the journal, so they survive restarts. Between nodes,
// --certs-dir gives the actor remote mutual TLS with the cluster CA (members are admitted only after a mutual TLS
// handshake) and encrypts gossip with gossip.key (or --gossip-key). gossip.key is a keyring, one key a line
// (--gossip-key: comma-separated): the first encrypts, all decrypt, so the key rotates with rolling restarts.
// A node refuses to start, as CockroachDB does, when its cluster links leave loopback (a non-loopback
// --cluster-addr, --remote-addr, --join seed, --advertise-addr or --remote-advertise-addr) without --certs-dir and
// a gossip key, unless --insecure (then it warns); loopback-only nodes without them start and warn.
//
// --debug-addr opens a separate plain-HTTP listener with Go's profiles (/debug/pprof/, debug.go) for profiling a
// node under load; it has no authentication, so a host off loopback is refused unless --insecure. make bench uses
// it to profile the node while the simulator drives it.
//
// # Lifecycle
//
// Run opens the data directory (created if missing, checked writable), the journal (--journal), the HTTP edge (so
// /healthz answers while joining; /readyz stays 503 until the node has joined), then starts the cluster node and
// joins the seeds, giving up after --join-timeout. It then prints one line saying where it listens.
//
// The first SIGINT or SIGTERM, or POST /v1/admin/drain, stops gracefully: the node drains (/readyz turns 503; it
// stops taking activations and hands its actors over while it still routes requests to their new owners), the
// edge keeps serving for --drain-grace and then stops accepting connections and finishes requests in flight, the
// node leaves the cluster (other members see it leave at once, not after failure detection), and the journal is
// closed; the process exits 0. A second signal exits at once with status 1.
//
// A configuration that cannot work (an unparseable address, seeds that never answer, a data directory that cannot
// be written, a port in use) exits non-zero with one line on stderr saying what is wrong. Logs go to stdout: text
// on a terminal, JSON otherwise (--log-format).
//
// # Layout
//
// main.go only calls Main (ParseFlags, Run, Close); config.go holds flags and environment; platter.go wires the
// packages. The tests run the real Main in process on port 0 (platter_test.go) and the built binary as several
// processes on 127.0.0.1-3 (system_test.go, cluster_system_test.go, workflow_system_test.go).
package main
