package tlsconf_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/specd-dev/specd/internal/certtest"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/tlsconf"
)

// TestMain fails the package if a test leaves a goroutine behind: a refused handshake
// or call must not leave a connection or server goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	td       = "spiffe://specd.test"
	router   = td + "/router"
	verifier = td + "/verifier"
	draft    = td + "/draft"
)

// pingDesc is a one-method service the tests call to see whether a caller gets past
// the authorizer: its handler answers with the caller's identity in a header.
var pingDesc = grpc.ServiceDesc{
	ServiceName: "tlsconftest.Ping",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Ping", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		req := new(emptypb.Empty)
		if err := dec(req); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { return &emptypb.Empty{}, nil }
		if in == nil {
			return h(ctx, req)
		}
		return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/tlsconftest.Ping/Ping"}, h)
	}}},
}

// serve runs a server with the Source's credentials admitting allowed (nil: no
// authorizer) until the test ends; it returns the address.
func serve(t testing.TB, src *tlsconf.Source, allowed *tlsconf.Identities) string {
	return serveLogged(t, src, allowed, quiet)
}

// serveLogged is serve with the authorizer logging to log.
func serveLogged(t testing.TB, src *tlsconf.Source, allowed *tlsconf.Identities, log *slog.Logger) string {
	t.Helper()
	opts := []grpc.ServerOption{grpc.Creds(src.ServerCredentials())}
	if allowed != nil {
		opts = append(opts, tlsconf.Authorize(*allowed, log)...)
	}
	srv := services.NewServer("tlsconftest.Ping", quiet, services.Limits{}, opts...)
	srv.GRPC.RegisterService(&pingDesc, struct{}{})
	srv.SetServing()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

func source(t testing.TB, f certtest.Files) *tlsconf.Source {
	t.Helper()
	s, err := tlsconf.NewSource(tlsconf.Files(f), -1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ids(t testing.TB, list ...string) tlsconf.Identities {
	t.Helper()
	p, err := tlsconf.ParseIdentities(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// call pings addr with creds and returns the code and the server's certificate serial.
func call(t testing.TB, addr string, creds credentials.TransportCredentials, method string) (codes.Code, *big.Int) {
	t.Helper()
	cc, err := services.Dial(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if method == "health" {
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	} else {
		err = cc.Invoke(ctx, "/tlsconftest.Ping/Ping", &emptypb.Empty{}, &emptypb.Empty{}, grpc.Peer(&p))
	}
	var serial *big.Int
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
		serial = info.State.PeerCertificates[0].SerialNumber
	}
	return status.Code(err), serial
}

// TestRefused: the verifier accepts only the router's identity, from its own CA, with
// a certificate valid now; a client accepts only the server identity it expects.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	ca, other := certtest.NewCA(t, "specd test CA"), certtest.NewCA(t, "another CA")
	srv := source(t, ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier, DNS: []string{"verifier.specd.test"}}))
	allowed := ids(t, router, "ops.specd.test")
	addr := serve(t, srv, &allowed)
	wantVerifier := ids(t, verifier)

	client := func(f certtest.Files) credentials.TransportCredentials {
		return source(t, f).ClientCredentials(wantVerifier)
	}
	routerCreds := client(ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: router}))
	past := time.Now().Add(-48 * time.Hour)
	for _, tc := range []struct {
		name   string
		creds  credentials.TransportCredentials
		method string
		want   codes.Code
	}{
		{"router", routerCreds, "ping", codes.OK},
		{"router health", routerCreds, "health", codes.OK},
		{"dns identity", client(ca.Write(t, dir, "ops", certtest.Leaf{DNS: []string{"ops.specd.test"}})), "ping", codes.OK},
		{"plaintext client", insecure.NewCredentials(), "ping", codes.Unavailable},
		{"plaintext health", insecure.NewCredentials(), "health", codes.Unavailable},
		{"wrong CA", client(other.Write(t, dir, "forged", certtest.Leaf{SPIFFE: router})), "ping", codes.Unavailable},
		{"expired", client(ca.Write(t, dir, "expired", certtest.Leaf{SPIFFE: router, NotBefore: past, NotAfter: past.Add(time.Hour)})), "ping", codes.Unavailable},
		{"not yet valid", client(ca.Write(t, dir, "early", certtest.Leaf{SPIFFE: router, NotBefore: time.Now().Add(time.Hour)})), "ping", codes.Unavailable},
		{"no client certificate", source(t, certtest.Files{CA: filepath.Join(dir, "router-ca.crt")}).ClientCredentials(wantVerifier), "ping", codes.Unavailable},
		{"unknown SPIFFE ID", client(ca.Write(t, dir, "intruder", certtest.Leaf{SPIFFE: td + "/intruder"})), "ping", codes.PermissionDenied},
		{"other trust domain", client(ca.Write(t, dir, "alien", certtest.Leaf{SPIFFE: "spiffe://elsewhere.test/router"})), "ping", codes.PermissionDenied},
		// Health is exempt from the identity check (Consul agents call it with their own
		// certificates), not from the CA.
		{"unknown SPIFFE ID health", client(ca.Write(t, dir, "intruder2", certtest.Leaf{SPIFFE: td + "/intruder"})), "health", codes.OK},
		{"server not who the client expects", source(t, certtest.Files{Cert: filepath.Join(dir, "router.crt"), Key: filepath.Join(dir, "router.key"), CA: filepath.Join(dir, "router-ca.crt")}).ClientCredentials(ids(t, draft)), "ping", codes.Unavailable},
		{"server from a CA the client does not trust", source(t, other.Write(t, dir, "r2", certtest.Leaf{SPIFFE: router})).ClientCredentials(wantVerifier), "ping", codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := call(t, addr, tc.creds, tc.method); got != tc.want {
				t.Errorf("call as %s = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// records is a slog.Handler that hands each record to the test.
type records chan slog.Record

func (r records) Enabled(context.Context, slog.Level) bool { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error {
	r <- rec.Clone()
	return nil
}
func (r records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r records) WithGroup(string) slog.Handler      { return r }

// TestRefusalLogged: a refused call is logged with the caller's identity and the
// method, and a burst of refusals once.
func TestRefusalLogged(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "specd test CA")
	logs := make(records, 10)
	allowed := ids(t, router)
	addr := serveLogged(t, source(t, ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})), &allowed, slog.New(logs))
	creds := source(t, ca.Write(t, dir, "intruder", certtest.Leaf{SPIFFE: td + "/intruder"})).ClientCredentials(ids(t, verifier))
	for range 3 {
		if code, _ := call(t, addr, creds, "ping"); code != codes.PermissionDenied {
			t.Fatalf("intruder: %v, want PermissionDenied", code)
		}
	}
	if len(logs) != 1 {
		t.Fatalf("%d records after 3 refusals within %v, want 1", len(logs), services.RefusalLogEvery)
	}
	rec := <-logs
	got := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value.String(); return true })
	if rec.Message != "tls: call refused" || got["peer"] != td+"/intruder@ip:127.0.0.1" || got["method"] != "/tlsconftest.Ping/Ping" {
		t.Errorf("record %q %v: want the refusal naming the caller and the method", rec.Message, got)
	}
}

// TestServerOnly: without a CA the server asks for no client certificate, and a
// client without an identity list checks the host it dialled as HTTPS does — a DNS
// name against the DNS SANs, an IP address against the IP SANs.
func TestServerOnly(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "specd test CA")
	f := ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: router, DNS: []string{"localhost"}, IPs: []string{"127.0.0.1"}})
	addr := serve(t, source(t, certtest.Files{Cert: f.Cert, Key: f.Key}), nil)
	anyClient := source(t, certtest.Files{CA: f.CA})
	_, port, _ := net.SplitHostPort(addr)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if got, _ := call(t, net.JoinHostPort(host, port), anyClient.ClientCredentials(tlsconf.Identities{}), "ping"); got != codes.OK {
			t.Errorf("server-only TLS, client dialling %s, named in the certificate = %v, want OK", host, got)
		}
	}
	// A server on the address dialled whose certificate, from the trusted CA, names
	// other hosts: a draft's certificate where the client dialled the router, say.
	// Dialled by IP address the TLS client sends no server name (SNI), so there is no
	// name in the connection state to check: the check must use the address dialled.
	g := ca.Write(t, dir, "elsewhere", certtest.Leaf{SPIFFE: draft, DNS: []string{"draft.example"}, IPs: []string{"10.9.9.9"}})
	other := serve(t, source(t, certtest.Files{Cert: g.Cert, Key: g.Key}), nil)
	_, port, _ = net.SplitHostPort(other)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if got, _ := call(t, net.JoinHostPort(host, port), anyClient.ClientCredentials(tlsconf.Identities{}), "ping"); got != codes.Unavailable {
			t.Errorf("dialling %s, a host the certificate does not name = %v, want Unavailable", host, got)
		}
	}
}

