package serve_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestRouterPicksVerifierOfRequestedModel: with two verifiers serving different
// models behind one router, a request naming a model runs on a verifier of that model
// whatever its affinity key — as the proto says, a model is NOT_FOUND only when no
// verifier serves it — and so does Tokenize.
func TestRouterPicksVerifierOfRequestedModel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	eng := services.EngineConfig{Threads: 1, KVBudget: 16 << 20, KVType: ggml.F32, MaxBlock: 16}
	ready := make(chan struct{}, 2)
	var addrs []string
	for _, name := range []string{"specd-target-q8_0", "specd-draft-q8_0"} {
		l := freeListener(t)
		addrs = append(addrs, l.Addr().String())
		run(func() error {
			return serve.Verifier(ctx, serve.Worker{Load: loader(t, name), Engine: eng, Log: quiet,
				Ready: func(*model.Model) { ready <- struct{}{} }},
				verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}, Drafts: router.NewStatic()}, l)
		})
	}
	<-ready
	<-ready
	rl := freeListener(t)
	routerReady := make(chan struct{})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: addrs, Refresh: 100 * time.Millisecond, Log: quiet,
			Ready: func() { close(routerReady) }}, rl)
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	<-routerReady
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := specdv1.NewGenerationServiceClient(cc)
	waitModels(t, client, 2)
	models, err := client.ListModels(context.Background(), &specdv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range models.GetModels() {
		name := m.GetName()
		// Enough distinct prompts (affinity keys) that some map to the other verifier.
		for i := range 8 {
			text := fmt.Sprintf("Prompt %d: once upon a time", i)
			res, err := client.Complete(context.Background(), &specdv1.GenerateRequest{Model: name, Prompt: text, MaxTokens: 2})
			if err != nil {
				t.Fatalf("Complete(model %q, %q): %v", name, text, err)
			}
			if got := res.GetStats().GetVerifier().GetModel(); got != name {
				t.Fatalf("Complete(model %q) was served by model %q", name, got)
			}
			if _, err := client.Tokenize(context.Background(), &specdv1.TokenizeRequest{Model: name, Text: text}); err != nil {
				t.Fatalf("Tokenize(model %q, %q): %v", name, text, err)
			}
		}
	}
}
