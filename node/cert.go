package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// `platter cert`: the files of a cluster's mutual TLS and gossip encryption, as CockroachDB's `cockroach cert`
// writes them. A certs directory holds:
//
//	ca.crt       the cluster CA certificate (every node)
//	ca.key       its key (keep it where certificates are made, not on the nodes)
//	node.crt     this node's certificate, signed by the CA, for its hosts (server and client use)
//	node.key     its key
//	gossip.key   the base64 gossip keyring (every node): one key a line, the first encrypts, all decrypt
//
// `platter run --certs-dir DIR` then speaks mutual TLS on the actor remote and encrypts gossip with gossip.key
// (or --gossip-key, comma-separated keys). Several keys let the gossip key rotate with rolling restarts.

// Names of the files in a certs directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	nodeCertFile   = "node.crt"
	nodeKeyFile    = "node.key"
	gossipKeyFile  = "gossip.key"
	certValidity   = 5 * 365 * 24 * time.Hour
	caCertValidity = 10 * 365 * 24 * time.Hour
)

const certUsage = `Usage:
  platter cert create-ca --certs-dir DIR [--ca-key FILE]
      writes DIR/ca.crt, the CA key (DIR/ca.key unless --ca-key) and DIR/gossip.key
  platter cert create-node --certs-dir DIR --host HOST[,HOST...] [--ca-key FILE]
      writes DIR/node.crt and DIR/node.key, signed by the CA (DIR/ca.crt and DIR/ca.key unless --ca-key),
      for every HOST (IP addresses and DNS names the node is reached at)

Existing files are never overwritten.
`

// runCert runs `platter cert ...` (args after "cert").
func runCert(args []string, stdout io.Writer, now time.Time) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, certUsage)
		if len(args) == 0 {
			return errors.New("missing cert command (create-ca or create-node)")
		}
		return nil
	}
	fs := flag.NewFlagSet("platter cert "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("certs-dir", "", "directory of the certificates")
	caKey := fs.String("ca-key", "", "the CA key file (default: ca.key in --certs-dir)")
	hosts := fs.String("host", "", "comma-separated hosts of the node (create-node)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("platter cert %s: %v", args[0], err)
	}
	if *dir == "" {
		return fmt.Errorf("platter cert %s: --certs-dir is required", args[0])
	}
	if *caKey == "" {
		*caKey = filepath.Join(*dir, caKeyFile)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("create certs dir %s: %w", *dir, unwrapPathError(err))
	}
	switch args[0] {
	case "create-ca":
		if err := createCA(*dir, *caKey, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "platter: wrote %s, %s and %s\n", filepath.Join(*dir, caCertFile), *caKey, filepath.Join(*dir, gossipKeyFile))
	case "create-node":
		var hs []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 {
			return errors.New("platter cert create-node: --host is required (the addresses other nodes reach this node at)")
		}
		if err := createNodeCert(*dir, *caKey, hs, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "platter: wrote %s and %s for %s\n", filepath.Join(*dir, nodeCertFile), filepath.Join(*dir, nodeKeyFile), strings.Join(hs, ", "))
	default:
		return fmt.Errorf("unknown cert command %q (create-ca or create-node)", args[0])
	}
	return nil
}

// createCA writes a self-signed ECDSA P-256 CA and a random 32-byte gossip key.
func createCA(dir, keyPath string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Platter"}, CommonName: "Platter cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caCertValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make CA certificate: %w", err)
	}
	for _, p := range []string{filepath.Join(dir, caCertFile), keyPath, filepath.Join(dir, gossipKeyFile)} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists already; remove it to make a new CA", p)
		}
	}
	if err := writeCertAndKey(filepath.Join(dir, caCertFile), keyPath, der, key); err != nil {
		return err
	}
	g := make([]byte, 32)
	if _, err := rand.Read(g); err != nil {
		return fmt.Errorf("make gossip key: %w", err)
	}
	return writeNew(filepath.Join(dir, gossipKeyFile), []byte(base64.StdEncoding.EncodeToString(g)+"\n"), 0o600)
}

// createNodeCert writes a node certificate for hosts, signed by the CA of dir (its key at caKeyPath), usable as a
// server and as a client certificate (mutual TLS).
func createNodeCert(dir, caKeyPath string, hosts []string, now time.Time) error {
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, caCertFile), caKeyPath)
	if err != nil {
		return fmt.Errorf("load the CA (%s, %s): %w", filepath.Join(dir, caCertFile), caKeyPath, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse the CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make node key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Platter"}, CommonName: "node"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	addSANs(tmpl, hosts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return fmt.Errorf("make node certificate: %w", err)
	}
	for _, p := range []string{filepath.Join(dir, nodeCertFile), filepath.Join(dir, nodeKeyFile)} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists already; remove it to make a new node certificate", p)
		}
	}
	return writeCertAndKey(filepath.Join(dir, nodeCertFile), filepath.Join(dir, nodeKeyFile), der, key)
}

// clusterSecurity is what --certs-dir and --gossip-key give the cluster links.
type clusterSecurity struct {
	cert       *tls.Certificate // nil: no mutual TLS
	ca         *x509.CertPool
	gossipKeys [][]byte // the gossip keyring, primary first; nil: gossip in clear
}

// loadClusterSecurity reads --certs-dir (ca.crt, node.crt, node.key; gossip.key when --gossip-key is not given).
func loadClusterSecurity(certsDir, gossipKey string) (clusterSecurity, error) {
	var s clusterSecurity
	if gossipKey != "" {
		k, err := decodeGossipKeys(gossipKey)
		if err != nil {
			return s, fmt.Errorf("invalid --gossip-key: %v", err)
		}
		s.gossipKeys = k
	}
	if certsDir == "" {
		return s, nil
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certsDir, nodeCertFile), filepath.Join(certsDir, nodeKeyFile))
	if err != nil {
		return s, fmt.Errorf("--certs-dir %s: load node.crt and node.key (make them with platter cert create-node): %w", certsDir, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(certsDir, caCertFile))
	if err != nil {
		return s, fmt.Errorf("--certs-dir %s: read ca.crt: %w", certsDir, unwrapPathError(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return s, fmt.Errorf("--certs-dir %s: ca.crt holds no PEM certificate", certsDir)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return s, fmt.Errorf("--certs-dir %s: parse node.crt: %w", certsDir, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return s, fmt.Errorf("--certs-dir %s: node.crt is not a client certificate of ca.crt: %w", certsDir, err)
	}
	s.cert, s.ca = &cert, pool
	if s.gossipKeys == nil {
		b, err := os.ReadFile(filepath.Join(certsDir, gossipKeyFile))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return s, fmt.Errorf("--certs-dir %s: read gossip.key: %w", certsDir, unwrapPathError(err))
		default:
			if s.gossipKeys, err = decodeGossipKeys(string(b)); err != nil {
				return s, fmt.Errorf("--certs-dir %s: gossip.key: %v", certsDir, err)
			}
		}
	}
	return s, nil
}

// decodeGossipKeys reads a gossip keyring: base64 keys (16, 24 or 32 bytes each), one a line or comma-separated.
// The first is the primary key, which encrypts; every key decrypts, so that the key rotates without a full-cluster
// restart (README "Rotating the gossip key").
func decodeGossipKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := decodeGossipKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	return keys, nil
}

// pemCert is used by tests to read a certificate file.
func pemCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM in %s", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
