package serve_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/certtest"
	"github.com/specd-dev/specd/internal/testkeys"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
	"github.com/specd-dev/specd/services/cors"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/tlsconf"
)

// TestOpenAIFrontDoorSecured: with TLS on the router, the front door serves HTTPS from
// the router's certificate, and with its CA admits only clients whose certificate has
// an identity the gRPC API admits — checked in the handshake. API keys hold on it as on
// gRPC: the official client with a trusted certificate but no key gets 401, and with
// the key its greedy completion equals gRPC's Complete. A client without a
// certificate and one with an identity outside the list fail in the handshake; plain
// HTTP gets 400 (or a reset).
func TestOpenAIFrontDoorSecured(t *testing.T) {
	const key = "specd_front-door-secret-for-tests"
	path := filepath.Join(t.TempDir(), "keys.txt")
	testkeys.Write(t, path, testkeys.Line("app", key, ""), 0)
	keys, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := certtest.NewCA(t, "front door CA")
	rf := ca.Write(t, dir, "router", certtest.Leaf{SPIFFE: routerID, IPs: []string{"127.0.0.1"}})
	rsrc, err := tlsconf.NewSource(tlsconf.Files(rf), 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	certs := meshCerts{dir: dir, ca: ca}
	client := certs.source(t, "client", clientID)
	s := startStackWith(t, stackOptions{http: true, keys: keys, apiKey: key,
		rtls:  &serve.TLS{Source: rsrc, Allow: identities(t, clientID), PlainDial: true}, // verifier and draft listen plaintext on loopback
		creds: grpc.WithTransportCredentials(client.ClientCredentials(identities(t, routerID)))})

	// The identity check comes before the key check: a certificate the API does not
	// admit is refused as such, key or no key.
	stranger := certs.source(t, "stranger-grpc", trustDomain+"/stranger")
	scc, err := services.Dial(s.router, grpc.WithTransportCredentials(stranger.ClientCredentials(identities(t, routerID))))
	if err != nil {
		t.Fatal(err)
	}
	defer scc.Close()
	if _, err := specdv1.NewGenerationServiceClient(scc).Complete(context.Background(), &specdv1.GenerateRequest{Prompt: "x", MaxTokens: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC from an identity outside --tls-peers, no key: %v, want PERMISSION_DENIED", err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	as := func(cert *tls.Certificate) *http.Client {
		c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true}, Timeout: 2 * time.Minute}
	}
	pair := func(name, id string) *tls.Certificate {
		f := ca.Write(t, dir, name, certtest.Leaf{SPIFFE: id})
		p, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	trusted := pair("http-client", clientID)
	openaiAs := func(hc *http.Client, apiKey string) openai.Client {
		return openai.NewClient(option.WithBaseURL(s.http), option.WithAPIKey(apiKey), option.WithHTTPClient(hc), option.WithMaxRetries(0))
	}
	var oc openai.Client
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	params := completionParams("Once upon a time", 24, 0)

	oc = openaiAs(as(trusted), key)
	got, err := oc.Completions.New(ctx, params)
	if err != nil {
		t.Fatalf("trusted certificate and key: %v", err)
	}
	want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 24})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Choices) != 1 || got.Choices[0].Text != want.GetText() {
		t.Errorf("HTTPS completion %+v, want the text of gRPC's Complete %q", got.Choices, want.GetText())
	}

	oc = openaiAs(as(trusted), "specd_not-a-key")
	_, err = oc.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("trusted certificate, wrong key: %v, want HTTP 401", err)
	}

	for _, c := range []struct {
		name string
		base string
		hc   *http.Client
	}{
		{"no client certificate", s.http, as(nil)},
		{"an identity the API does not admit", s.http, as(pair("stranger", trustDomain+"/stranger"))},
	} {
		oc := openai.NewClient(option.WithBaseURL(c.base), option.WithAPIKey(key), option.WithHTTPClient(c.hc), option.WithMaxRetries(0))
		_, err := oc.Completions.New(ctx, params)
		if err == nil || errors.As(err, &apiErr) {
			t.Errorf("%s: %v, want a failed TLS handshake, before any HTTP status", c.name, err)
		}
	}
	// Plain HTTP gets Go's TLS server's answer to it, 400, or a reset if that answer
	// races the request's body.
	oc = openai.NewClient(option.WithBaseURL("http"+s.http[len("https"):]), option.WithAPIKey(key), option.WithMaxRetries(0))
	if _, err := oc.Completions.New(ctx, params); err == nil || errors.As(err, &apiErr) && apiErr.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the HTTPS front door: %v, want HTTP 400 or a reset", err)
	}
}

