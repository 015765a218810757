package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestFaultsScope: Faults from NewFaults cut the remote's connections while paused (dials fail at once); Faults
// from NewGossipFaults leave them alone, so that a proxy in front of the remote port is what cuts it (the node's
// system tests count what their proxies refused).
func TestFaultsScope(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }() // echo
		}
	}()
	tests := []struct {
		name     string
		faults   *Faults
		wantDial error
	}{
		{"remote and gossip", NewFaults(), errPaused},
		{"gossip only", NewGossipFaults(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := newConnSet(tt.faults)
			defer set.closeAll()
			tt.faults.Pause()
			if !tt.faults.Paused() {
				t.Fatal("not paused after Pause")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := set.dial(ctx, ln.Addr().String())
			if !errors.Is(err, tt.wantDial) {
				t.Fatalf("dial while paused: %v, want %v", err, tt.wantDial)
			}
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatalf("write while gossip is paused: %v", err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
				t.Fatalf("read while gossip is paused: %q %v", b, err)
			}
		})
	}
}
