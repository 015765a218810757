package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// incarnation is one life of a node under one member id: an actor system, its protoactor remote and cluster, a
// memberlist, the topology loop and the placement actor. A node has one incarnation at a time; a self-fence
// ends it and starts the next on the same addresses under a fresh member id.
//
// protoactor's Cluster.StartMember is deliberately not used: it starts protoactor's gossip (whose heartbeat
// expiry blocks members behind memberlist's back and races on the block list), panics on errors and sleeps a
// fixed second. We start the parts we use ourselves; Cluster.Shutdown is not used either (fixed 2 s sleep,
// nil-pointer panic without gossip).
type incarnation struct {
	cfg   Config
	log   *slog.Logger
	id    string
	retry backoff

	system    *actor.ActorSystem
	cluster   *pcluster.Cluster
	provider  *provider
	placement *actor.PID
	conns     *connSet
	counts    activationCounts

	remoteStarted          bool
	transport              memberlist.NodeAwareTransport
	watch                  *faultTransport // the transport, which knows when another member was last heard
	gossipHost             string
	gossipPort             int
	gossipAdvHost          string
	gossipAdvPort          int
	remoteAddr             string // advertised remote address (the member's PID address)
	remoteBind             string // actually bound remote address, for the next incarnation
	gossipBind             string // actually bound gossip address, for the next incarnation
	view                   atomic.Pointer[view]
	serving                atomic.Bool // joined, first view installed, not draining
	suspended              atomic.Bool // the lease lapsed: no activations here until another member is heard
	joined                 atomic.Bool
	firstView              chan struct{}
	firstViewOnce, endOnce sync.Once
	fenceReq               func(inc *incarnation, reason string)
	ended                  atomic.Bool
}

