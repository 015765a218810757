package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The edge's TLS (issue 5): HTTPS by default, with the operator's certificate (--tls-cert, --tls-key) or, without
// one, a self-signed development certificate made in the data directory on first start. Plain HTTP only with
// --insecure.

// edgeCipherSuites are the TLS 1.2 suites the edge offers: ECDHE key exchange and AEAD ciphers only. TLS 1.3
// suites are not configurable in Go and are all AEAD; Go prefers TLS 1.3 whenever the client offers it.
var edgeCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// modernTLS returns the base configuration of every TLS endpoint of a node: TLS 1.2 minimum and AEAD suites.
func modernTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     edgeCipherSuites,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
	}
}

// Names of the development certificate files in the data directory.
const (
	devCertFile = "tls-dev-cert.pem"
	devKeyFile  = "tls-dev-key.pem"
)

// edgeCert is the edge's certificate and where it came from, for the start-up line.
type edgeCert struct {
	cert        tls.Certificate
	path        string // the certificate file
	fingerprint string // SHA-256 of the leaf, hex with colons
	generated   bool   // made on this start (development certificate)
	dev         bool   // the self-signed development certificate
}

// loadEdgeCert loads the operator's certificate, or the development certificate from the data directory, making
// it first when it does not exist. hosts are put into a new development certificate besides localhost and the
// loopback addresses.
func loadEdgeCert(certFile, keyFile, dataDir string, hosts []string, now time.Time) (edgeCert, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return edgeCert{}, errors.New("--tls-cert and --tls-key go together: give both, or neither for a development certificate")
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return edgeCert{}, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", certFile, keyFile, err)
		}
		return edgeCert{cert: c, path: certFile, fingerprint: fingerprint(c.Certificate[0])}, nil
	}
	certPath, keyPath := filepath.Join(dataDir, devCertFile), filepath.Join(dataDir, devKeyFile)
	generated := false
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := writeDevCert(certPath, keyPath, hosts, now); err != nil {
			return edgeCert{}, err
		}
		generated = true
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return edgeCert{}, fmt.Errorf("load the development certificate %s: %w (delete both %s and %s to make a new one)", certPath, err, devCertFile, devKeyFile)
	}
	return edgeCert{cert: c, path: certPath, fingerprint: fingerprint(c.Certificate[0]), generated: generated, dev: true}, nil
}

// edgeTLSConfig is the edge's server configuration for cert.
func edgeTLSConfig(c edgeCert) *tls.Config {
	cfg := modernTLS()
	cfg.Certificates = []tls.Certificate{c.cert}
	return cfg
}

// writeDevCert makes a self-signed ECDSA P-256 certificate valid for a year for localhost, the loopback addresses
// and hosts, and writes it and its key (mode 0600).
func writeDevCert(certPath, keyPath string, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make development key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Platter development"}, CommonName: "localhost"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	addSANs(tmpl, append([]string{"localhost", "127.0.0.1", "::1"}, hosts...))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make development certificate: %w", err)
	}
	return writeCertAndKey(certPath, keyPath, der, key)
}

// addSANs puts each host into the certificate as an IP address or a DNS name (duplicates and unspecified
// addresses skipped).
func addSANs(tmpl *x509.Certificate, hosts []string) {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("make certificate serial: %w", err)
	}
	return n, nil
}

// writeCertAndKey writes a PEM certificate (mode 0644) and its PKCS #8 key (mode 0600). Neither file may exist:
// nothing is ever overwritten.
func writeCertAndKey(certPath, keyPath string, der []byte, key any) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeNew creates path with data and mode; it fails when path exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPathError(err))
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// fingerprint is the SHA-256 of a DER certificate as colon-separated upper-case hex (as browsers show it).
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// decodeGossipKey decodes a base64 gossip key and checks its length (AES-128, -192 or -256).
func decodeGossipKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not base64")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("%d bytes, want 16, 24 or 32", len(key))
}

// edgeTLS returns the edge's TLS configuration, or nil with a warning for --insecure. It prints the certificate's
// path and fingerprint, so that a client of a development certificate can pin it.
func (m *Main) edgeTLS() (*tls.Config, error) {
	cfg := m.Config
	if cfg.Insecure {
		m.Logger.Warn("serving plain HTTP (--insecure): passwords and tokens cross the network unencrypted; use only for local development")
		return nil, nil
	}
	var hosts []string
	if h, _, err := net.SplitHostPort(cfg.HTTPAddr); err == nil {
		hosts = append(hosts, h)
	}
	if cfg.AdvertiseAddr != "" {
		h, _, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			h = cfg.AdvertiseAddr
		}
		hosts = append(hosts, h)
	}
	c, err := loadEdgeCert(cfg.TLSCert, cfg.TLSKey, cfg.DataDir, hosts, time.Now())
	if err != nil {
		return nil, err
	}
	what := "certificate"
	switch {
	case c.generated:
		what = "new self-signed development certificate"
	case c.dev:
		what = "self-signed development certificate"
	}
	m.Logger.Info("edge TLS certificate", slog.String("path", c.path), slog.String("sha256", c.fingerprint),
		slog.Bool("development", c.dev))
	fmt.Fprintf(m.Stdout, "platter: HTTPS with %s %s (SHA-256 %s)\n", what, c.path, c.fingerprint)
	if c.dev {
		m.edgeCA = c.path
	}
	return edgeTLSConfig(c), nil
}
