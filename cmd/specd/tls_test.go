package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/certtest"
	"github.com/specd-dev/specd/internal/testmodels"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/tlsconf"
)

// TestPlaintextOnlyOnLoopback: every service refuses to start plaintext on an address
// other than loopback unless told --insecure-plaintext, and refuses TLS flags that
// cannot work, before it loads anything.
func TestPlaintextOnlyOnLoopback(t *testing.T) {
	dir := t.TempDir()
	f := certtest.NewCA(t, "cmd test CA").Write(t, dir, "svc", certtest.Leaf{SPIFFE: defaultVerifierID})
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"verifier", "--listen=0.0.0.0:0"}, "--insecure-plaintext"},
		{[]string{"draft", "--listen=:7072"}, "not a loopback address"},
		{[]string{"router", "--listen=10.1.2.3:7070"}, "not a loopback address"},
		{[]string{"router", "--listen=specd-router:7070"}, "not a loopback address"},
		{[]string{"up", "--listen=0.0.0.0:0"}, "not a loopback address"},
		{[]string{"router", "--http-listen=0.0.0.0:0"}, "--http-listen 0.0.0.0:0 is not a loopback address"},
		{[]string{"up", "--http-listen=:8080"}, "--http-listen :8080 is not a loopback address"},
		{[]string{"verifier", "--listen=0.0.0.0:0", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key}, "--tls-ca: a verifier admits only"},
		{[]string{"draft", "--tls-cert=" + f.Cert, "--tls-ca=" + f.CA}, "--tls-cert and --tls-key go together"},
		{[]string{"router", "--listen=0.0.0.0:0", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-peers=" + defaultRouterID}, "--tls-peers needs --tls-ca"},
		{[]string{"router", "--listen=0.0.0.0:0", "--insecure-plaintext", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key}, "choose one"},
		{[]string{"verifier", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA, "--tls-peers=https://router"}, "--tls-peers"},
		{[]string{"verifier", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA, "--tls-router-id=spiffe://"}, "--tls-router-id"},
		{[]string{"generate", "--tls-server-id=" + defaultRouterID, "-p", "x"}, "--tls-server-id needs --tls-ca"},
		{[]string{"generate", "--tls", "--tls-server-id=" + defaultRouterID, "-p", "x"}, "--tls-server-id needs --tls-ca"},
		// Flags a service would ignore are not there: identities it neither admits nor
		// dials, and up's internal links.
		{[]string{"router", "--tls-router-id=" + defaultRouterID}, "not defined: -tls-router-id"},
		{[]string{"verifier", "--tls-verifier-id=" + defaultVerifierID}, "not defined: -tls-verifier-id"},
		{[]string{"draft", "--tls-draft-id=" + defaultDraftID}, "not defined: -tls-draft-id"},
		{[]string{"up", "--tls-draft-id=" + defaultDraftID}, "not defined: -tls-draft-id"},
		{[]string{"up", "--upstream-plaintext"}, "not defined: -upstream-plaintext"},
		{[]string{"up", "--consul-check-tls-skip-verify"}, "without Consul"},
		{[]string{"draft", "--consul=127.0.0.1:8500", "--consul-check-tls-skip-verify"}, "need --tls-cert"},
		{[]string{"router", "--upstream-plaintext"}, "--upstream-plaintext needs --tls-cert"},
		{[]string{"router", "--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--upstream-plaintext", "--verifiers=10.0.0.5:7071"}, "not a loopback address"},
	} {
		_, stderr, code := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("specd %s: exit %d, stderr %q; want a failure saying %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

func TestTLSOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		o      tlsOptions
		ok     bool
	}{
		{"127.0.0.1:7071", tlsOptions{}, true},
		{"[::1]:7071", tlsOptions{}, true},
		{"localhost:7071", tlsOptions{}, true},
		{"127.9.9.9:7071", tlsOptions{}, true},
		{"0.0.0.0:7071", tlsOptions{}, false},
		{"[::]:7071", tlsOptions{}, false},
		{":7071", tlsOptions{}, false},
		{"0.0.0.0:7071", tlsOptions{plaintext: true}, true},
		{"127.0.0.1:7071", tlsOptions{peers: "*"}, false},
		// --tls-reload 0 would be the Source's default of 5 s, whatever the flag said.
		{"0.0.0.0:7071", tlsOptions{cert: "c", key: "k", ca: "a", routerID: defaultRouterID, draftID: defaultDraftID, reload: time.Second}, true},
		{"0.0.0.0:7071", tlsOptions{cert: "c", key: "k", ca: "a", routerID: defaultRouterID, draftID: defaultDraftID, reload: 0}, false},
		{"0.0.0.0:7071", tlsOptions{cert: "c", key: "k", ca: "a", routerID: defaultRouterID, draftID: defaultDraftID, reload: 2 * time.Hour}, false},
	} {
		tc.o.role = router.Verifier
		if err := tc.o.validate(tc.listen); (err == nil) != tc.ok {
			t.Errorf("validate(%q, %+v) = %v, want ok %v", tc.listen, tc.o, err, tc.ok)
		}
	}
}

// TestDefaultPolicy: who may call whom when only the role identities are configured.
func TestDefaultPolicy(t *testing.T) {
	ca := certtest.NewCA(t, "cmd test CA")
	leaf := func(id string) *x509.Certificate {
		c, _ := ca.Issue(t, certtest.Leaf{SPIFFE: id})
		b, _ := pem.Decode(c)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	client := "spiffe://specd.internal/someone"
	for _, tc := range []struct {
		role        router.Role
		calls, dial map[string]bool // identity → accepted
	}{
		{router.Verifier, map[string]bool{defaultRouterID: true, defaultDraftID: false, client: false}, map[string]bool{defaultDraftID: true, defaultVerifierID: false}},
		{router.Draft, map[string]bool{defaultRouterID: true, defaultVerifierID: true, client: false}, map[string]bool{defaultDraftID: false}},
		// The router's dials to verifiers; to drafts, see below.
		{router.Front, map[string]bool{client: true, defaultDraftID: true}, map[string]bool{defaultVerifierID: true, defaultDraftID: false, defaultRouterID: false}},
	} {
		o := tlsOptions{role: tc.role, ca: "ca.pem", routerID: defaultRouterID, verifierID: defaultVerifierID, draftID: defaultDraftID}
		allow, dial, err := o.identities()
		if err != nil {
			t.Fatal(err)
		}
		for id, want := range tc.calls {
			if got := allow.Match(leaf(id)) == nil; got != want {
				t.Errorf("%s admits %s = %v, want %v", tc.role, id, got, want)
			}
		}
		for id, want := range tc.dial {
			if got := dial.Match(leaf(id)) == nil; got != want {
				t.Errorf("%s accepts server %s = %v, want %v", tc.role, id, got, want)
			}
		}
	}
	o := tlsOptions{role: router.Front, ca: "ca.pem", routerID: defaultRouterID, verifierID: defaultVerifierID, draftID: defaultDraftID}
	drafts, err := o.draftDial()
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{defaultDraftID: true, defaultVerifierID: false, defaultRouterID: false} {
		if got := drafts.Match(leaf(id)) == nil; got != want {
			t.Errorf("the router accepts %s as a draft = %v, want %v", id, got, want)
		}
	}
}

// TestRouterRefusesDraftAsVerifier: a verifier presenting a draft's certificate (a
// draft, or its stolen key, registered at a verifier's address) is refused by the
// router's TLS handshake, so the router never sends it a prompt: with no other
// verifier the request is UNAVAILABLE; the router's log names the identity refused,
// the client's status does not (the cluster's identities are not the client's).
func TestRouterRefusesDraftAsVerifier(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "cmd test CA")
	flags := func(f certtest.Files) []string {
		return []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
	}
	imposter := ca.Write(t, dir, "imposter", certtest.Leaf{SPIFFE: defaultDraftID})
	vaddr, stopV := startService(t, append([]string{"verifier", "-m", "specd-target-q8_0", "--drafts=", "--kv-budget=8388608"}, flags(imposter)...),
		`verifier serving.* addr=(\S+)`)
	defer stopV()
	rf := ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: defaultRouterID})
	raddr, stopR, rlog := startCommandLog(t, append([]string{"router", "--verifiers=" + vaddr, "--drafts="}, flags(rf)...), `router serving.* addr=(\S+)`)
	defer stopR()

	cc := tlsClient(t, ca.Write(t, dir, "client", certtest.Leaf{SPIFFE: "spiffe://specd.internal/client"}), raddr, defaultRouterID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := specdv1.NewGenerationServiceClient(cc).Complete(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 4})
	if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), defaultDraftID) {
		t.Errorf("a request whose only verifier presents a draft's certificate: %v, want UNAVAILABLE not naming %s", err, defaultDraftID)
	}
	if l := rlog.String(); !strings.Contains(l, "request failed") || !strings.Contains(l, defaultDraftID) {
		t.Errorf("the router's log does not name the refused identity %s:\n%s", defaultDraftID, l)
	}
}

