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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	return p.run(srv, ss, "streams", handler)
}

// run runs handler once the stream's peer is admitted; what names what is counted in
// a refusal.
func (p *peerStreams) run(srv any, ss grpc.ServerStream, what string, handler grpc.StreamHandler) error {
	id := PeerID(ss.Context())
	p.mu.Lock()
	err := p.tab.Admit(id, p.lim, p.now())
	p.mu.Unlock()
	if err != nil {
		return Status(Refused(fmt.Errorf("at most %d %s per peer: %w", p.lim.Streams, what, err)))
	}
	defer func() {
		p.mu.Lock()
		p.tab.Done(id, p.lim, p.now())
		p.mu.Unlock()
	}()
	return handler(srv, ss)
}

// MaxWatchesPerPeer bounds the health Watch streams one peer (PeerID) may hold open on
// a server. Health is open to anyone who can connect and not counted by the per-peer
// stream limit, and a Watch lasts until its client ends it: unbounded, a client
// could hold a goroutine and its request for each of as many streams as its
// connections allow. A gRPC client that health-checks its connections holds one per
// connection; probes (Kubernetes, Consul, the router) use Check.
const MaxWatchesPerPeer = 64

// MaxHealthServiceBytes is the longest service name a health request may carry: a
// Watch keeps its request for as long as it lasts, and a message may be 16 MiB.
const MaxHealthServiceBytes = 1024

// healthWatch is the full method name of grpc.health.v1's Watch.
const healthWatch = "/grpc.health.v1.Health/Watch"

// watches bounds health Watch streams: MaxWatchesPerPeer per peer, each with a
// service name of at most MaxHealthServiceBytes (past either, the stream ends at once:
// RESOURCE_EXHAUSTED with a retry hint, or INVALID_ARGUMENT).
type watches struct{ peerStreams }

func newWatches() *watches { return &watches{*newPeerStreams(MaxWatchesPerPeer)} }

func (w *watches) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != healthWatch {
		return handler(srv, ss)
	}
	return w.run(srv, &healthStream{ss}, "health watches", handler)
}

// healthStream refuses a health request whose service name is too long.
type healthStream struct{ grpc.ServerStream }

func (s *healthStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if r, ok := m.(*healthpb.HealthCheckRequest); ok && len(r.GetService()) > MaxHealthServiceBytes {
		return Status(BadField("service", "%d bytes: at most %d", len(r.GetService()), MaxHealthServiceBytes))
	}
	return nil
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
