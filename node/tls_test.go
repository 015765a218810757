package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsClient trusts exactly the certificate in certFile and speaks only TLS versions min..max.
func tlsClient(t *testing.T, certFile string, min, max uint16) *nethttp.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &nethttp.Client{Timeout: 10 * time.Second, Transport: &nethttp.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: min, MaxVersion: max},
	}}
}

// TestEdgeTLSByDefault: without --insecure the edge serves HTTPS with a development certificate made in the data
// dir (path and fingerprint printed, the same certificate on the next start), TLS 1.3 is negotiated when offered,
// TLS 1.2 works, TLS 1.1 and plain HTTP are refused.
func TestEdgeTLSByDefault(t *testing.T) {
	dir := t.TempDir()
	out := &syncBuffer{}
	m := &Main{Stdout: out, Logs: out, Getenv: envOf()}
	if err := m.ParseFlags([]string{"run", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local", "--shutdown-timeout", "10s"}); err != nil {
		t.Fatal(err)
	}
	runMain(t, m)
	if !strings.HasPrefix(m.URL(), "https://") {
		t.Fatalf("URL %s, want https", m.URL())
	}
	certFile := filepath.Join(dir, devCertFile)
	der := readCertDER(t, certFile)
	if want := "new self-signed development certificate " + certFile + " (SHA-256 " + fingerprint(der) + ")"; !strings.Contains(out.String(), want) {
		t.Fatalf("start-up output lacks %q:\n%s", want, out.String())
	}
	// The token hint pins the development certificate.
	if want := "get an operator token: curl -s --cacert " + certFile + " " + m.URL() + "/oauth2/token"; !strings.Contains(out.String(), want) {
		t.Fatalf("start-up output lacks %q:\n%s", want, out.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, devKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("development key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	res, err := tlsClient(t, certFile, tls.VersionTLS12, tls.VersionTLS13).Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("status %d, TLS version %x; want 200 over TLS 1.3", res.StatusCode, res.TLS.Version)
	}
	res, err = tlsClient(t, certFile, tls.VersionTLS12, tls.VersionTLS12).Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	res.Body.Close()
	if res.TLS.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 && res.TLS.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 &&
		res.TLS.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Fatalf("TLS 1.2 suite %s, want an ECDHE AEAD suite", tls.CipherSuiteName(res.TLS.CipherSuite))
	}

	if _, err := tlsClient(t, certFile, tls.VersionTLS10, tls.VersionTLS11).Get(m.URL() + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	// A TLS 1.2 client that offers only CBC suites finds nothing in common.
	cbc := tlsClient(t, certFile, tls.VersionTLS12, tls.VersionTLS12)
	cbc.Transport.(*nethttp.Transport).TLSClientConfig.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if _, err := cbc.Get(m.URL() + "/healthz"); err == nil {
		t.Fatal("a CBC-only client was accepted")
	}
	plain := "http://" + strings.TrimPrefix(m.URL(), "https://")
	if status, _, err := tryCall("GET", plain+"/healthz", ""); err == nil && status == 200 {
		t.Fatal("plain HTTP was served")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// The next start keeps the certificate (clients that pinned it keep working).
	out2 := &syncBuffer{}
	m2 := &Main{Stdout: out2, Logs: out2, Getenv: envOf()}
	if err := m2.ParseFlags([]string{"run", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local"}); err != nil {
		t.Fatal(err)
	}
	runMain(t, m2)
	if want := "with self-signed development certificate " + certFile + " (SHA-256 " + fingerprint(der) + ")"; !strings.Contains(out2.String(), want) {
		t.Fatalf("second start output lacks %q:\n%s", want, out2.String())
	}
}

// TestEdgeOperatorCertificate: --tls-cert and --tls-key serve the operator's certificate.
func TestEdgeOperatorCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key")
	if err := writeDevCert(certFile, keyFile, []string{"platter.example"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	m, out := newTestMainTLS(t, t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	runMain(t, m)
	if want := "HTTPS with certificate " + certFile; !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	// An operator's certificate is trusted by the system: the token hint pins nothing.
	if want := "get an operator token: curl -s " + m.URL() + "/oauth2/token"; !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	res, err := tlsClient(t, certFile, tls.VersionTLS12, tls.VersionTLS13).Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, err := os.Stat(filepath.Join(m.Config.DataDir, devCertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a development certificate was made although --tls-cert was given: %v", err)
	}
}

// TestInsecureWarns: --insecure serves plain HTTP and says so in a warning.
func TestInsecureWarns(t *testing.T) {
	m, out := newTestMain(t, t.TempDir())
	runMain(t, m)
	if !strings.HasPrefix(m.URL(), "http://") {
		t.Fatalf("URL %s, want http", m.URL())
	}
	if status := call(t, "GET", m.URL()+"/healthz", "", nil); status != 200 {
		t.Fatalf("status %d", status)
	}
	if !strings.Contains(out.String(), "serving plain HTTP (--insecure)") {
		t.Fatalf("no warning in:\n%s", out.String())
	}
}

func TestTLSFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "a.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--insecure", "--tls-cert", "a.pem", "--tls-key", "b.pem"}, "--insecure serves plain HTTP"},
		{[]string{"--gossip-key", "short"}, "invalid --gossip-key"},
	}
	for _, tt := range tests {
		m := &Main{Stdout: io.Discard, Logs: io.Discard, Getenv: envOf()}
		err := m.ParseFlags(append([]string{"run"}, tt.args...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

// newTestMainTLS is newTestMain without --insecure.
func newTestMainTLS(t *testing.T, dataDir string, args ...string) (*Main, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	m := &Main{Stdout: out, Logs: out, Getenv: envOf()}
	base := []string{"run", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local", "--log-level", "debug", "--shutdown-timeout", "10s"}
	if err := m.ParseFlags(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of node on %s:\n%s", dataDir, out.String())
		}
	})
	return m, out
}

func readCertDER(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %s", file)
	}
	return blk.Bytes
}