// TestHealthProbe: `specd health` is an exec probe for an mTLS service (a real draft
// here): SERVING with the pod's own certificate; a failure without it, for a service
// name the server does not serve, or when the server is not the identity expected.
func TestHealthProbe(t *testing.T) {
	dir := t.TempDir()
	f := certtest.NewCA(t, "cmd test CA").Write(t, dir, "draft", certtest.Leaf{SPIFFE: defaultDraftID})
	tlsArgs := []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
	addr, stop := startService(t, append([]string{"draft", "--kv-budget=8388608"}, tlsArgs...), `draft serving.* addr=(\S+)`)
	defer stop()
	probe := func(extra ...string) int {
		_, _, code := run(t, append([]string{"health", "--addr=" + addr}, extra...)...)
		return code
	}
	withID := append(tlsArgs, "--tls-server-id="+defaultDraftID)
	if code := probe(append(withID, "--service=specd.speculation.v1.DraftService")...); code != 0 {
		t.Errorf("health with the pod's certificate: exit %d, want 0", code)
	}
	if code := probe(append(withID, "--service=specd.v1.GenerationService")...); code == 0 {
		t.Errorf("health of a service the draft does not serve: exit 0, want a failure")
	}
	if code := probe(); code == 0 {
		t.Errorf("health in plaintext against an mTLS service: exit 0, want a failure")
	}
	if code := probe("--tls-ca="+f.CA, "--tls-server-id="+defaultDraftID); code == 0 {
		t.Errorf("health without a client certificate: exit 0, want a failure")
	}
	if code := probe(append(tlsArgs, "--tls-server-id="+defaultVerifierID)...); code == 0 {
		t.Errorf("health expecting another server identity: exit 0, want a failure")
	}
}

