package services_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/specd-dev/specd/internal/testnet"
	"github.com/specd-dev/specd/services"
)

// holdDesc is a service with one bidirectional stream that sends one message once
// it is running, then holds until the client ends it: a stand-in for Speculate or
// Generate that any peer can keep open.
var holdDesc = grpc.ServiceDesc{
	ServiceName: "specd.test.Hold",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "Hold", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			for {
				if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		}}},
}

// dialFrom dials addr from the loopback address src, so that one test plays several
// peers.
func dialFrom(t *testing.T, src, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := services.Dial(addr, testnet.From(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// serveHold serves the Hold service with lim and opts on loopback until the test
// ends, and returns its address.
func serveHold(t *testing.T, lim services.Limits, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := services.NewServer("test", slog.New(slog.NewTextHandler(io.Discard, nil)), lim, opts...)
	srv.GRPC.RegisterService(&holdDesc, struct{}{})
	srv.SetServing()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, time.Second) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return lis.Addr().String()
}

// hold opens a Hold stream and waits until the server runs it or refuses it.
func hold(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	st, err := cc.NewStream(ctx, &holdDesc.Streams[0], "/specd.test.Hold/Hold")
	if err != nil {
		return nil, err
	}
	if err := st.RecvMsg(&emptypb.Empty{}); err != nil {
		return nil, err
	}
	return st, nil
}

// TestStreamsPerPeer: past MaxStreamsPerPeer open streams, a peer's next stream is
// RESOURCE_EXHAUSTED at once with a RetryInfo hint, whichever connection it opens it
// on; another peer's streams and every peer's health checks still go through; once
// one of its streams ends, the peer may open another.
func TestStreamsPerPeer(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the other cleanups close the connections
	addr := serveHold(t, services.Limits{MaxStreamsPerPeer: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a1, a2, b := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.2", addr)

	actx, endA := context.WithCancel(ctx)
	defer endA()
	first, err := hold(actx, a1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold(actx, a2); err != nil { // the same peer on a second connection
		t.Fatal(err)
	}
	start := time.Now()
	_, err = hold(actx, a2)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "ip:127.0.0.1") {
		t.Fatalf("peer A's third stream: %v, want RESOURCE_EXHAUSTED naming the peer", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the refusal took %v, want it at once", waited)
	}
	var hint *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hint = ri
		}
	}
	if hint == nil || hint.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("refusal details %v: want a RetryInfo with a positive delay", status.Convert(err).Details())
	}
	for _, cc := range []*grpc.ClientConn{a1, b} {
		if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check at the limit: %v, %v, want SERVING", r, err)
		}
	}
	bctx, endB := context.WithCancel(ctx)
	defer endB()
	for i := range 2 {
		if _, err := hold(bctx, b); err != nil {
			t.Fatalf("peer B's stream %d while A is at its limit: %v", i, err)
		}
	}

	if err := first.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := first.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		t.Fatalf("the first stream's end: %v", err)
	}
	if _, err := hold(actx, a1); err != nil {
		t.Errorf("peer A's stream after one of its own ended: %v", err)
	}
	endA()
	endB()
}

