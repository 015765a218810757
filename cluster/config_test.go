package cluster

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestProfilesValidate(t *testing.T) {
	for name, cfg := range map[string]Config{"lan": DefaultLANConfig(), "local": DefaultLocalConfig()} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s profile: %v", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"no cluster name", func(c *Config) { c.ClusterName = "" }, "cluster: ClusterName is empty"},
		{"bind without port", func(c *Config) { c.BindAddr = "x" }, `cluster: --cluster-addr "x": missing port in address`},
		{"bind bad port", func(c *Config) { c.BindAddr = "127.0.0.1:http" }, `cluster: --cluster-addr "127.0.0.1:http": port "http" is not a number`},
		{"bind port too big", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, `port "70000" is not a number in 0-65535`},
		{"remote without port", func(c *Config) { c.RemoteAddr = "localhost" }, `cluster: --remote-addr "localhost": missing port in address`},
		{"advertise bad", func(c *Config) { c.AdvertiseAddr = "a:b:c" }, `cluster: --advertise-addr "a:b:c": too many colons in address`},
		{"seed without port", func(c *Config) { c.Seeds = []string{"10.0.0.1"} }, `cluster: --join "10.0.0.1": missing port in address`},
		{"seed port 0", func(c *Config) { c.Seeds = []string{"10.0.0.1:0"} }, `cluster: --join "10.0.0.1:0": seed needs a host and a non-zero port`},
		{"seed no host", func(c *Config) { c.Seeds = []string{":7946"} }, `seed needs a host`},
		{"key length", func(c *Config) { c.SecretKey = []byte("short") }, "cluster: SecretKey: 5 bytes, want 16, 24 or 32"},
		{"secondary keys without a primary", func(c *Config) { c.SecondaryKeys = [][]byte{make([]byte, 32)} },
			"cluster: SecondaryKeys need a SecretKey (the primary key)"},
		{"secondary key length", func(c *Config) {
			c.SecretKey, c.SecondaryKeys = make([]byte, 32), [][]byte{make([]byte, 16), []byte("short")}
		},
			"cluster: SecondaryKeys[1]: 5 bytes, want 16, 24 or 32"},
		{"zero timing", func(c *Config) { c.RequestTimeout = 0 }, "cluster: RequestTimeout is 0s, want a positive duration"},
		{"negative settle", func(c *Config) { c.TopologySettle = -time.Second }, "cluster: TopologySettle is -1s"},
		{"probe timeout", func(c *Config) { c.ProbeTimeout = 2 * c.ProbeInterval }, "ProbeTimeout 2s must be shorter than ProbeInterval 1s"},
		{"backoff order", func(c *Config) { c.RetryBackoffMin = 2 * c.RetryBackoffMax }, "RetryBackoffMin 2s is above RetryBackoffMax 1s"},
		{"join order", func(c *Config) { c.JoinRetryMin = time.Minute }, "JoinRetryMin 1m0s is above JoinRetryMax 5s"},
		{"fence grace", func(c *Config) { c.FenceGrace = c.TopologyRefreshInterval }, "FenceGrace 1s must be longer than TopologyRefreshInterval 1s"},
		{"zero count", func(c *Config) { c.GossipNodes = 0 }, "cluster: GossipNodes is 0, want at least 1"},
		{"lease too long", func(c *Config) { c.LeaseTimeout = 5 * time.Second },
			"LeaseTimeout 5s plus TopologyRefreshInterval 1s must be shorter than SuspicionMult × ProbeInterval + TopologySettle (6s)"},
		{"lease too short", func(c *Config) { c.LeaseTimeout = c.ProbeInterval }, "LeaseTimeout 1s must be longer than ProbeInterval 1s"},
		{"zero protoactor gossip", func(c *Config) { c.ProtoactorHeartbeatExpiration = 0 }, "cluster: ProtoactorHeartbeatExpiration is 0s"},
		{"zero admission read", func(c *Config) { c.AdmissionReadTimeout = 0 }, "cluster: AdmissionReadTimeout is 0s"},
		{"attribute name", func(c *Config) { c.Attributes = map[string]string{"a=b": "c"} }, `cluster: attribute name "a=b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLANConfig()
			tc.set(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if _, err := NewNode(cfg, nil); err == nil {
				t.Fatal("NewNode accepted an invalid config")
			}
		})
	}
}

// TestProtoactorTimingsPassed: protoactor's cluster configuration gets the gossip timings of Config, not its own
// defaults (300 ms, 500 ms, 20 s).
func TestProtoactorTimingsPassed(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.ProtoactorGossipInterval = 123 * time.Millisecond
	cfg.ProtoactorGossipRequestTimeout = 234 * time.Millisecond
	cfg.ProtoactorHeartbeatExpiration = 3456 * time.Millisecond
	n, err := NewNode(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Stop(ctx)
	pc := n.Cluster().Config
	if pc.GossipInterval != cfg.ProtoactorGossipInterval || pc.GossipRequestTimeout != cfg.ProtoactorGossipRequestTimeout ||
		pc.HeartbeatExpiration != cfg.ProtoactorHeartbeatExpiration {
		t.Errorf("protoactor config: gossip %v, request timeout %v, heartbeat expiration %v; want %v, %v, %v",
			pc.GossipInterval, pc.GossipRequestTimeout, pc.HeartbeatExpiration,
			cfg.ProtoactorGossipInterval, cfg.ProtoactorGossipRequestTimeout, cfg.ProtoactorHeartbeatExpiration)
	}
}