// startIncarnation builds and starts one incarnation bound to gossipBind and remoteBind (ports may be 0 the
// first time). It does not join.
func startIncarnation(cfg Config, kindsFn KindsFunc, gossipBind, remoteBind string, fenceReq func(*incarnation, string)) (inc *incarnation, err error) {
	logger := cfg.logger()
	kinds := map[string]*pcluster.Kind{}
	var kindList []*pcluster.Kind
	var kindNames []string
	if kindsFn != nil {
		for _, k := range kindsFn() {
			if k == nil || k.Kind == "" {
				return nil, errors.New("cluster: KindsFunc returned a nil or unnamed kind")
			}
			if _, dup := kinds[k.Kind]; dup {
				return nil, fmt.Errorf("cluster: kind %q registered twice", k.Kind)
			}
			kinds[k.Kind] = k
			kindList = append(kindList, k)
			kindNames = append(kindNames, k.Kind)
		}
	}

	system := actor.NewActorSystem(
		actor.WithLoggerFactory(protoactorLoggerFactory(logger)),
		actor.WithDeadLetterThrottleInterval(cfg.DeadLetterThrottleInterval),
		actor.WithDeadLetterThrottleCount(int32(cfg.DeadLetterThrottleCount)),
		actor.WithDeadLetterRequestLogging(false),
	)
	inc = &incarnation{
		cfg:       cfg,
		log:       logger.With(slog.String("member", system.ID)),
		id:        system.ID,
		retry:     newBackoff(cfg.RetryBackoffMin, cfg.RetryBackoffMax),
		system:    system,
		conns:     newConnSet(cfg.Faults),
		firstView: make(chan struct{}),
		fenceReq:  fenceReq,
	}
	defer func() {
		if err != nil {
			inc.kill()
		}
	}()

	// Gossip transport first: its advertise address is the default remote advertise host.
	if err := inc.bindGossip(gossipBind); err != nil {
		return inc, err
	}

	rhost, rport, _ := splitHostPort(remoteBind)
	rc := remote.Configure(rhost, rport)
	// protoactor stamps its address into the PIDs it spawns while starting (endpoint manager, activator), and a
	// peer answers a message from one of them at that address. When the port is known before binding, start with
	// the advertised address, so that no PID carries the bind address where the two differ (a proxy in front of
	// the remote port: a reply sent to the bind address would loop through this member's own remote).
	if rport != 0 {
		rc.AdvertisedHost = inc.advertisedRemote(rport)
	}
	rc.MaxRetryCount = cfg.RemoteConnectRetries
	rc.DialOptions = []grpc.DialOption{grpc.WithContextDialer(inc.conns.dial)}
	switch {
	case cfg.TLS != nil:
		rc.DialOptions = append(rc.DialOptions, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(cfg.TLS))))
	case len(cfg.RemoteDialOptions) == 0:
		rc.DialOptions = append(rc.DialOptions, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	rc.DialOptions = append(rc.DialOptions, cfg.RemoteDialOptions...)
	// The server's connections always go through trackingCreds, so Kill closes them and Faults stalls them, also
	// with extra RemoteServerOptions (a grpc.Creds among them, applied later, would replace these credentials).
	creds := trackingCreds{set: inc.conns}
	if cfg.TLS != nil {
		creds.tls = credentials.NewTLS(serverTLS(cfg.TLS))
	}
	rc.ServerOptions = append([]grpc.ServerOption{grpc.Creds(creds)}, cfg.RemoteServerOptions...)

	lookup := &identityLookup{inc: inc}
	prov, err := newProvider(cfg, inc.log, &pcluster.Member{Id: system.ID, Kinds: kindNames})
	if err != nil {
		return inc, fmt.Errorf("cluster: %w", err)
	}
	prov.inc = inc
	inc.provider = prov
	ccfg := pcluster.Configure(cfg.ClusterName, prov, lookup, rc,
		pcluster.WithKinds(kindList...),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
		pcluster.WithClusterContextProducer(func(*pcluster.Cluster) pcluster.Context { return &clusterContext{inc: inc} }),
	)
	ccfg.GossipInterval = cfg.ProtoactorGossipInterval
	ccfg.GossipRequestTimeout = cfg.ProtoactorGossipRequestTimeout
	ccfg.HeartbeatExpiration = cfg.ProtoactorHeartbeatExpiration
	c := pcluster.New(system, ccfg)
	inc.cluster = c
	c.Remote = remote.NewRemote(system, rc)
	if err := probeBind("tcp", remoteBind); err != nil {
		return inc, fmt.Errorf("cluster: bind remote address %q: %w", remoteBind, err)
	}
	if err := startRemote(c.Remote); err != nil {
		return inc, fmt.Errorf("cluster: bind remote address %q: %w", remoteBind, err)
	}
	inc.remoteStarted = true
	if err := inc.fixRemoteAddress(rport); err != nil {
		return inc, err
	}

	// The member metadata needs the final remote address.
	host, portStr, _ := net.SplitHostPort(inc.remoteAddr)
	port, _ := strconv.Atoi(portStr)
	prov.selfM.Host, prov.selfM.Port = host, int32(port)
	if err = prov.updateMeta(); err != nil {
		return inc, fmt.Errorf("cluster: %w", err)
	}

	pl := newPlacement(inc.remoteAddr, kinds, cfg.TopologySettle, &inc.counts, inc.log)
	inc.placement, err = system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return pl }), placementName)
	if err != nil {
		return inc, fmt.Errorf("cluster: start placement actor: %w", err)
	}
	c.IdentityLookup = lookup
	lookup.Setup(c, kindNames, false)

	prov.blocked = c.Remote.BlockList().IsBlocked
	prov.install = inc.installView
	prov.lastHeard = inc.watch.lastHeard
	prov.suspend = inc.suspend
	prov.fence = func(reason string) { inc.requestFence(reason) }
	if err := prov.StartMember(c); err != nil {
		return inc, fmt.Errorf("cluster: start memberlist on %q: %w", inc.gossipBind, err)
	}
	inc.log.Info("member started",
		slog.String("gossip_addr", net.JoinHostPort(inc.gossipAdvHost, strconv.Itoa(inc.gossipAdvPort))),
		slog.String("remote_addr", inc.remoteAddr), slog.Any("kinds", kindNames))
	return inc, nil
}

// bindGossip binds memberlist's TCP and UDP listeners. With port 0 it retries a few times, as the free TCP port
// may be taken for UDP.
func (inc *incarnation) bindGossip(bind string) error {
	host, port, _ := splitHostPort(bind)
	if host == "" {
		host = "0.0.0.0"
	}
	tries := 1
	if port == 0 {
		tries = 10
	} else {
		// memberlist flattens its bind errors to text; probing first keeps the cause (errors.Is(err,
		// syscall.EADDRINUSE)) for the caller.
		for _, network := range []string{"tcp", "udp"} {
			if err := probeBind(network, net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
				return fmt.Errorf("cluster: bind gossip address %q: %w", bind, err)
			}
		}
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host},
			BindPort:  port,
			Logger:    newMemberlistLogger(inc.log),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: bind gossip address %q: %w", bind, err)
	}
	inc.gossipHost, inc.gossipPort = host, nt.GetAutoBindPort()
	inc.gossipBind = net.JoinHostPort(host, strconv.Itoa(inc.gossipPort))
	advHost, advPort := "", 0
	if inc.cfg.AdvertiseAddr != "" {
		advHost, advPort, _ = splitHostPort(inc.cfg.AdvertiseAddr)
		if advPort == 0 {
			advPort = inc.gossipPort
		}
	}
	ip, p, err := nt.FinalAdvertiseAddr(advHost, advPort)
	if err != nil {
		_ = nt.Shutdown()
		return fmt.Errorf("cluster: advertise gossip address: %w", err)
	}
	inc.gossipAdvHost, inc.gossipAdvPort = ip.String(), p
	// Always wrapped: it tracks the lease (Config.LeaseTimeout); with Faults nil it injects nothing.
	inc.watch = newFaultTransport(nt, inc.cfg.Faults)
	inc.transport = inc.watch
	return nil
}

