package serve_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/consultest"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestConsulDiscovery: verifier and draft register themselves in Consul (a fake agent
// that dials their gRPC health checks for real); the router finds both through blocking
// queries and speculates; with Consul stopped, requests are still routed on the last
// view, with the same greedy output; a verifier that deregisters (graceful stop) leaves
// the view.
func TestConsulDiscovery(t *testing.T) {
	agent := consultest.New(t, consultest.Options{DialChecks: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := goServe(t, &wg)
	eng := services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64}
	reg := &serve.Consul{Addr: agent.Addr(), CheckInterval: time.Second, UpdateEvery: time.Second}
	vl, dl, rl := freeListener(t), freeListener(t), freeListener(t)
	vctx, stopVerifier := context.WithCancel(ctx)
	// The verifier dials only the drafts of its own Consul view.
	drafts, stopDrafts, err := serve.Discover(ctx, router.Draft, nil, &consul.WatchConfig{Addr: agent.Addr(), Wait: 2 * time.Second,
		Services: map[router.Role]string{router.Draft: "specd-draft"}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDrafts)
	run(func() error {
		return serve.Verifier(vctx, serve.Worker{Load: loader(t, "specd-target-q8_0"), Engine: eng, Log: quiet, Consul: reg}, verifiersvc.Config{Drafts: drafts}, vl)
	})
	run(func() error {
		return serve.Draft(ctx, serve.Worker{Load: loader(t, "specd-draft-q8_0"), Engine: eng, Log: quiet, Consul: reg}, draftsvc.Config{Depth: 2}, dl)
	})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Log: quiet, Consul: &consul.WatchConfig{Addr: agent.Addr(), Wait: 2 * time.Second,
			Services: map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"}}}, rl)
	})
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := specdv1.NewGenerationServiceClient(cc)
	// Both appear once their health checks pass.
	waitModels(t, client, 2)

	s := &stack{client: client, target: loadTarget(t)}
	text := "Once upon a time, a little fox"
	want := s.plain(t, text, 48, sample.Params{})
	// The verifier's view of drafts may trail the router's by a blocking query.
	waitDraftView(t, drafts)
	// On a loaded machine (CI's parallel packages under the race detector) the
	// verifier may finish a 48-token request, its prompt cached, before the draft's
	// first proposal arrives; so a few tries, each with plain decoding's output.
	check := func(what string) {
		t.Helper()
		for try := 1; ; try++ {
			r, err := s.generate(context.Background(), request(text, 48, 0, 0, 4))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if !slices.Equal(r.ids, want) {
				t.Fatalf("%s: output differs from plain decoding", what)
			}
			if r.final.GetStats().GetDraftedTokens() > 0 {
				return
			}
			if try == 5 {
				t.Fatalf("%s: no speculation through the discovered draft in %d requests", what, try)
			}
		}
	}
	check("through Consul")
	agent.Stop()
	time.Sleep(300 * time.Millisecond)
	check("with Consul stopped, on the last view")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	// A verifier stopping gracefully deregisters; the router's view loses it.
	stopVerifier()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.ListModels(context.Background(), &specdv1.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]bool{}
		for _, m := range resp.GetModels() {
			roles[m.GetRole()] = true
		}
		if !roles["verifier"] && roles["draft"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router's view still lists the deregistered verifier: %v", resp.GetModels())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.generate(context.Background(), request(text, 4, 0, 0, 4)); status.Code(err) != codes.Unavailable {
		t.Fatalf("with no verifier registered: %v, want Unavailable", err)
	}
}

// waitDraftView waits until a verifier's Consul view of drafts lists one: it may trail
// the router's by a blocking query.
func waitDraftView(t *testing.T, drafts router.Discovery) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(drafts.Endpoints(router.Draft)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the verifier's Consul view never listed the draft")
		}
	}
}
