package main

import (
	"bytes"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func certCmd(t *testing.T, args ...string) {
	t.Helper()
	m := &Main{Stdout: io.Discard, Logs: io.Discard, Getenv: envOf()}
	if err := m.ParseFlags(append([]string{"cert"}, args...)); err != nil {
		t.Fatalf("platter cert %v: %v", args, err)
	}
}

// nodeCerts makes a certs dir for one node: the CA certificate and gossip key of caDir, and a node certificate
// for hosts signed by caDir's CA.
func nodeCerts(t *testing.T, caDir string, hosts string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{caCertFile, gossipKeyFile} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certCmd(t, "create-node", "--certs-dir", dir, "--ca-key", filepath.Join(caDir, caKeyFile), "--host", hosts)
	return dir
}

func TestCertCommands(t *testing.T) {
	ca := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", ca)
	for f, mode := range map[string]os.FileMode{caCertFile: 0o644, caKeyFile: 0o600, gossipKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(ca, f))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", f, err, fi.Mode().Perm(), mode)
		}
	}
	m := &Main{Stdout: io.Discard, Logs: io.Discard, Getenv: envOf()}
	if err := m.ParseFlags([]string{"cert", "create-ca", "--certs-dir", ca}); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second create-ca: %v, want a refusal to overwrite", err)
	}
	if err := m.ParseFlags([]string{"cert", "create-node", "--certs-dir", ca}); err == nil || !strings.Contains(err.Error(), "--host is required") {
		t.Fatalf("create-node without hosts: %v", err)
	}

	dir := nodeCerts(t, ca, "127.0.0.2,node2.example")
	leaf, err := pemCert(filepath.Join(dir, nodeCertFile))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := pemCert(filepath.Join(ca, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, host := range []string{"127.0.0.2", "node2.example"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Fatalf("node certificate for %s, usage %v: %v", host, usage, err)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.3"}); err == nil {
		t.Fatal("node certificate valid for a host it was not made for")
	}
	sec, err := loadClusterSecurity(dir, "")
	if err != nil || sec.cert == nil || len(sec.gossipKeys) != 1 || len(sec.gossipKeys[0]) != 32 {
		t.Fatalf("loadClusterSecurity: %+v, %v", sec, err)
	}
	// A node certificate of another CA does not load against this ca.crt.
	other := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", other)
	mixed := nodeCerts(t, other, "127.0.0.1")
	b, _ := os.ReadFile(filepath.Join(ca, caCertFile))
	os.WriteFile(filepath.Join(mixed, caCertFile), b, 0o644)
	if _, err := loadClusterSecurity(mixed, ""); err == nil || !strings.Contains(err.Error(), "not a client certificate of ca.crt") {
		t.Fatalf("mixed certs dir: %v", err)
	}
}

// secureNode is a system node with a certs dir.
func secureNode(t *testing.T, name, ip, join, certsDir string, extra ...string) *sysNode {
	n := newSysNode(t, name, ip, join)
	n.extra = append([]string{"--certs-dir", certsDir}, extra...)
	return n
}

// TestSystemClusterSecurity: nodes with certificates of the cluster CA and its gossip key form a cluster; a node
// with a certificate of another CA, or with another gossip key, cannot join and says why in its log, and so do
// the members that refused it.
func TestSystemClusterSecurity(t *testing.T) {
	ca := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", ca)
	n1 := secureNode(t, "n1", "127.0.0.1", "", nodeCerts(t, ca, "127.0.0.1"))
	n2 := secureNode(t, "n2", "127.0.0.2", n1.clusterAddr, nodeCerts(t, ca, "127.0.0.2"))
	for _, n := range []*sysNode{n1, n2} {
		n.start(t)
	}
	for _, n := range []*sysNode{n1, n2} {
		waitFor(t, 60*time.Second, 50*time.Millisecond, n.name+" ready", func() bool {
			status, _, err := tryCall("GET", n.url()+"/readyz", "")
			return err == nil && status == 200
		})
	}
	operatorForCluster(t, []*sysNode{n1, n2})
	waitMembers(t, []*sysNode{n1, n2}, 2, 30*time.Second)
	if out := n1.proc.output(); strings.Contains(out, "not authenticated or encrypted") || strings.Contains(out, "gossip is not encrypted") {
		t.Fatal("n1 warns about plaintext links although it has a certs dir")
	}

	// Another CA, the right gossip key.
	other := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", other)
	foreign := nodeCerts(t, other, "127.0.0.3")
	gk, _ := os.ReadFile(filepath.Join(ca, gossipKeyFile))
	n3 := secureNode(t, "n3", "127.0.0.3", n1.clusterAddr, foreign, "--gossip-key", strings.TrimSpace(string(gk)))
	n3.joinTimeout = "6s"
	n3.start(t)
	if code := n3.proc.wait(30 * time.Second); code == 0 {
		t.Fatal("a node with a certificate of another CA joined")
	}
	if out := n3.proc.output(); !strings.Contains(out, "member refused") || !strings.Contains(out, "certificate") {
		t.Fatalf("n3's log does not say why it could not join:\n%s", out)
	}
	if out := n1.proc.output(); !strings.Contains(out, "member refused") {
		t.Fatal("n1 did not log the refusal of n3")
	}

	// The cluster CA, another gossip key.
	n4 := secureNode(t, "n4", "127.0.0.4", n1.clusterAddr, nodeCerts(t, ca, "127.0.0.4"),
		"--gossip-key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	n4.joinTimeout = "6s"
	n4.start(t)
	if code := n4.proc.wait(30 * time.Second); code == 0 {
		t.Fatal("a node with another gossip key joined")
	}
	if out := n4.proc.output(); !strings.Contains(out, "decrypt") && !strings.Contains(out, "keyring") {
		t.Fatalf("n4's log does not say why it could not join:\n%s", out)
	}
	// Neither made it into the membership.
	waitMembers(t, []*sysNode{n1, n2}, 2, 5*time.Second)
}

// TestClusterConfigSecurity: the cluster configuration a node builds from --certs-dir, --gossip-key and
// --insecure: a gossip keyring (primary first), the refusal of exposed links whose certs dir has no gossip key,
// and the warnings of links without security.
func TestClusterConfigSecurity(t *testing.T) {
	ca := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", ca)
	withKey := nodeCerts(t, ca, "127.0.0.1")
	caKey, _ := os.ReadFile(filepath.Join(ca, gossipKeyFile))
	noKey := nodeCerts(t, ca, "127.0.0.1")
	if err := os.Remove(filepath.Join(noKey, gossipKeyFile)); err != nil {
		t.Fatal(err)
	}
	keyring := nodeCerts(t, ca, "127.0.0.1")
	if err := os.WriteFile(filepath.Join(keyring, gossipKeyFile), []byte(testGossipKeyB+"\n\n"+testGossipKeyA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		plainLinks  = "links between nodes are not authenticated or encrypted"
		plainGossip = "gossip is not encrypted"
		exposed     = "cluster links reachable off loopback without security (--insecure)"
	)
	a, b := bytes.Repeat([]byte("A"), 32), bytes.Repeat([]byte("B"), 32)
	tests := []struct {
		name     string
		args     []string
		err      string   // the refusal; "" starts
		primary  []byte   // SecretKey
		second   [][]byte // SecondaryKeys
		warns    []string
		notWarns []string
	}{
		{"loopback without security warns", nil, "", nil, nil, []string{plainLinks, plainGossip}, []string{exposed}},
		{"certs dir with gossip.key", []string{"--certs-dir", withKey, "--cluster-addr", "0.0.0.0:0"}, "", nil, nil,
			nil, []string{plainLinks, plainGossip, exposed}},
		{"gossip.key keyring", []string{"--certs-dir", keyring}, "", b, [][]byte{a}, nil, []string{plainLinks, plainGossip}},
		{"--gossip-key keyring wins", []string{"--certs-dir", withKey, "--gossip-key", testGossipKeyA + "," + testGossipKeyB}, "",
			a, [][]byte{b}, nil, []string{plainGossip}},
		{"exposed certs dir without a gossip key", []string{"--certs-dir", noKey, "--join", "10.0.0.7:7946", "--journal", "postgres://db/p"},
			"--join seed 10.0.0.7:7946 is off loopback and gossip would be unencrypted: put a gossip.key in --certs-dir", nil, nil, nil, nil},
		{"exposed and --insecure warns", []string{"--insecure", "--cluster-addr", "0.0.0.0:0"}, "", nil, nil,
			[]string{plainLinks, plainGossip, exposed}, nil},
		{"exposed certs dir without a gossip key and --insecure warns", []string{"--insecure", "--certs-dir", noKey, "--advertise-addr", "10.0.0.1"},
			"", nil, nil, []string{plainGossip, exposed}, []string{plainLinks}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseRunFlags(tt.args, envOf(), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			m := &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			c, err := m.clusterConfig()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--insecure") {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.primary != nil && (!bytes.Equal(c.SecretKey, tt.primary) || !reflect.DeepEqual(c.SecondaryKeys, tt.second)) {
				t.Fatalf("keyring primary %q secondaries %q, want %q %q", c.SecretKey, c.SecondaryKeys, tt.primary, tt.second)
			}
			if strings.Contains(tt.name, "gossip.key") && tt.primary == nil && !bytes.Equal(c.SecretKey, mustKey(t, string(caKey))) {
				t.Fatalf("gossip key %q, want the certs dir's", c.SecretKey)
			}
			for _, w := range tt.warns {
				if !strings.Contains(logs.String(), "level=WARN msg=\""+w) {
					t.Errorf("no warning %q in\n%s", w, logs.String())
				}
			}
			for _, w := range tt.notWarns {
				if strings.Contains(logs.String(), w) {
					t.Errorf("warning %q in\n%s", w, logs.String())
				}
			}
		})
	}
}

func mustKey(t *testing.T, s string) []byte {
	t.Helper()
	k, err := decodeGossipKeys(s)
	if err != nil || len(k) != 1 {
		t.Fatalf("gossip key %q: %v", s, err)
	}
	return k[0]
}

// stopNode stops a system node gracefully (SIGTERM), as a rolling restart does.
func stopNode(t *testing.T, n *sysNode) {
	t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := n.proc.wait(30 * time.Second); code != 0 {
		t.Fatalf("%s: exit code %d after SIGTERM", n.name, code)
	}
}

// TestSystemGossipKeyRotation rotates the gossip key of a running cluster with rolling restarts (README): every
// node first gets the new key as a secondary, then as its primary, then the old key goes. Two nodes that share a
// key of their keyrings gossip; a node whose primary key is not in a member's keyring cannot join it, since the
// primary is the key that encrypts.
func TestSystemGossipKeyRotation(t *testing.T) {
	ca := t.TempDir()
	certCmd(t, "create-ca", "--certs-dir", ca)
	b, err := os.ReadFile(filepath.Join(ca, gossipKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	oldKey, newKey := strings.TrimSpace(string(b)), testGossipKeyB
	ready := func(n *sysNode) {
		t.Helper()
		waitFor(t, 60*time.Second, 50*time.Millisecond, n.name+" ready", func() bool {
			status, _, err := tryCall("GET", n.url()+"/readyz", "")
			return err == nil && status == 200
		})
	}

	// n1 has only the old key (gossip.key in its certs dir).
	n1 := secureNode(t, "n1", "127.0.0.1", "", nodeCerts(t, ca, "127.0.0.1"))
	n1.start(t)
	ready(n1)

	// A node that encrypts with the new key cannot join it, although it also holds the old one.
	early := secureNode(t, "n3", "127.0.0.3", n1.clusterAddr, nodeCerts(t, ca, "127.0.0.3"), "--gossip-key", newKey+","+oldKey)
	early.joinTimeout = "5s"
	early.start(t)
	if code := early.proc.wait(30 * time.Second); code == 0 {
		t.Fatal("a node whose primary gossip key the seed lacks joined")
	}
	if out := early.proc.output(); !strings.Contains(out, "no installed keys could decrypt") {
		t.Fatalf("%s's log does not say why it could not join:\n%s", early.name, out)
	}

	// Step 1: n2 has the new key as a secondary: it encrypts with the old one, and joins.
	n2certs := nodeCerts(t, ca, "127.0.0.2")
	n2 := secureNode(t, "n2", "127.0.0.2", n1.clusterAddr, n2certs, "--gossip-key", oldKey+","+newKey)
	n2.start(t)
	ready(n2)
	operatorForCluster(t, []*sysNode{n1, n2})
	waitMembers(t, []*sysNode{n1, n2}, 2, 30*time.Second)

	// n1 restarts with both keys, the new one primary, and rejoins through n2 (old primary, new secondary).
	stopNode(t, n1)
	waitMembers(t, []*sysNode{n2}, 1, 30*time.Second)
	n1.join, n1.extra = n2.clusterAddr, append(n1.extra, "--gossip-key", newKey+","+oldKey)
	n1.start(t)
	ready(n1)
	waitMembers(t, []*sysNode{n1, n2}, 2, 30*time.Second)

	// Step 2: n2 makes the new key primary too.
	stopNode(t, n2)
	waitMembers(t, []*sysNode{n1}, 1, 30*time.Second)
	n2.extra = []string{"--certs-dir", n2certs, "--gossip-key", newKey + "," + oldKey}
	n2.start(t)
	ready(n2)
	waitMembers(t, []*sysNode{n1, n2}, 2, 30*time.Second)

	// Step 3: n2 drops the old key.
	stopNode(t, n2)
	waitMembers(t, []*sysNode{n1}, 1, 30*time.Second)
	n2.extra = []string{"--certs-dir", n2certs, "--gossip-key", newKey}
	n2.start(t)
	ready(n2)
	waitMembers(t, []*sysNode{n1, n2}, 2, 30*time.Second)
	// The old key is gone from n2: a node that encrypts with it (and reads the new key) cannot join through n2.
	late := secureNode(t, "n4", "127.0.0.4", n2.clusterAddr, nodeCerts(t, ca, "127.0.0.4"), "--gossip-key", oldKey+","+newKey)
	late.joinTimeout = "5s"
	late.start(t)
	if code := late.proc.wait(30 * time.Second); code == 0 {
		t.Fatal("a node encrypting with the dropped gossip key joined")
	}
	if out := late.proc.output(); !strings.Contains(out, "no installed keys could decrypt") {
		t.Fatalf("%s's log does not say why it could not join:\n%s", late.name, out)
	}
	for _, n := range []*sysNode{n1, n2} {
		if out := n.proc.output(); strings.Contains(out, "gossip is not encrypted") {
			t.Fatalf("%s gossips in clear", n.name)
		}
	}
}