// probeBind checks that addr can be bound (port 0 always can), keeping the cause of failure as a wrapped error.
func probeBind(network, addr string) error {
	if _, port, _ := splitHostPort(addr); port == 0 {
		return nil
	}
	switch network {
	case "udp":
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return err
		}
		return c.Close()
	default:
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		return l.Close()
	}
}

// startRemote starts the gRPC server; protoactor panics when it cannot listen, we return the error.
func startRemote(r *remote.Remote) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			if e, ok := rec.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", rec)
			}
			err = errors.New(strings.TrimPrefix(err.Error(), "failed to listen: "))
		}
	}()
	r.Start()
	return nil
}

// fixRemoteAddress sets the actor system's address (the host:port in every PID of this member) to the
// advertised remote address (advertisedRemote) and records the bound address for the next incarnation. bindPort
// is the configured port; 0: the port the listener got.
func (inc *incarnation) fixRemoteAddress(bindPort int) error {
	bport := bindPort
	if bport == 0 {
		bound := inc.system.Address()
		_, bportStr, err := net.SplitHostPort(bound)
		if err != nil {
			return fmt.Errorf("cluster: remote bound to %q: %w", bound, err)
		}
		bport, _ = strconv.Atoi(bportStr)
	}
	cfgHost, _, _ := splitHostPort(inc.cfg.RemoteAddr)
	inc.remoteBind = net.JoinHostPort(cfgHost, strconv.Itoa(bport))
	inc.remoteAddr = inc.advertisedRemote(bport)
	// Nothing has read the address yet: no member knows this port before the metadata is announced.
	inc.system.ProcessRegistry.Address = inc.remoteAddr
	return nil
}

