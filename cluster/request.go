package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// resolve returns the PID of the activation of ci: from the PID cache, or by asking the owner's placement actor
// (in this member's view) to activate it, waiting at most timeout. Errors are all retryable: ErrNoMember,
// errActivationRefused, or the future's error (timeout, dead letter).
func (inc *incarnation) resolve(ci *pcluster.ClusterIdentity, timeout time.Duration) (*actor.PID, error) {
	v := inc.view.Load()
	if v == nil {
		return nil, ErrNotReady
	}
	owner := v.owner(ci.Kind, ci.Identity)
	// A cached PID is used only while its member owns the identity in the current view: when the view moves the
	// identity (a member joined, drains or left), the old activation is passivated, and calls to it would be
	// dead letters (a caller that cannot retry, such as a feed poll's single future, would fail).
	if pid, ok := inc.cluster.PidCache.Get(ci.Identity, ci.Kind); ok {
		if pid.Address == owner {
			return pid, nil
		}
		inc.cluster.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
	}
	if owner == "" {
		return nil, ErrNoMember
	}
	req := &pcluster.ActivationRequest{ClusterIdentity: ci, TopologyHash: v.hash}
	res, err := inc.system.Root.RequestFuture(actor.NewPID(owner, placementName), req, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("activate on %s: %w", owner, err)
	}
	resp, ok := res.(*pcluster.ActivationResponse)
	if !ok || resp.Failed || resp.Pid == nil {
		return nil, fmt.Errorf("activate on %s: %w", owner, errActivationRefused)
	}
	inc.cluster.PidCache.Set(ci.Identity, ci.Kind, resp.Pid)
	return resp.Pid, nil
}

// request sends msg to the activation of identity/kind and returns its reply. Each attempt resolves the
// activation and calls it, bounded by AttemptTimeout and the deadline; a failed attempt (no owner yet, refused
// by a member that does not own the identity, dead letter from a passivated activation, timeout of a dead
// member) is retried after an exponential back-off with jitter until ctx ends. The reply is whatever the actor
// responded (generated grains answer a *pcluster.GrainErrorResponse for their errors).
func (inc *incarnation) request(ctx context.Context, sender actor.SenderContext, identity, kind string, msg any) (any, error) {
	if identity == "" || kind == "" {
		return nil, fmt.Errorf("cluster: request %s/%s: empty identity or kind", kind, identity)
	}
	ci := pcluster.NewClusterIdentity(identity, kind)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if !inc.serving.Load() {
			return nil, ErrNotReady
		}
		per := inc.cfg.AttemptTimeout
		if dl, ok := ctx.Deadline(); ok {
			per = min(per, time.Until(dl))
		}
		if per <= 0 || ctx.Err() != nil {
			break
		}
		pid, err := inc.resolve(ci, min(per, inc.cfg.ActivationTimeout))
		if err == nil {
			var res any
			res, err = sender.RequestFuture(pid, msg, per).Result()
			if err == nil {
				return res, nil
			}
			inc.cluster.PidCache.RemoveByValue(identity, kind, pid)
			err = fmt.Errorf("call %s: %w", pid, err)
		}
		if errors.Is(err, ErrNotReady) {
			return nil, ErrNotReady
		}
		lastErr = err
		if inc.retry.wait(ctx, attempt) != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no attempt made")
	}
	cause := ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return nil, fmt.Errorf("cluster: request %s/%s: %w (last attempt: %w)", kind, identity, cause, lastErr)
}

// clusterContext is the protoactor cluster Context of an incarnation (installed with
// pcluster.WithClusterContextProducer), so generated grain clients get owner-checked lookups and real back-off.
// The deadline is the call's cluster.WithTimeout, else Config.RequestTimeout; WithRetryCount and
// WithRetryAction are ignored (retries last until the deadline).
type clusterContext struct {
	inc *incarnation
}

var _ pcluster.Context = (*clusterContext)(nil)

func (cc *clusterContext) callConfig(opts []pcluster.GrainCallOption) *pcluster.GrainCallConfig {
	cfg := &pcluster.GrainCallConfig{Timeout: cc.inc.cfg.RequestTimeout, Context: cc.inc.system.Root}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = cc.inc.cfg.RequestTimeout
	}
	if cfg.Context == nil {
		cfg.Context = cc.inc.system.Root
	}
	return cfg
}

func (cc *clusterContext) Request(identity, kind string, msg any, opts ...pcluster.GrainCallOption) (any, error) {
	cfg := cc.callConfig(opts)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	return cc.inc.request(ctx, cfg.Context, identity, kind, msg)
}

// RequestFuture resolves the activation (retrying with back-off like Request) and returns the future of one call
// to it. The deadline covers both: each resolution attempt is bounded by the time left, and the future gets only
// what resolution left of it, so a call never outlasts its deadline (it took up to twice as long when the future
// got a fresh full timeout).
func (cc *clusterContext) RequestFuture(identity, kind string, msg any, opts ...pcluster.GrainCallOption) (*actor.Future, error) {
	cfg := cc.callConfig(opts)
	deadline := time.Now().Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ci := pcluster.NewClusterIdentity(identity, kind)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if !cc.inc.serving.Load() {
			return nil, ErrNotReady
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pid, err := cc.inc.resolve(ci, min(left, cc.inc.cfg.ActivationTimeout))
		if err == nil {
			// A future with a timeout of zero or less would never time out: at the deadline, fail instead.
			if left = time.Until(deadline); left > 0 {
				return cfg.Context.RequestFuture(pid, msg, left), nil
			}
			err = fmt.Errorf("resolved %s at the deadline", pid)
		}
		lastErr = err
		if cc.inc.retry.wait(ctx, attempt) != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no attempt made")
	}
	return nil, fmt.Errorf("cluster: request %s/%s: %w (last attempt: %w)", kind, identity, context.DeadlineExceeded, lastErr)
}

// identityLookup is the protoactor IdentityLookup of an incarnation. Everything protoactor needs from it is a
// single owner-checked resolution; the state lives in the placement actor and the incarnation.
type identityLookup struct {
	inc *incarnation
}

var _ pcluster.IdentityLookup = (*identityLookup)(nil)

// Get makes one owner-checked resolution attempt (bounded by ActivationTimeout); nil on failure, as protoactor
// expects.
func (l *identityLookup) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	pid, err := l.inc.resolve(ci, l.inc.cfg.ActivationTimeout)
	if err != nil {
		return nil
	}
	return pid
}

func (l *identityLookup) RemovePid(ci *pcluster.ClusterIdentity, pid *actor.PID) {
	l.inc.cluster.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
}

// Setup and Shutdown are no-ops: the incarnation starts the placement actor before the provider and stops it
// after draining.
func (l *identityLookup) Setup(*pcluster.Cluster, []string, bool) {}

func (l *identityLookup) Shutdown() {}