// TestFrontDoorFailureStopsRouter: a front door whose listener fails takes the router
// down with an error naming it, instead of leaving gRPC serving while --http-listen is
// dead.
func TestFrontDoorFailureStopsRouter(t *testing.T) {
	hl := freeListener(t)
	hl.Close() // Serve fails at once
	rl := freeListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := serve.Router(ctx, serve.RouterConfig{Verifiers: []string{"127.0.0.1:1"}, Log: quiet, HTTP: &serve.HTTPConfig{Listener: hl}}, rl)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "openai front door") {
		t.Fatalf("Router with a dead front door returned %v (ctx %v), want an error naming the front door before the deadline", err, ctx.Err())
	}
}

// TestFrontDoorCORS: with CORS origins configured, both APIs on the listener answer a
// browser's preflight from an allowed origin and name it on their answers; another
// origin's requests, preflight or not, are refused, and without the policy every
// request from a page is (a request without Origin is served either way).
func TestFrontDoorCORS(t *testing.T) {
	p, err := cors.Parse([]string{"http://localhost:*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range []*cors.Policy{p, nil} {
		hl, rl := freeListener(t), freeListener(t)
		base := "http://" + hl.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- serve.Router(ctx, serve.RouterConfig{Verifiers: []string{"127.0.0.1:1"}, Log: quiet, HTTP: &serve.HTTPConfig{Listener: hl, CORS: policy, AllowedHosts: []string{"chat.example.com"}}}, rl)
		}()
		do := func(method, path, origin string, preflight bool) *http.Response {
			t.Helper()
			for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
				req, _ := http.NewRequest(method, base+path, nil)
				req.Header.Set("Origin", origin)
				if preflight {
					req.Header.Set("Access-Control-Request-Method", "POST")
					req.Header.Set("Access-Control-Request-Headers", "content-type")
				}
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					return resp
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("%s %s: %v", method, path, err)
				}
			}
		}
		for _, path := range []string{"/api/chat", "/v1/chat/completions"} {
			resp := do("OPTIONS", path, "http://localhost:5173", true)
			allow := resp.Header.Get("Access-Control-Allow-Origin")
			if policy != nil && (resp.StatusCode != http.StatusNoContent || allow != "http://localhost:5173") {
				t.Errorf("preflight of %s: %d, Allow-Origin %q; want 204 naming the origin", path, resp.StatusCode, allow)
			}
			if policy == nil && (resp.StatusCode != http.StatusForbidden || allow != "") {
				t.Errorf("without a policy, preflight of %s: %d, Allow-Origin %q; want 403 and no CORS header", path, resp.StatusCode, allow)
			}
		}
		// A page's simple POST needs no preflight: refused before it reaches the API
		// (which would answer 400 for the empty body).
		if resp := do("POST", "/api/generate", "https://evil.example", false); resp.StatusCode != http.StatusForbidden {
			t.Errorf("another origin's POST /api/generate: %d, want 403", resp.StatusCode)
		}
		if resp := do("GET", "/api/version", "", false); resp.StatusCode != 200 {
			t.Errorf("GET /api/version without Origin: %d, want 200", resp.StatusCode)
		}
		// A page of a name its attacker's DNS points at 127.0.0.1 (DNS rebinding) is,
		// to the browser, same-origin: no Origin, only its Host. Refused on both APIs
		// whatever the policy; the name the operator listed is served.
		for host, want := range map[string]int{"attacker.example:" + strings.Split(hl.Addr().String(), ":")[1]: http.StatusForbidden, "chat.example.com": 200} {
			for _, path := range []string{"/api/tags", "/v1/models"} {
				req, _ := http.NewRequest("GET", base+path, nil)
				req.Host = host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusForbidden != (want == http.StatusForbidden) {
					t.Errorf("GET %s with Host %s: %d, want %s", path, host, resp.StatusCode, map[bool]string{true: "403", false: "not 403"}[want == http.StatusForbidden])
				}
			}
		}
		if policy != nil {
			if resp := do("OPTIONS", "/api/chat", "https://evil.example", true); resp.StatusCode != http.StatusForbidden {
				t.Errorf("another origin's preflight: %d, want 403", resp.StatusCode)
			}
			if resp := do("GET", "/api/version", "http://localhost:5173", false); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
				t.Errorf("GET /api/version from an allowed origin: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Router: %v", err)
		}
	}
}