// advertisedRemote is the remote address other members dial, given the bound port: RemoteAdvertiseAddr, its
// host or port missing taken from the bind address, with an unspecified host replaced by the gossip advertise
// host.
func (inc *incarnation) advertisedRemote(bport int) string {
	host, _, _ := splitHostPort(inc.cfg.RemoteAddr)
	port := bport
	if inc.cfg.RemoteAdvertiseAddr != "" {
		ah, ap, _ := splitHostPort(inc.cfg.RemoteAdvertiseAddr)
		if ah != "" {
			host = ah
		}
		if ap != 0 {
			port = ap
		}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = inc.gossipAdvHost
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// join joins the memberlist of one of seeds, retrying with back-off until it succeeds or ctx ends.
func (inc *incarnation) join(ctx context.Context, seeds []string) error {
	if len(seeds) == 0 {
		inc.markJoined()
		return nil
	}
	bo := newBackoff(inc.cfg.JoinRetryMin, inc.cfg.JoinRetryMax)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if inc.ended.Load() {
			return errors.New("cluster: join: member stopped")
		}
		n, err := inc.provider.ml.Join(seeds)
		if n > 0 {
			inc.log.Info("joined cluster", slog.Int("contacted", n))
			inc.markJoined()
			return nil
		}
		if rerr := inc.provider.refusal(); rerr != nil {
			// Config.Admit refused a member of the cluster behind a seed: trying again will not change that.
			return fmt.Errorf("cluster: join: %w", rerr)
		}
		if err == nil {
			err = errors.New("no seed answered")
		}
		lastErr = err
		// At warning level: the reason a node cannot join (no seed up, another gossip key, a refused certificate)
		// must be in its log.
		inc.log.Warn("join attempt failed", slog.Int("attempt", attempt), slog.Any("error", err))
		if bo.wait(ctx, attempt) != nil {
			return fmt.Errorf("cluster: join: no seed reachable (%s): %v", strings.Join(seeds, ", "), lastErr)
		}
	}
}

func (inc *incarnation) markJoined() {
	inc.joined.Store(true)
	inc.provider.reinstall.Store(true)
	inc.provider.poke()
}

// waitServing waits until the first view after joining is installed.
func (inc *incarnation) waitServing(ctx context.Context) error {
	select {
	case <-inc.firstView:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: wait for first topology: %w", ctx.Err())
	}
}

// installView is called by the topology loop with each new view.
func (inc *incarnation) installView(v *view) {
	inc.view.Store(v)
	inc.system.Root.Send(inc.placement, &viewUpdate{v: v})
	if inc.joined.Load() && !inc.ended.Load() {
		inc.firstViewOnce.Do(func() {
			inc.serving.Store(true)
			close(inc.firstView)
		})
	}
}

// suspend is called by the topology loop when the lease lapses (on) or is renewed (off): the placement actor
// then stops and refuses activations, or takes them again.
func (inc *incarnation) suspend(on bool) {
	inc.suspended.Store(on)
	inc.system.Root.Send(inc.placement, &suspendRequest{on: on})
}

// requestFence is called by the topology loop when this incarnation must end; the node does the work.
func (inc *incarnation) requestFence(reason string) {
	if inc.ended.Load() || !inc.serving.Load() {
		return
	}
	if inc.fenceReq != nil {
		inc.fenceReq(inc, reason)
	}
}

// peers returns the gossip addresses of the other live members and of recently departed ones (an isolated
// member has no live peer left), to rejoin through after a fence.
func (inc *incarnation) peers() []string {
	if inc.provider == nil || inc.provider.ml == nil {
		return nil
	}
	var out []string
	for _, n := range inc.provider.liveNodes() {
		if n.Name != inc.id {
			out = append(out, n.Address())
		}
	}
	inc.provider.failedMu.Lock()
	for _, f := range inc.provider.failed {
		if !slices.Contains(out, f.addr) {
			out = append(out, f.addr)
		}
	}
	inc.provider.failedMu.Unlock()
	return out
}

// stop ends the incarnation gracefully: refuse and passivate activations, leave the memberlist (others move
// the identities only once none is active here), then close the transports.
func (inc *incarnation) stop() {
	inc.endOnce.Do(func() {
		inc.ended.Store(true)
		inc.serving.Store(false)
		inc.drain()
		if inc.provider != nil && inc.provider.ml != nil {
			inc.provider.announceLeaving()
			if err := inc.provider.Shutdown(true); err != nil {
				inc.log.Warn("leave cluster", slog.Any("error", err))
			}
		} else if inc.transport != nil {
			_ = inc.transport.Shutdown()
		}
		inc.stopPlacement()
		inc.closeTransports()
		inc.log.Info("member stopped")
	})
}

// abandon ends the incarnation after a self-fence: its memberlist shuts down first, without the leave broadcast,
// then the activations stop (the fence suspended them already) and the transports close. The others have
// declared this member dead, or it is cut off; its memberlist still runs the suspicion timers it started while it
// heard nothing, and during a leave broadcast (up to LeaveTimeout) an expiring timer would tell the others that
// a healthy member is dead, and they would block that member for good (it would have to fence in turn).
func (inc *incarnation) abandon() {
	inc.endOnce.Do(func() {
		inc.ended.Store(true)
		inc.serving.Store(false)
		if inc.provider != nil && inc.provider.ml != nil {
			if err := inc.provider.Shutdown(false); err != nil {
				inc.log.Warn("shut memberlist down", slog.Any("error", err))
			}
		} else if inc.transport != nil {
			_ = inc.transport.Shutdown()
		}
		inc.drain()
		inc.stopPlacement()
		inc.closeTransports()
		inc.log.Info("member abandoned after fence")
	})
}

// drain stops the local activations, waiting at most DrainTimeout.
func (inc *incarnation) drain() {
	if inc.placement != nil {
		if _, err := inc.system.Root.RequestFuture(inc.placement, &drainRequest{}, inc.cfg.DrainTimeout).Result(); err != nil {
			inc.log.Warn("activations did not stop in time", slog.Duration("timeout", inc.cfg.DrainTimeout), slog.Any("error", err))
		}
	}
}

func (inc *incarnation) stopPlacement() {
	if inc.placement != nil {
		_ = inc.system.Root.StopFuture(inc.placement).Wait()
	}
}

// kill ends the incarnation abruptly, like a crash: no drain, no leave.
func (inc *incarnation) kill() {
	inc.endOnce.Do(func() {
		inc.ended.Store(true)
		inc.serving.Store(false)
		if inc.provider != nil && inc.provider.ml != nil {
			_ = inc.provider.Shutdown(false)
		} else if inc.transport != nil {
			_ = inc.transport.Shutdown()
		}
		inc.closeTransports()
		inc.log.Info("member killed")
	})
}

// closeTransports stops the gRPC server and closes every connection of the incarnation, then the actor system.
// protoactor's graceful remote shutdown is not used: it writes an unsynchronised flag that its stream readers
// read (a data race), and waits up to 10 s for streams that peers keep open.
func (inc *incarnation) closeTransports() {
	if inc.remoteStarted {
		inc.cluster.Remote.Shutdown(false)
	}
	inc.conns.closeAll()
	inc.system.Shutdown()
}

// self returns this member as memberlist sees it.
func (inc *incarnation) self() Member {
	if inc.provider != nil {
		if n, ok := inc.provider.localNode(); ok {
			m := memberOf(n, memberlist.StateAlive, inc.id)
			m.Activations = inc.counts.snapshot()
			return m
		}
	}
	return Member{ID: inc.id, Name: inc.id, RemoteAddr: inc.remoteAddr, Self: true, Status: StatusDead}
}
