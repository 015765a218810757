package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/platterhq/platter/cluster/clustertest"
)

func TestThreeMembers(t *testing.T) {
	c := clustertest.New(t, 3)
	reg := c.Registry()
	const id = "order-1"
	var host string
	c.WaitFor(func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m, err := c.Request(ctx, 0, id)
		if err != nil {
			t.Logf("request: %v", err)
			return false
		}
		host = m
		return true
	}, 10*time.Second, "first answer")
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		m, err := c.Request(ctx, i, id)
		cancel()
		if err != nil {
			t.Fatalf("request via member %d: %v", i, err)
		}
		if m != host {
			t.Fatalf("member %d reached %s, member 0 reached %s", i, m, host)
		}
	}
	if n := reg.Live(id); n != 1 {
		t.Fatalf("%s has %d live activations, want 1", id, n)
	}
	t.Logf("host %s", host)
}