// TestPeerID: a verified client certificate names the peer by its SPIFFE ID, else its
// DNS name, else its common name, at its IP address; an unverified one, which anyone
// can make, does not, and neither does plaintext: those are named by IP address alone,
// without the port.
func TestPeerID(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://specd.example/ns/prod/sa/verifier")
	cert := func(uris []*url.URL, dns []string, cn string) *x509.Certificate {
		return &x509.Certificate{URIs: uris, DNSNames: dns, Subject: pkix.Name{CommonName: cn}}
	}
	addr := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 50123}
	tlsPeer := func(c *x509.Certificate, verified bool) *peer.Peer {
		st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
		if verified {
			st.VerifiedChains = [][]*x509.Certificate{{c}}
		}
		return &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: st}}
	}
	for _, c := range []struct {
		name string
		p    *peer.Peer
		want string
	}{
		{"spiffe", tlsPeer(cert([]*url.URL{spiffe}, []string{"v.example"}, "v"), true), "spiffe://specd.example/ns/prod/sa/verifier@ip:10.1.2.3"},
		{"dns", tlsPeer(cert(nil, []string{"verifier-0.specd", "other"}, "v"), true), "dns:verifier-0.specd@ip:10.1.2.3"},
		{"cn", tlsPeer(cert(nil, nil, "router"), true), "cn:router@ip:10.1.2.3"},
		{"unverified", tlsPeer(cert([]*url.URL{spiffe}, nil, ""), false), "ip:10.1.2.3"},
		{"no identity", tlsPeer(cert(nil, nil, ""), true), "ip:10.1.2.3"},
		{"plaintext", &peer.Peer{Addr: addr}, "ip:10.1.2.3"},
		{"ipv6", &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("::1"), Port: 9}}, "ip:::1"},
		{"unix", &peer.Peer{Addr: &net.UnixAddr{Name: "/run/specd.sock", Net: "unix"}}, "unix:/run/specd.sock"},
	} {
		if got := services.PeerID(peer.NewContext(context.Background(), c.p)); got != c.want {
			t.Errorf("%s: PeerID = %q, want %q", c.name, got, c.want)
		}
	}
	if got := services.PeerID(context.Background()); got != "unknown" {
		t.Errorf("PeerID without a peer = %q, want unknown", got)
	}
}

// testCA issues certificates for a test: a self-signed CA and leaves signed by it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "specd test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a certificate for 127.0.0.1 with the given URI SAN ("" for none).
func (ca *testCA) leaf(t *testing.T, serial int64, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// verifyWith is a VerifyPeerCertificate hook that checks the leaf against pool, as a
// server verifying client certificates by itself (go-spiffe's way) does.
func verifyWith(pool *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no client certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err
	}
}

// TestStreamsPerTLSPeer: over mTLS the peer is the client certificate's SPIFFE ID,
// so two clients on the same IP address with different identities have a limit each,
// and one identity on two connections from one address shares one (from another
// address it is another replica, with a limit of its own), when crypto/tls verified the
// certificate. A certificate that only a server's own hook verified leaves the peer
// its IP address.
func TestStreamsPerTLSPeer(t *testing.T) {
	ca := newTestCA(t)
	serverCert := ca.leaf(t, 2, "")
	for _, c := range []struct {
		name       string
		tls        *tls.Config
		byIdentity bool
	}{
		{"crypto/tls verifies", &tls.Config{ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}, true},
		{"a hook verifies", &tls.Config{ClientAuth: tls.RequireAnyClientCert, VerifyPeerCertificate: verifyWith(ca.pool)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			c.tls.Certificates, c.tls.MinVersion = []tls.Certificate{serverCert}, tls.VersionTLS13
			addr := serveHold(t, services.Limits{MaxStreamsPerPeer: 1}, grpc.Creds(credentials.NewTLS(c.tls)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dialFrom := func(src string, serial int64, id string) *grpc.ClientConn {
				cfg := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, serial, id)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
				cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), testnet.From(src))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cc.Close() })
				return cc
			}
			dial := func(serial int64, id string) *grpc.ClientConn { return dialFrom("127.0.0.1", serial, id) }
			router := "spiffe://specd.test/router"
			r1, r2, v := dial(3, router), dial(4, router), dial(5, "spiffe://specd.test/verifier")
			if _, err := hold(ctx, r1); err != nil {
				t.Fatal(err)
			}
			want := router
			if !c.byIdentity {
				want = "ip:127.0.0.1"
			}
			_, err := hold(ctx, r2)
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), want) {
				t.Errorf("the router identity's second stream, on another connection: %v, want RESOURCE_EXHAUSTED naming %s", err, want)
			}
			_, err = hold(ctx, v)
			if c.byIdentity && err != nil {
				t.Errorf("another identity from the same IP address: %v, want served", err)
			}
			if !c.byIdentity && status.Code(err) != codes.ResourceExhausted {
				t.Errorf("another certificate from the same IP address, identities not trusted: %v, want RESOURCE_EXHAUSTED", err)
			}
			// Replicas of a role share its certificate: the same identity from another
			// address is another peer.
			if _, err := hold(ctx, dialFrom("127.0.0.2", 6, router)); err != nil {
				t.Errorf("the router identity from another address: %v, want served", err)
			}
			cancel()
		})
	}
}