// tlsClient dials target over mTLS with the certificate f, accepting a server whose
// identity is want, until the test ends.
func tlsClient(t *testing.T, f certtest.Files, target, want string) *grpc.ClientConn {
	t.Helper()
	src, err := tlsconf.NewSource(tlsconf.Files(f), 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tlsconf.ParseIdentities([]string{want})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := services.Dial(target, grpc.WithTransportCredentials(src.ClientCredentials(ids)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// startService runs `specd ARGS --listen=127.0.0.1:0` in-process with the shared
// models until stop is called, and returns the address its log line (matched by
// served, whose group is the address) reports.
func startService(t *testing.T, args []string, served string) (addr string, stop func()) {
	t.Helper()
	return startCommand(t, append(args, "--models="+filepath.Dir(testmodels.ForTest(t, "specd-draft-q8_0")), "--threads=1"), served)
}

// startCommand is startService for a command that loads no model (a router).
func startCommand(t *testing.T, args []string, served string) (addr string, stop func()) {
	t.Helper()
	addr, stop, _ = startCommandLog(t, args, served)
	return addr, stop
}

// startCommandLog is startCommand that also returns the command's log.
func startCommandLog(t *testing.T, args []string, served string) (addr string, stop func(), log *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	args = append(args, "--listen=127.0.0.1:0", "--log-format=text")
	go func() { done <- realMain(ctx, args, io.Discard, stderr) }()
	stop = func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("specd %s exited %d: %s", args[0], code, stderr.String())
		}
	}
	re := regexp.MustCompile(served)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], stop, stderr
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("specd %s never served: %s", args[0], stderr.String())
		}
	}
}

// TestUpTLS: `specd up` with TLS serves its public API over mTLS from the operator's
// files, and links its verifier and draft with a CA of its own: a request is drafted
// for, and neither a plaintext client nor one with the operator's certificates gets
// past the verifier's loopback port.
func TestUpTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("loads both models")
	}
	dir := t.TempDir()
	ca := certtest.NewCA(t, "operator CA")
	srv := ca.Write(t, dir, "up", certtest.Leaf{SPIFFE: defaultRouterID})
	cli := ca.Write(t, dir, "client", certtest.Leaf{SPIFFE: "spiffe://specd.internal/client"})
	ups, stop := startService(t, []string{"up", "--tls-cert=" + srv.Cert, "--tls-key=" + srv.Key, "--tls-ca=" + srv.CA},
		`specd up: serving \S+ on (\S+ \(verifier \S+ on \S+), draft`)
	defer stop()
	addr, verifierAddr, _ := strings.Cut(ups, " (verifier ")
	verifierAddr = verifierAddr[strings.LastIndex(verifierAddr, " ")+1:]

	gen := specdv1.NewGenerationServiceClient(tlsClient(t, cli, addr, defaultRouterID))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := collect(rctx, gen, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 48}, nil)
		rcancel()
		if err == nil && res.Drafted > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("up over TLS: %v, %+v: want a drafted request", err, res)
		}
	}
	// The client command over mTLS.
	if _, stderr, code := run(t, "generate", "--addr="+addr, "--tls-ca="+cli.CA, "--tls-cert="+cli.Cert, "--tls-key="+cli.Key,
		"--tls-server-id="+defaultRouterID, "-p", "Once upon a time", "-n", "8"); code != 0 {
		t.Errorf("specd generate over mTLS: exit %d: %s", code, stderr)
	}
	if _, _, code := run(t, "generate", "--addr="+addr, "-p", "Once upon a time", "-n", "8", "--timeout=5s"); code == 0 {
		t.Error("specd generate in plaintext against up with TLS: exit 0, want a failure")
	}
	ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer icancel()
	plain, err := services.Dial(verifierAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := speculationv1.NewVerifierServiceClient(plain).Info(ictx, &speculationv1.InfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext to up's verifier: %v, want Unavailable", err)
	}
	operator := speculationv1.NewVerifierServiceClient(tlsClient(t, srv, verifierAddr, "*"))
	if _, err := operator.Info(ictx, &speculationv1.InfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("the operator's certificate to up's verifier: %v, want Unavailable", err)
	}
}
