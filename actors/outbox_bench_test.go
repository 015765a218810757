package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// methodIndex runs on every call between grains (each outbox delivery, each Dasher → Order call).
func BenchmarkMethodIndex(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := methodIndex(KindArea, "Deliver"); err != nil {
			b.Fatal(err)
		}
	}
}

// The PID cache is looked up on every call through the cluster (protoactor patch 7).
func BenchmarkPidCacheGet(b *testing.B) {
	c := pcluster.NewPidCache()
	c.Set("d_0b6f3c9e-3f1a-4c4e-9d55-6a0e1c2b7f10", KindDasher, actor.NewPID("127.0.0.1:1", "partition-activator/d_0b6f3c9e-3f1a-4c4e-9d55-6a0e1c2b7f10"))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get("d_0b6f3c9e-3f1a-4c4e-9d55-6a0e1c2b7f10", KindDasher); !ok {
			b.Fatal("cached PID not found")
		}
	}
}
