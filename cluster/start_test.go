package cluster_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// unreachableSeed returns a loopback address where nothing listens (a port we bound and released).
func unreachableSeed(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestSeedsUnreachable: a node whose seeds cannot be reached is not ready and refuses identities while it tries,
// and Start fails with a clear error when its context ends.
func TestSeedsUnreachable(t *testing.T) {
	cfg := cluster.DefaultLocalConfig()
	cfg.Logger = quietLogger()
	seed := unreachableSeed(t)
	cfg.Seeds = []string{seed}
	node, err := cluster.NewNode(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- node.Start(ctx) }()

	// While joining: not ready, identities refused.
	if err := clustertest.Poll(func() bool { return len(node.Members()) > 0 }, 2*time.Second); err != nil {
		t.Fatalf("node did not bind while joining: %v", err)
	}
	if node.Ready() {
		t.Fatal("node with unreachable seeds is ready")
	}
	if _, err := node.Request(context.Background(), "x", clustertest.EchoKind, wrapperspb.String("ping")); !errors.Is(err, cluster.ErrNotReady) {
		t.Fatalf("request while joining: got %v, want ErrNotReady", err)
	}

	err = <-started
	if err == nil || !strings.Contains(err.Error(), "cluster: join: no seed reachable") || !strings.Contains(err.Error(), seed) {
		t.Fatalf("Start error = %v, want a join error naming %s", err, seed)
	}
	if node.Ready() {
		t.Fatal("node is ready after Start failed")
	}
	if _, err := node.Request(context.Background(), "x", clustertest.EchoKind, wrapperspb.String("ping")); !errors.Is(err, cluster.ErrNotReady) {
		t.Fatalf("request after failed start: got %v, want ErrNotReady", err)
	}
}

// TestStartPortInUse: Start names the address that cannot be bound.
func TestStartPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name string
		set  func(*cluster.Config)
		want string
	}{
		{"remote", func(c *cluster.Config) { c.RemoteAddr = l.Addr().String() }, `cluster: bind remote address "` + l.Addr().String() + `"`},
		{"gossip", func(c *cluster.Config) { c.BindAddr = l.Addr().String() }, `cluster: bind gossip address "` + l.Addr().String() + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cluster.DefaultLocalConfig()
			cfg.Logger = quietLogger()
			tc.set(&cfg)
			node, err := cluster.NewNode(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = node.Start(ctx)
			if err == nil {
				_ = node.Stop(ctx)
				t.Fatal("Start succeeded on a port in use")
			}
			if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("Start error = %q, want it to contain %q and wrap EADDRINUSE", err, tc.want)
			}
		})
	}
}