// TestRotation: rewriting the files changes what new connections see, without a
// restart; a rewrite that does not load keeps the old material.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "specd test CA")
	f := ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})
	srv := source(t, f)
	allowed := ids(t, router)
	addr := serve(t, srv, &allowed)
	rf := ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: router})
	cli := source(t, rf)
	creds := cli.ClientCredentials(ids(t, verifier))

	code, first := call(t, addr, creds, "ping")
	if code != codes.OK {
		t.Fatalf("before rotation: %v", code)
	}
	ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})
	code, second := call(t, addr, creds, "ping")
	if code != codes.OK || second == nil || second.Cmp(first) == 0 {
		t.Fatalf("after rotation: code %v, serial %v, want OK and a serial other than %v", code, second, first)
	}

	// A certificate written without its key does not load: the server keeps serving
	// the last good pair.
	c, _ := ca.Issue(t, certtest.Leaf{SPIFFE: verifier})
	certtest.WriteFile(t, f.Cert, c)
	if code, got := call(t, addr, creds, "ping"); code != codes.OK || got.Cmp(second) != 0 {
		t.Errorf("after a half-written rotation: code %v, serial %v, want OK and %v", code, got, second)
	}

	// Rotating to a new CA: the server trusts only the new CA's clients; a client that
	// reloads its own files follows.
	next := certtest.NewCA(t, "next CA")
	next.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})
	if code, _ := call(t, addr, creds, "ping"); code != codes.Unavailable {
		t.Errorf("old CA's client after the server moved to a new CA = %v, want Unavailable", code)
	}
	next.Write(t, dir, "router", certtest.Leaf{SPIFFE: router})
	if code, _ := call(t, addr, creds, "ping"); code != codes.OK {
		t.Errorf("client after both moved to the new CA = %v, want OK", code)
	}
}

