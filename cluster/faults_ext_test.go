package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
)

// TestPauseWithRemoteServerOptions: extra gRPC server options keep the remote server's connections tracked, so a
// paused member reads nothing: a request sent to it while paused activates nothing there.
func TestPauseWithRemoteServerOptions(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.WithConfig(func(cfg *cluster.Config) {
		cfg.RemoteServerOptions = []grpc.ServerOption{grpc.MaxRecvMsgSize(8 << 20)}
	}))
	reg := c.Registry()
	// Connections between every pair exist before the pause.
	for k := range 30 {
		if _, err := request(c, 0, fmt.Sprintf("warm-%02d", k)); err != nil {
			t.Fatalf("request warm-%02d: %v", k, err)
		}
	}
	const p = 2
	self := c.Node(p).Self()
	var remotes []string
	for _, i := range c.Up() {
		remotes = append(remotes, c.Node(i).Self().RemoteAddr)
	}
	fresh := ""
	for k := 0; fresh == ""; k++ {
		if id := fmt.Sprintf("fresh-%d", k); cluster.OwnerAmong(id, remotes) == self.RemoteAddr {
			fresh = id
		}
	}

	c.Pause(p)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Request(ctx, 0, fresh)
		done <- err
	}()
	for {
		if slices.Contains(reg.Hosts(fresh), self.ID) {
			t.Fatalf("%s was activated on the paused member: its server read the request", fresh)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s answered while its owner was paused", fresh)
			}
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
