package serve_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/certtest"
	"github.com/specd-dev/specd/internal/consultest"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/tlsconf"
	"github.com/specd-dev/specd/services/verifiersvc"
)

const (
	trustDomain = "spiffe://specd.test"
	routerID    = trustDomain + "/router"
	verifierID  = trustDomain + "/verifier"
	draftID     = trustDomain + "/draft"
	clientID    = trustDomain + "/client"
)

// meshCerts issues every party's certificate from one CA.
type meshCerts struct {
	dir string
	ca  *certtest.CA
}

func (m meshCerts) source(t *testing.T, name, id string, dns ...string) *tlsconf.Source {
	t.Helper()
	f := m.ca.Write(t, m.dir, name, certtest.Leaf{SPIFFE: id, DNS: dns})
	src, err := tlsconf.NewSource(tlsconf.Files(f), 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func identities(t *testing.T, list ...string) tlsconf.Identities {
	t.Helper()
	p, err := tlsconf.ParseIdentities(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMTLSMesh: router, verifier and draft on loopback speak only mTLS, each admitting
// the identities of the default policy (the verifier the router; the draft the verifier
// and the router; the router any client of the CA). Verifier and draft register in
// Consul with TLS health checks, which the agent (a fake that dials them for real,
// presenting a certificate of its own) runs over TLS; the router and the verifier
// discover each other through it. A speculative request through the router uses the
// draft and matches plain decoding; callers outside the policy get the codes a client
// sees: UNAVAILABLE for a plaintext client or a certificate the server does not trust,
// PERMISSION_DENIED for a trusted certificate with an identity the service does not
// admit.
func TestMTLSMesh(t *testing.T) {
	certs := meshCerts{dir: t.TempDir(), ca: certtest.NewCA(t, "specd mesh CA")}
	routerTLS := &serve.TLS{Source: certs.source(t, "router", routerID), Allow: tlsconf.AnyIdentity, Dial: identities(t, verifierID), DialDraft: identities(t, draftID)}
	verifierTLS := &serve.TLS{Source: certs.source(t, "verifier", verifierID, "verifier.specd.test"), Allow: identities(t, routerID), Dial: identities(t, draftID)}
	draftTLS := &serve.TLS{Source: certs.source(t, "draft", draftID, "draft.specd.test"), Allow: identities(t, verifierID, routerID)}

	agentCert, agentKey := certs.ca.Issue(t, certtest.Leaf{SPIFFE: trustDomain + "/consul"})
	pair, err := tls.X509KeyPair(agentCert, agentKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs.ca.Cert)
	agent := consultest.New(t, consultest.Options{DialChecks: true, TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := goServe(t, &wg)
	eng := services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64}
	vl, dl, rl := freeListener(t), freeListener(t), freeListener(t)
	watch := func(roles ...router.Role) *consul.WatchConfig {
		w := &consul.WatchConfig{Addr: agent.Addr(), Wait: 2 * time.Second, Services: map[router.Role]string{}, TLS: new(true)}
		for _, r := range roles {
			w.Services[r] = "specd-" + string(r)
		}
		return w
	}
	drafts, stopDrafts, err := serve.Discover(ctx, router.Draft, nil, watch(router.Draft), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDrafts)
	run(func() error {
		reg := &serve.Consul{Addr: agent.Addr(), CheckInterval: time.Second, UpdateEvery: time.Second, TLSServerName: "verifier.specd.test"}
		return serve.Verifier(ctx, serve.Worker{Load: loader(t, "specd-target-q8_0"), Engine: eng, Log: quiet, Consul: reg, TLS: verifierTLS},
			verifiersvc.Config{Drafts: drafts}, vl)
	})
	run(func() error {
		reg := &serve.Consul{Addr: agent.Addr(), CheckInterval: time.Second, UpdateEvery: time.Second, TLSServerName: "draft.specd.test"}
		return serve.Draft(ctx, serve.Worker{Load: loader(t, "specd-draft-q8_0"), Engine: eng, Log: quiet, Consul: reg, TLS: draftTLS}, draftsvc.Config{Depth: 2}, dl)
	})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Log: quiet, Consul: watch(router.Verifier, router.Draft), TLS: routerTLS}, rl)
	})

	dial := func(addr string, opt grpc.DialOption) *grpc.ClientConn {
		cc, err := services.Dial(addr, opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	as := func(name, id string, want ...string) grpc.DialOption {
		return grpc.WithTransportCredentials(certs.source(t, name, id).ClientCredentials(identities(t, want...)))
	}
	client := specdv1.NewGenerationServiceClient(dial(rl.Addr().String(), as("client", clientID, routerID)))
	// Both appear once the agent's TLS health checks pass and the router has read their
	// Info over mTLS.
	waitModels(t, client, 2)
	for _, id := range []string{"specd-verifier-" + vl.Addr().String(), "specd-draft-" + dl.Addr().String()} {
		svc, ok := agent.Service(id)
		if !ok || svc.Meta[consul.MetaTLS] != "true" || len(svc.Checks) != 1 || !svc.Checks[0].GRPCUseTLS || svc.Checks[0].Status != consultest.Passing {
			t.Errorf("registration %s: %+v: want meta tls=true and one passing TLS gRPC check", id, svc)
		}
	}

	s := &stack{client: client, target: loadTarget(t)}
	text := "Once upon a time, a little fox"
	want := s.plain(t, text, 48, sample.Params{})
	waitDraftView(t, drafts)
	// A draft that has just started may propose after a short request ends: retry until
	// one request sees it.
	for deadline := time.Now().Add(60 * time.Second); ; {
		r, err := s.generate(context.Background(), request(text, 48, 0, 0, 4))
		if err != nil {
			t.Fatalf("Generate over mTLS: %v", err)
		}
		if !slices.Equal(r.ids, want) {
			t.Fatalf("Generate over mTLS: %v, want plain decoding's %v", r.ids, want)
		}
		if r.final.GetStats().GetDraftedTokens() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no request over mTLS was drafted for")
		}
	}

	other := meshCerts{dir: t.TempDir(), ca: certtest.NewCA(t, "another CA")}
	info := func(addr string, opt grpc.DialOption, role router.Role) codes.Code {
		cc := dial(addr, opt)
		ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer icancel()
		var err error
		if role == router.Draft {
			_, err = speculationv1.NewDraftServiceClient(cc).Info(ictx, &speculationv1.InfoRequest{})
		} else {
			_, err = speculationv1.NewVerifierServiceClient(cc).Info(ictx, &speculationv1.InfoRequest{})
		}
		return status.Code(err)
	}
	v, d, r := vl.Addr().String(), dl.Addr().String(), rl.Addr().String()
	for _, tc := range []struct {
		name string
		addr string
		role router.Role
		opt  grpc.DialOption
		want codes.Code
	}{
		{"router calls verifier", v, router.Verifier, as("router", routerID, verifierID), codes.OK},
		{"verifier calls draft", d, router.Draft, as("verifier", verifierID, draftID), codes.OK},
		{"router calls draft", d, router.Draft, as("router", routerID, draftID), codes.OK},
		{"public client calls verifier", v, router.Verifier, as("client", clientID, verifierID), codes.PermissionDenied},
		{"public client calls draft", d, router.Draft, as("client", clientID, draftID), codes.PermissionDenied},
		{"draft calls verifier", v, router.Verifier, as("draft", draftID, verifierID), codes.PermissionDenied},
		{"plaintext to verifier", v, router.Verifier, grpc.WithTransportCredentials(insecure.NewCredentials()), codes.Unavailable},
		{"plaintext to draft", d, router.Draft, grpc.WithTransportCredentials(insecure.NewCredentials()), codes.Unavailable},
		{"router identity from another CA", v, router.Verifier, grpc.WithTransportCredentials(other.source(t, "router", routerID).ClientCredentials(identities(t, verifierID))), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := info(tc.addr, tc.opt, tc.role); got != tc.want {
				t.Errorf("%s: Info = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	_, err = specdv1.NewGenerationServiceClient(dial(r, grpc.WithTransportCredentials(insecure.NewCredentials()))).ListModels(pctx, &specdv1.ListModelsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client to the router: %v, want Unavailable", err)
	}
}
