package main

// Tests of the walking skeleton's node wiring (issue 2): the log format chooser, --advertise-addr reaching the
// member metadata, and the graceful stop on SIGINT and SIGTERM.

import (
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogFormatAuto: --log-format auto writes text to a terminal and JSON otherwise; text and json are forced.
func TestLogFormatAuto(t *testing.T) {
	for _, tc := range []struct {
		format string
		tty    bool
		want   string // "text" or "json"
	}{
		{"auto", true, "text"},
		{"auto", false, "json"},
		{"text", false, "text"},
		{"json", true, "json"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			out := &syncBuffer{}
			var asked io.Writer
			m := &Main{Stdout: out, Logs: out, Getenv: envOf(),
				IsTTY: func(w io.Writer) bool { asked = w; return tc.tty }}
			if err := m.ParseFlags([]string{"run", "--log-format", tc.format}); err != nil {
				t.Fatal(err)
			}
			m.newLogger().Info("hello", "k", 1)
			line := out.String()
			got := "text"
			if strings.HasPrefix(line, "{") {
				got = "json"
			}
			if got != tc.want || !strings.Contains(line, "hello") {
				t.Fatalf("--log-format %s with a terminal=%v wrote %q, want %s", tc.format, tc.tty, line, tc.want)
			}
			if tc.format == "auto" && asked != out {
				t.Fatalf("auto asked IsTTY about %v, not the log writer", asked)
			}
		})
	}
	// Production's chooser: a pipe is not a terminal, so a node's logs into a pipe or file are JSON.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Fatal("isTerminal says a pipe is a terminal")
	}
	if isTerminal(&syncBuffer{}) {
		t.Fatal("isTerminal says a buffer is a terminal")
	}
}

// TestAdvertiseAddr: a node bound to 127.0.0.2 with --advertise-addr 127.0.0.3 announces 127.0.0.3 as its gossip
// address (memberlist) and its remote address (member metadata), on the ports it bound.
func TestAdvertiseAddr(t *testing.T) {
	m, _ := newTestMain(t, t.TempDir(), "--cluster-addr", "127.0.0.2:0", "--remote-addr", "127.0.0.2:0",
		"--advertise-addr", "127.0.0.3")
	runMain(t, m)
	members := m.node.Members()
	if len(members) != 1 || !members[0].Self {
		t.Fatalf("members %+v, want this node alone", members)
	}
	self := members[0]
	for what, addr := range map[string]string{"gossip": self.GossipAddr, "remote": self.RemoteAddr} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.3" || port == "0" {
			t.Errorf("%s address %q, want 127.0.0.3 with the bound port", what, addr)
		}
	}
}

// TestSystemStopSignals: SIGINT and SIGTERM each stop the production binary gracefully, exit 0, and its log shows
// the steps in order: drained, http edge stopped, left the cluster, journal closed.
func TestSystemStopSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			n := newBoltSysNode(t, "n1", "127.0.0.1") // no PostgreSQL needed: the signals run everywhere
			n.start(t)
			waitFor(t, 30*time.Second, 50*time.Millisecond, "the node to be ready", func() bool {
				status, _, err := tryCall("GET", n.url()+"/readyz", "")
				return err == nil && status == 200
			})
			if err := n.proc.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := n.proc.wait(20 * time.Second); code != 0 {
				t.Fatalf("exit code %d after %v, want 0", code, sig)
			}
			out := n.proc.output()
			at := 0
			for _, msg := range []string{"drained", "http edge stopped", "left the cluster", "journal closed"} {
				i := strings.Index(out[at:], `"msg":"`+msg+`"`)
				if i < 0 {
					t.Fatalf("after %v the log has no %q after the previous step", sig, msg)
				}
				at += i
			}
			if lines := n.proc.stderrLines(); len(lines) != 0 {
				t.Fatalf("stderr after a graceful stop: %q", lines)
			}
		})
	}
}
