// Package tlsconf turns a service's TLS files and peer identities into gRPC
// credentials: server credentials that require a client certificate from the trusted
// CA (when one is given), client credentials that check the server's certificate and
// identity, and a server option that admits only callers with an allowed identity.
// Certificates and CAs are reloaded when their files change, without a restart.
//
// Identities are SPIFFE IDs in URI SANs (github.com/spiffe/go-spiffe/v2) or DNS
// names; see ParseIdentities. CA is a certificate authority held in memory, for the
// links inside `specd up` and for tests.
//
// The package knows nothing of specd's roles, discovery or domain packages: which
// identities each service accepts is decided by its caller (cmd/specd). It imports
// services only for the one function that chooses status codes.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/specd-dev/specd/services"
)

// ServerTLS is the server side's tls.Config: each handshake takes the Source's current
// certificate and CA. With a CA, a client must present a certificate that chains to it
// (valid now, for client auth); without one, no client certificate is asked for
// (server-only TLS). alpn are the application protocols offered (none: gRPC's "h2";
// an HTTP server serving HTTP/1.1 too passes "h2", "http/1.1").
func (s *Source) ServerTLS(alpn ...string) *tls.Config {
	if len(alpn) == 0 {
		alpn = []string{"h2"}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			if m.cert == nil {
				return nil, fmt.Errorf("%w: a server needs a certificate", ErrConfig)
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				NextProtos:   alpn, // the config returned here replaces the base one, ALPN included
			}
			if m.roots != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = m.roots
			}
			return c, nil
		},
	}
}

// ServerCredentials are gRPC server credentials for ServerTLS.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerTLS())
}

// clientTLS is the client side's tls.Config: it presents the Source's current
// certificate (if it has one) and accepts a server whose certificate chains to the
// current CA (the system's roots without one) and whose identity is in want. With
// want empty the server is checked as HTTPS does, against host, the host dialled.
func (s *Source) clientTLS(want Identities, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if m := s.current(); m.cert != nil {
				return m.cert, nil
			}
			return &tls.Certificate{}, nil // none: the server refuses us if it wants one
		},
		// The chain and identity are checked in VerifyConnection, against the CA loaded
		// now rather than one fixed here, and by identity rather than by the address
		// dialled (an endpoint found in Consul is dialled by IP).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			dnsName := ""
			if want.Empty() {
				// The host dialled, not cs.ServerName: that is the name sent in SNI,
				// which is empty when the host is an IP address.
				dnsName = host
			}
			leaf, err := s.current().verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, dnsName)
			if err != nil {
				return fmt.Errorf("tls: server certificate: %w", err)
			}
			if want.Empty() {
				return nil
			}
			if err := want.Match(leaf); err != nil {
				return fmt.Errorf("tls: server %w", err)
			}
			return nil
		},
	}
}

// ClientCredentials are gRPC client credentials that present the Source's certificate
// and accept a server whose certificate chains to its CA and has an identity in want;
// with want empty, one valid for the host dialled (its DNS name or IP address).
func (s *Source) ClientCredentials(want Identities) credentials.TransportCredentials {
	return &clientCreds{TransportCredentials: credentials.NewTLS(s.clientTLS(want, "")), s: s, want: want}
}

// clientCreds are gRPC's TLS credentials with a tls.Config made for each handshake,
// which knows the host dialled.
type clientCreds struct {
	credentials.TransportCredentials // Info, and the server side (unused)
	s                                *Source
	want                             Identities
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority // no port
	}
	return credentials.NewTLS(c.s.clientTLS(c.want, host)).ClientHandshake(ctx, authority, conn)
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	d := *c
	return &d
}

// exempt is the gRPC service any caller with a verified certificate may call whatever
// its identity: health checks, which Consul agents and probes make with certificates of
// their own. (Reflection is not exempt: it describes the API to those who may call it.)
const exempt = "grpc.health.v1.Health"

// Authorize returns the server options that refuse a call unless the caller's
// verified certificate has an identity in allowed (health checks need only a verified
// certificate): UNAUTHENTICATED without one, PERMISSION_DENIED
// for an identity not allowed. Use it with ServerCredentials of a Source with a CA.
// Refusals are logged to log (nil: not logged) as a warning naming the caller and the
// method, at most one a services.RefusalLogEvery with the count refused meanwhile.
func Authorize(allowed Identities, log *slog.Logger) []grpc.ServerOption {
	sample := &services.LogSampler{Every: services.RefusalLogEvery}
	check := func(ctx context.Context, method string) error {
		err := authorize(ctx, allowed, method)
		if err != nil && log != nil {
			if ok, held := sample.Allow("", time.Now()); ok {
				log.WarnContext(ctx, "tls: call refused", "peer", services.PeerID(ctx), "method", method, "err", err, "refused_unlogged", held)
			}
		}
		return services.Status(err)
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// authorize decides one call (method is "/service/Method").
func authorize(ctx context.Context, allowed Identities, method string) error {
	leaf := peerCertificate(ctx)
	if leaf == nil {
		return fmt.Errorf("%w: no verified client certificate", services.ErrUnauthenticated)
	}
	if svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/"); svc == exempt {
		return nil
	}
	if err := allowed.Match(leaf); err != nil {
		return fmt.Errorf("%w: %s: %w", services.ErrPermissionDenied, method, err)
	}
	return nil
}

// peerCertificate returns the verified leaf certificate of the caller of a server
// handler, or nil if it presented none (or the connection is not TLS).
func peerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}
