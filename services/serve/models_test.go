package serve_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestRouterPicksVerifierOfRequestedModel: with two verifiers serving different
// models behind one router, a request naming a model runs on a verifier of that model
// whatever its affinity key — as the proto says, a model is NOT_FOUND only when no
// verifier serves it — and so does Tokenize.
func TestRouterPicksVerifierOfRequestedModel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	a := startVerifierOf(t, ctx, run, "specd-target-q8_0")
	b := startVerifierOf(t, ctx, run, "specd-draft-q8_0")
	client := routerOver(t, ctx, run, a, b)
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
