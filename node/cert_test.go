package main

import (
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	if err != nil || sec.cert == nil || len(sec.gossipKey) != 32 {
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