// TestReloadInterval: a Source looks at its files at most once per interval.
func TestReloadInterval(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "specd test CA")
	f := ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})
	src, err := tlsconf.NewSource(tlsconf.Files(f), time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	allowed := ids(t, router)
	addr := serve(t, src, &allowed)
	creds := source(t, ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: router})).ClientCredentials(ids(t, verifier))
	_, first := call(t, addr, creds, "ping")
	ca.Write(t, dir, "verifier", certtest.Leaf{SPIFFE: verifier})
	if code, got := call(t, addr, creds, "ping"); code != codes.OK || got.Cmp(first) != 0 {
		t.Errorf("within the reload interval: code %v, serial %v, want OK and the first serial %v", code, got, first)
	}
}

func TestNewSourceErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "specd test CA")
	f := ca.Write(t, dir, "v", certtest.Leaf{SPIFFE: verifier})
	g := ca.Write(t, dir, "w", certtest.Leaf{SPIFFE: verifier})
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files tlsconf.Files
	}{
		{"nothing", tlsconf.Files{}},
		{"cert without key", tlsconf.Files{Cert: f.Cert, CA: f.CA}},
		{"key without cert", tlsconf.Files{Key: f.Key}},
		{"missing file", tlsconf.Files{Cert: f.Cert, Key: filepath.Join(dir, "none.key")}},
		{"key of another certificate", tlsconf.Files{Cert: f.Cert, Key: g.Key}},
		{"CA with no certificate", tlsconf.Files{Cert: f.Cert, Key: f.Key, CA: junk}},
		{"certificate not PEM", tlsconf.Files{Cert: junk, Key: f.Key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tlsconf.NewSource(tc.files, 0, quiet); !errors.Is(err, tlsconf.ErrConfig) {
				t.Errorf("NewSource(%+v) = %v, want ErrConfig", tc.files, err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	ca := certtest.NewCA(t, "specd test CA")
	leaf := func(l certtest.Leaf) *x509.Certificate {
		c, _ := ca.Issue(t, l)
		b, _ := pem.Decode(c)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	rtr := leaf(certtest.Leaf{SPIFFE: router, DNS: []string{"specd-router.specd.svc"}})
	wild := leaf(certtest.Leaf{DNS: []string{"*.specd.svc"}, IPs: []string{"10.1.2.3"}})
	for _, tc := range []struct {
		list []string
		cert *x509.Certificate
		ok   bool
	}{
		{[]string{router}, rtr, true},
		{[]string{verifier}, rtr, false},
		{[]string{td}, rtr, true},
		{[]string{"spiffe://other.test"}, rtr, false},
		{[]string{"*"}, rtr, true},
		{nil, rtr, false},
		{[]string{"specd-router.specd.svc"}, rtr, true},
		{[]string{"SPECD-ROUTER.specd.svc"}, rtr, true},
		{[]string{"specd-draft.specd.svc"}, rtr, false},
		{[]string{"specd-draft.specd.svc"}, wild, true},
		{[]string{"10.1.2.3"}, wild, true},
		{[]string{router}, wild, false},
	} {
		err := ids(t, tc.list...).Match(tc.cert)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, tlsconf.ErrIdentity)) {
			t.Errorf("Identities(%q).Match(%s) = %v, want ok %v", tc.list, tlsconf.Name(tc.cert), err, tc.ok)
		}
	}
}

func TestParseIdentities(t *testing.T) {
	for _, bad := range []string{"spiffe://", "spiffe://UPPER.test/x", "spiffe://td/a//b", "https://router", "router..svc", "a b", "spiffe://td/x?y=1"} {
		if _, err := tlsconf.ParseIdentities([]string{bad}); err == nil {
			t.Errorf("ParseIdentities(%q) = nil error, want one", bad)
		}
	}
	p, err := tlsconf.ParseIdentities([]string{" " + router + " ", "", td, "*.specd.svc", "::1", "*"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), router+","+td+",*.specd.svc,::1,*"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if empty, _ := tlsconf.ParseIdentities([]string{" ", ""}); !empty.Empty() || empty.String() != "(nobody)" {
		t.Errorf("ParseIdentities of blanks = %v, want empty", empty)
	}
}

// FuzzParseIdentities: any flag value parses or fails with an error, never a panic,
// and a parsed list prints back entries that parse again to the same list.
func FuzzParseIdentities(f *testing.F) {
	for _, s := range []string{router, td, "*", "specd-router.specd.svc", "*.specd.svc", "10.0.0.1", "::1", "spiffe://td/a%2Fb", "spiffe:///x", "spiffe://td/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := tlsconf.ParseIdentities([]string{s})
		if err != nil {
			return
		}
		q, err := tlsconf.ParseIdentities([]string{p.String()})
		if p.Empty() {
			return
		}
		if err != nil || q.String() != p.String() {
			t.Errorf("ParseIdentities(%q) = %v, which parses again as %v, %v", s, p, q, err)
		}
	})
}

// BenchmarkHandshake: a new mTLS connection and one call, with the server looking at
// its files on every handshake (reload -1) and at most every DefaultReload.
func BenchmarkHandshake(b *testing.B) {
	for _, reload := range []time.Duration{-1, tlsconf.DefaultReload} {
		name := "reload=" + reload.String()
		if reload < 0 {
			name = "reload=every-handshake"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			ca := certtest.NewCA(b, "bench CA")
			src, err := tlsconf.NewSource(tlsconf.Files(ca.Write(b, dir, "verifier", certtest.Leaf{SPIFFE: verifier})), reload, quiet)
			if err != nil {
				b.Fatal(err)
			}
			allowed := ids(b, router)
			addr := serve(b, src, &allowed)
			creds := source(b, ca.Write(b, dir, "router", certtest.Leaf{SPIFFE: router})).ClientCredentials(ids(b, verifier))
			for b.Loop() {
				if code, _ := call(b, addr, creds, "ping"); code != codes.OK {
					b.Fatal(code)
				}
			}
		})
	}
}
