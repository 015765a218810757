package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type GrainCallConfig struct {
	RetryCount  int
	Timeout     time.Duration
	RetryAction func(n int) int
	Context     actor.SenderContext
}

type GrainCallOption func(config *GrainCallConfig)

// DefaultGrainCallConfig returns fresh call options for cluster. (Platter patch: it used to cache the first
// cluster's options in an unsynchronised global, racing and leaking one cluster's root context into others.)
func DefaultGrainCallConfig(cluster *Cluster) *GrainCallConfig {
	return NewGrainCallOptions(cluster)
}

func NewGrainCallOptions(cluster *Cluster) *GrainCallConfig {
	return &GrainCallConfig{
		// TODO: set default in config
		RetryCount: 3,
		Context:    cluster.ActorSystem.Root,
		Timeout:    cluster.Config.RequestTimeoutTime,
		// Platter patch: the back-off was i*i*50 nanoseconds, so the 3 retries ran out within microseconds (e.g.
		// while a stopped activation was still registered); i*i*50 ms (50, 200, 450 ms) lets them outlast that.
		RetryAction: func(i int) int {
			i++
			time.Sleep(time.Duration(i*i) * 50 * time.Millisecond)
			return i
		},
	}
}

func WithTimeout(timeout time.Duration) GrainCallOption {
	return func(config *GrainCallConfig) {
		config.Timeout = timeout
	}
}

func WithRetryCount(count int) GrainCallOption {
	return func(config *GrainCallConfig) {
		config.RetryCount = count
	}
}

func WithRetryAction(act func(i int) int) GrainCallOption {
	return func(config *GrainCallConfig) {
		config.RetryAction = act
	}
}

func WithContext(ctx actor.SenderContext) GrainCallOption {
	return func(config *GrainCallConfig) {
		config.Context = ctx
	}
}

type ClusterInit struct {
	Identity *ClusterIdentity
	Cluster  *Cluster
}
