package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Admission of members under mutual TLS (Config.TLS). Gossip is only as closed as its key; the actor remote is
// closed by mutual TLS. A node whose certificate another member does not accept could still gossip its way into
// the membership and then own identities nobody can reach, so memberlist's merge (the push/pull of a join) is
// refused unless a mutual TLS handshake with each new peer's remote address succeeds. Both sides check: the
// joining node refuses the cluster's members (their certificates are not of its CA) and the members refuse the
// joining node. The refusal is logged with the TLS error, and the join fails.

// admission is memberlist's MergeDelegate. It is safe for concurrent use (memberlist calls it from its stream
// goroutines).
type admission struct {
	self    string
	tls     *tls.Config   // client side: this member's certificate, the cluster CA
	timeout time.Duration // dial and handshake (Config.TCPTimeout)
	read    time.Duration // wait for a refusal after the handshake (Config.AdmissionReadTimeout)
	log     *slog.Logger

	next memberlist.MergeDelegate // the merge check this one adds to (nil: none)

	mu       sync.Mutex
	admitted map[string]string // member id -> remote address it was checked at
}

func newAdmission(self string, cfg *tls.Config, timeout, read time.Duration, log *slog.Logger, next memberlist.MergeDelegate) *admission {
	return &admission{self: self, tls: clientTLS(cfg), timeout: timeout, read: read, log: log, next: next, admitted: map[string]string{}}
}

// NotifyMerge checks every peer not admitted yet, then asks next; one refusal cancels the merge.
func (a *admission) NotifyMerge(peers []*memberlist.Node) error {
	if err := a.checkTLS(peers); err != nil {
		return err
	}
	if a.next != nil {
		return a.next.NotifyMerge(peers)
	}
	return nil
}

func (a *admission) checkTLS(peers []*memberlist.Node) error {
	for _, n := range peers {
		if n.Name == a.self {
			continue
		}
		m, err := decodeMeta(n.Name, n.Meta)
		if err != nil {
			a.log.Error("member refused: no remote address in its metadata", slog.String("member", n.Name), slog.Any("error", err))
			return fmt.Errorf("member %s refused: %w", n.Name, err)
		}
		addr := m.Address()
		a.mu.Lock()
		ok := a.admitted[n.Name] == addr
		a.mu.Unlock()
		if ok {
			continue
		}
		if err := a.probe(addr); err != nil {
			a.log.Error("member refused: mutual TLS with its remote failed (a certificate of another CA, or no TLS?)",
				slog.String("member", n.Name), slog.String("addr", addr), slog.Any("error", err))
			return fmt.Errorf("member %s at %s refused: %w", n.Name, addr, err)
		}
		a.mu.Lock()
		a.admitted[n.Name] = addr
		a.mu.Unlock()
	}
	return nil
}

// probe makes a mutual TLS handshake with a remote address.
func (a *admission) probe(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cfg := a.tls.Clone()
	cfg.ServerName = host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: a.timeout}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// TLS 1.3 reports a refused client certificate only on the first read after the handshake.
	_ = conn.SetReadDeadline(time.Now().Add(a.read))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
	}
	return nil
}

// clientTLS is the dialing side of cfg: the member's certificate (mutual TLS) and the cluster CA as roots.
func clientTLS(cfg *tls.Config) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: cfg.Certificates,
		RootCAs:      cfg.RootCAs,
		NextProtos:   []string{"h2"},
	}
	return c
}

// serverTLS is the serving side of cfg: the member's certificate, and client certificates required and verified
// against the cluster CA.
func serverTLS(cfg *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: cfg.Certificates,
		ClientCAs:    cfg.RootCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2"},
	}
}
