package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Gossip keys (32 bytes each) for tests: all 'A' and all 'B'.
var (
	testGossipKeyA = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("A"), 32))
	testGossipKeyB = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("B"), 32))
)

func TestParseRunFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, defaultConfig()) {
				t.Fatalf("got %+v, want the defaults", c)
			}
		}},
		{"flags", []string{"--data-dir", "/d", "--http-addr", "127.0.0.1:1", "--cluster-addr=127.0.0.2:2",
			"--remote-addr", "127.0.0.3:3", "--join", "127.0.0.1:7946, 127.0.0.2:7946", "--advertise-addr", "10.0.0.1",
			"--cluster-profile", "local", "--join-timeout", "2s", "--log-level", "debug", "--log-format", "json",
			"--journal", "postgres://platter@db:5432/platter", "--certs-dir", "/certs"}, nil,
			func(t *testing.T, c Config) {
				want := defaultConfig()
				want.Journal, want.CertsDir = "postgres://platter@db:5432/platter", "/certs"
				want.DataDir, want.HTTPAddr, want.ClusterAddr, want.RemoteAddr = "/d", "127.0.0.1:1", "127.0.0.2:2", "127.0.0.3:3"
				want.Join = []string{"127.0.0.1:7946", "127.0.0.2:7946"}
				want.AdvertiseAddr, want.Profile, want.JoinTimeout = "10.0.0.1", "local", 2*time.Second
				want.LogLevel, want.LogFormat = slog.LevelDebug, "json"
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("got %+v\nwant %+v", c, want)
				}
			}},
		{"environment", nil, []string{"PLATTER_DATA_DIR", "/env", "PLATTER_JOIN", "127.0.0.9:1", "PLATTER_LOG_LEVEL", "warn",
			"PLATTER_JOIN_TIMEOUT", "5s", "PLATTER_JOURNAL", "postgresql://db/p"}, func(t *testing.T, c Config) {
			if c.DataDir != "/env" || len(c.Join) != 1 || c.Join[0] != "127.0.0.9:1" || c.LogLevel != slog.LevelWarn ||
				c.JoinTimeout != 5*time.Second || c.Journal != "postgresql://db/p" {
				t.Fatalf("got %+v", c)
			}
		}},
		{"workflow flags and environment", []string{"--accept-sla", "2s", "--dispatch-sla=3s", "--offer-ttl", "1500ms",
			"--opening-wave-size", "1", "--wave-size", "4", "--cancel-refund-share", "0", "--payment-retry-min", "10ms",
			"--payment-retry-max", "1s", "--payment-timeout", "2s", "--outbox-retry-min", "20ms"},
			[]string{"PLATTER_OUTBOX_RETRY_MAX", "2s", "PLATTER_DELIVER_TIMEOUT", "700ms", "PLATTER_REMINDER_SCAN_INTERVAL", "50ms",
				"PLATTER_ORDER_CALL_TIMEOUT", "900ms", "PLATTER_ACCEPT_SLA", "9s"},
			func(t *testing.T, c Config) {
				want := defaultWorkflow()
				want.AcceptSLA, want.DispatchSLA, want.OfferTTL = 2*time.Second, 3*time.Second, 1500*time.Millisecond
				want.OpeningWaveSize, want.WaveSize, want.CancelRefundShare = 1, 4, 0
				want.PaymentRetryMin, want.PaymentRetryMax, want.PaymentTimeout = 10*time.Millisecond, time.Second, 2*time.Second
				want.OutboxRetryMin, want.OutboxRetryMax, want.DeliverTimeout = 20*time.Millisecond, 2*time.Second, 700*time.Millisecond
				want.ReminderScanInterval, want.OrderCallTimeout = 50*time.Millisecond, 900*time.Millisecond
				if c.Workflow != want {
					t.Fatalf("workflow %+v\nwant     %+v", c.Workflow, want)
				}
				// The actors read a share of 0 as their default: the node passes "nothing" as a negative share.
				if got := c.actorsWorkflow().CancelRefundShare; got >= 0 {
					t.Fatalf("refund share passed to the actors %v, want negative (nothing refunded)", got)
				}
			}},
		{"workflow defaults are the actors'", nil, nil, func(t *testing.T, c Config) {
			w := c.Workflow
			if w.AcceptSLA != actors.DefaultAcceptSLA || w.DispatchSLA != actors.DefaultDispatchSLA || w.OfferTTL != actors.DefaultOfferTTL ||
				w.OpeningWaveSize != 0 || w.WaveSize != actors.DefaultWaveSize ||
				w.CancelRefundShare != actors.DefaultCancelRefundShare || w.PaymentTimeout != actors.DefaultPaymentTimeout {
				t.Fatalf("workflow defaults %+v", w)
			}
			if got := c.actorsWorkflow().CancelRefundShare; got != actors.DefaultCancelRefundShare {
				t.Fatalf("default refund share passed to the actors %v", got)
			}
			if got := c.actorsWorkflow().OpeningWaveSize; got != actors.DefaultWaveSize {
				t.Fatalf("default opening wave passed to the actors %d, want %d", got, actors.DefaultWaveSize)
			}
		}},
		{"the opening wave follows --wave-size unless given", []string{"--wave-size", "5"}, nil, func(t *testing.T, c Config) {
			if c.Workflow.OpeningWaveSize != 0 {
				t.Fatalf("--opening-wave-size %d, want 0 (same as --wave-size)", c.Workflow.OpeningWaveSize)
			}
			if w := c.actorsWorkflow(); w.OpeningWaveSize != 5 || w.WaveSize != 5 {
				t.Fatalf("waves passed to the actors: opening %d, later %d; want 5 and 5", w.OpeningWaveSize, w.WaveSize)
			}
		}},
		{"an opening wave given stays", nil, []string{"PLATTER_WAVE_SIZE", "5", "PLATTER_OPENING_WAVE_SIZE", "1"}, func(t *testing.T, c Config) {
			if w := c.actorsWorkflow(); w.OpeningWaveSize != 1 || w.WaveSize != 5 {
				t.Fatalf("waves passed to the actors: opening %d, later %d; want 1 and 5", w.OpeningWaveSize, w.WaveSize)
			}
		}},
		{"cluster links off loopback with --certs-dir", []string{"--cluster-addr", "0.0.0.0:7946", "--remote-addr", "10.1.2.3:8090",
			"--join", "node1.example:7946", "--journal", "postgres://db/p", "--certs-dir", "/certs"}, nil, func(t *testing.T, c Config) {
			if c.CertsDir != "/certs" || c.Insecure {
				t.Fatalf("got %+v", c)
			}
		}},
		{"cluster links and the debug listener off loopback with --insecure", []string{"--cluster-addr", "0.0.0.0:7946",
			"--advertise-addr", "10.0.0.1", "--remote-advertise-addr", "proxy.example:9000", "--debug-addr", ":6060", "--insecure"}, nil,
			func(t *testing.T, c Config) {
				if !c.Insecure || c.DebugAddr != ":6060" {
					t.Fatalf("got %+v", c)
				}
			}},
		{"loopback cluster without certs", []string{"--cluster-addr", "127.0.0.2:7946", "--remote-addr", "[::1]:8090",
			"--join", "localhost:7946,127.0.0.3:7946", "--journal", "postgres://db/p", "--advertise-addr", "127.0.0.2",
			"--remote-advertise-addr", "127.0.0.9:9000", "--debug-addr", "localhost:6060"}, nil, func(t *testing.T, c Config) {
			if c.CertsDir != "" || c.Insecure {
				t.Fatalf("got %+v", c)
			}
		}},
		{"a gossip keyring", []string{"--gossip-key", testGossipKeyB + ", " + testGossipKeyA, "--cluster-addr", "0.0.0.0:7946",
			"--certs-dir", "/certs"}, nil, func(t *testing.T, c Config) {
			keys, err := decodeGossipKeys(c.GossipKey)
			if err != nil || len(keys) != 2 || keys[0][0] != 'B' || keys[1][0] != 'A' {
				t.Fatalf("keyring %q: %v", keys, err)
			}
		}},
		{"flag wins over environment", []string{"--data-dir", "/flag"}, []string{"PLATTER_DATA_DIR", "/env", "PLATTER_HTTP_ADDR", "127.0.0.1:9"},
			func(t *testing.T, c Config) {
				if c.DataDir != "/flag" || c.HTTPAddr != "127.0.0.1:9" {
					t.Fatalf("got %+v", c)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRunFlags(tt.args, envOf(tt.env...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseRunFlagsErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--http-addr", "8080"}, nil, `invalid --http-addr "8080": want host:port`},
		{[]string{"--cluster-addr", "127.0.0.1:http"}, nil, `invalid --cluster-addr "127.0.0.1:http": bad port "http"`},
		{[]string{"--remote-addr", "127.0.0.1:70000"}, nil, `invalid --remote-addr "127.0.0.1:70000": bad port "70000"`},
		{[]string{"--http-addr", ":8080"}, nil, `invalid --http-addr ":8080": missing host`},
		{[]string{"--join", "127.0.0.1", "--journal", "postgres://db/p"}, nil, `invalid --join seed "127.0.0.1": want host:port`},
		{[]string{"--join", "127.0.0.1:7946"}, nil, `--join needs a shared journal: with the default bbolt journal`},
		{[]string{"--join", "127.0.0.1:7946", "--journal", "bbolt"}, nil, `give every node of the cluster --journal postgres://`},
		{[]string{"--journal", "mysql://db"}, nil, `invalid --journal: want "bbolt" or a postgres://`},
		{[]string{"--journal", "postgres://u:secret@db:5432/%zz"}, nil, `invalid --journal: not a URL`},
		{[]string{"--advertise-addr", "not an ip"}, nil, `invalid --advertise-addr "not an ip"`},
		{[]string{"--cluster-profile", "wan"}, nil, `invalid --cluster-profile "wan": want lan or local`},
		{[]string{"--log-format", "xml"}, nil, `invalid --log-format "xml"`},
		{[]string{"--log-level", "loud"}, nil, `invalid value "loud" for flag -log-level`},
		{[]string{"--join-timeout", "0s"}, nil, `invalid --join-timeout 0s`},
		{[]string{"--nope"}, nil, `flag provided but not defined: -nope`},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{nil, []string{"PLATTER_JOIN_TIMEOUT", "soon"}, `invalid PLATTER_JOIN_TIMEOUT "soon"`},
		{nil, []string{"PLATTER_HTTP_ADDR", "nowhere"}, `invalid --http-addr "nowhere"`},
		{[]string{"--accept-sla", "0s"}, nil, `invalid --accept-sla 0s: must be positive`},
		{[]string{"--dispatch-sla", "-1m"}, nil, `invalid --dispatch-sla -1m0s: must be positive`},
		{[]string{"--offer-ttl", "soon"}, nil, `invalid value "soon" for flag -offer-ttl`},
		{nil, []string{"PLATTER_OFFER_TTL", "soon"}, `invalid PLATTER_OFFER_TTL "soon"`},
		{[]string{"--opening-wave-size", "-1"}, nil, `invalid --opening-wave-size -1: must be 0 (same as --wave-size) or more`},
		{nil, []string{"PLATTER_WAVE_SIZE", "0"}, `invalid --wave-size 0: must be at least 1`},
		{[]string{"--cancel-refund-share", "1.5"}, nil, `invalid --cancel-refund-share 1.5: want a share from 0 to 1`},
		{[]string{"--cancel-refund-share", "NaN"}, nil, `invalid --cancel-refund-share NaN`},
		{[]string{"--payment-retry-min", "2s", "--payment-retry-max", "1s"}, nil, `invalid --payment-retry-max 1s: below --payment-retry-min 2s`},
		{[]string{"--outbox-retry-max", "1ms"}, nil, `invalid --outbox-retry-max 1ms: below --outbox-retry-min 200ms`},
		{nil, []string{"PLATTER_PAYMENT_TIMEOUT", "0s"}, `invalid --payment-timeout 0s: must be positive`},
		{[]string{"--deliver-timeout", "0s"}, nil, `invalid --deliver-timeout 0s`},
		{[]string{"--reminder-scan-interval", "0s"}, nil, `invalid --reminder-scan-interval 0s`},
		{[]string{"--order-call-timeout", "0s"}, nil, `invalid --order-call-timeout 0s`},
		{[]string{"--cluster-addr", "0.0.0.0:7946"}, nil, `--cluster-addr 0.0.0.0:7946 is off loopback and the cluster links would be unauthenticated and unencrypted: give --certs-dir`},
		{[]string{"--remote-addr", "10.1.2.3:8090"}, nil, `--remote-addr 10.1.2.3:8090 is off loopback`},
		{[]string{"--join", "127.0.0.1:7946,node1.example:7946", "--journal", "postgres://db/p"}, nil, `--join seed node1.example:7946 is off loopback`},
		{[]string{"--advertise-addr", "10.0.0.1"}, nil, `--advertise-addr 10.0.0.1 is off loopback`},
		{[]string{"--advertise-addr", "10.0.0.1:7946", "--gossip-key", testGossipKeyA}, nil, `a gossip key (gossip.key in it, or --gossip-key), or --insecure`},
		{nil, []string{"PLATTER_REMOTE_ADVERTISE_ADDR", "proxy.example:9000"}, `--remote-advertise-addr proxy.example:9000 is off loopback`},
		{[]string{"--gossip-key", testGossipKeyA + ",AAAA"}, nil, `invalid --gossip-key: key 2: 3 bytes, want 16, 24 or 32`},
		{[]string{"--gossip-key", " , "}, nil, `invalid --gossip-key: no key`},
		{[]string{"--debug-addr", "0.0.0.0:6060"}, nil, `--debug-addr 0.0.0.0:6060 is off loopback: the profiles have no authentication`},
		{[]string{"--debug-addr", ":6060", "--certs-dir", "/certs"}, nil, `bind it to 127.0.0.1, or give --insecure`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := parseRunFlags(tt.args, envOf(tt.env...), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error shows the journal's password: %q", err)
			}
		})
	}
}

func TestParseFlagsCommands(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		command string
		out     string
		err     error
	}{
		{[]string{"version"}, "version", "platter ", nil},
		{[]string{"help"}, "help", "Usage: platter <command>", nil},
		{[]string{"run", "-h"}, "run", "PLATTER_DATA_DIR", errUsage},
	} {
		var out bytes.Buffer
		m := &Main{Stdout: &out, Getenv: envOf()}
		err := m.ParseFlags(tt.args)
		if !errors.Is(err, tt.err) || m.Command != tt.command || !strings.Contains(out.String(), tt.out) {
			t.Fatalf("%v: command %q err %v output %q", tt.args, m.Command, err, out.String())
		}
	}
	m := &Main{Stdout: &bytes.Buffer{}, Getenv: envOf()}
	if err := m.ParseFlags([]string{"serve"}); err == nil || !strings.Contains(err.Error(), `unknown command "serve"`) {
		t.Fatalf("unknown command: %v", err)
	}
}
