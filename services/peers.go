package services

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/specd-dev/specd/quota"
)

// Defaults of the --max-streams-per-peer flags of the internal services. A verifier
// opens one Speculate stream per running request (--max-running, 64 by default), so a
// draft's default never limits one verifier; a router holds one Generate stream per
// request it routes to a verifier, waiting (--queue 256) or running, so one peer may
// fill the verifier's queue but not its running slots too.
const (
	DefaultDraftStreamsPerPeer    = 64
	DefaultVerifierStreamsPerPeer = 256
)

// PeerID names the client of an RPC for per-peer limits and logs: "ip:" and the
// client's IP address (its port left out: a client opens as many connections as it
// likes). On a TLS connection whose client certificate was verified (mTLS) the leaf
// certificate's identity (CertName) comes first, "IDENTITY@ip:ADDR": every replica of
// a role usually shares one certificate, and must not share one limit. A certificate
// presented but not verified, which anyone can forge, names nothing.
//
// A certificate counts as verified when crypto/tls verified its chain (the server's
// ClientAuth is RequireAndVerifyClientCert, as services/tlsconf sets it, or
// VerifyClientCertIfGiven). A server that verifies in a VerifyPeerCertificate hook
// instead gets no verified chains from crypto/tls, so its peers are named by address.
func PeerID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	addr := p.Addr.Network() + ":" + p.Addr.String()
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		addr = "ip:" + host
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.PeerCertificates) > 0 {
		if name := CertName(ti.State.PeerCertificates[0]); name != "" {
			// One certificate per role is the usual deployment, so the identity alone
			// would make every replica of a role one peer.
			return name + "@" + addr
		}
	}
	return addr
}

// CertName is a certificate's identity for limits, messages and logs: its first
// spiffe:// URI SAN, else "dns:" and its first DNS name, else "cn:" and its subject's
// common name; "" when it has none of those.
func CertName(leaf *x509.Certificate) string {
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	switch {
	case len(leaf.DNSNames) > 0:
		return "dns:" + leaf.DNSNames[0]
	case leaf.Subject.CommonName != "":
		return "cn:" + leaf.Subject.CommonName
	}
	return ""
}

// OpenMethod reports whether method (a full gRPC method name) is one of the services
// every server keeps open to anyone it serves at all — health (Consul's and the
// router's probes) and reflection — which no per-peer limit or API key applies to.
func OpenMethod(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

// peerStreams limits the streaming RPCs each peer (PeerID) may have open at once.
// Unary RPCs are not counted: they end when their handler returns and cannot be held.
type peerStreams struct {
	lim quota.Limits
	now func() time.Time

	mu  sync.Mutex
	tab quota.Table
}

func newPeerStreams(most int) *peerStreams {
	return &peerStreams{lim: quota.Limits{Streams: most}, now: time.Now}
}

// intercept refuses a stream past the peer's limit at once — RESOURCE_EXHAUSTED with a
// retry hint (a BusyError) — and otherwise counts it while its handler runs.
func (p *peerStreams) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if OpenMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	id := PeerID(ss.Context())
	p.mu.Lock()
	err := p.tab.Admit(id, p.lim, p.now())
	p.mu.Unlock()
	if err != nil {
		return Status(Refused(fmt.Errorf("at most %d streams per peer: %w", p.lim.Streams, err)))
	}
	defer func() {
		p.mu.Lock()
		p.tab.Done(id, p.lim, p.now())
		p.mu.Unlock()
	}()
	return handler(srv, ss)
}

// Refused turns a refusal by a quota (err wraps a *quota.Refusal) into a BusyError:
// RESOURCE_EXHAUSTED with the refusal's retry hint. Any other error passes through.
func Refused(err error) error {
	var r *quota.Refusal
	if !errors.As(err, &r) {
		return err
	}
	return &BusyError{Err: fmt.Errorf("%w: %w", ErrBusy, err), RetryAfter: r.RetryAfter}
}
