package verifiersvc_test

import (
	"slices"
	"testing"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestCachedPromptOfResumedRequest: a request resumed after a failover may find in the
// prefix cache the tokens it had generated, not only its prompt; cached_prompt_tokens
// counts prompt tokens only, so it never exceeds prompt_tokens (the router's metrics
// and the OpenAI usage report it as a share of the prompt).
func TestCachedPromptOfResumedRequest(t *testing.T) {
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1, PrefixCache: true}})
	plain := &specdv1.SpeculationOptions{Disabled: true}
	const n = 12
	ids, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		Prompt: "Once upon a time", MaxTokens: n, Speculation: plain}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("first request: %d tokens, want %d", len(ids), n)
	}
	// The same request fails over after 8 tokens: the cache holds its prompt and them.
	rest, st, err := generateAll(ctx, client, &speculationv1.GenerateRequest{ResumeIds: ids[:8], Request: &specdv1.GenerateRequest{
		Prompt: "Once upon a time", MaxTokens: n, Speculation: plain}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rest, ids[8:]; !slices.Equal(got, want) {
		t.Errorf("resumed request generated %v, want %v", got, want)
	}
	if st.GetCachedPromptTokens() > st.GetPromptTokens() {
		t.Errorf("resumed request: cached_prompt_tokens = %d, more than prompt_tokens %d", st.GetCachedPromptTokens(), st.GetPromptTokens())
	}
	if st.GetCachedPromptTokens() == 0 {
		t.Errorf("resumed request: cached_prompt_tokens = 0, want its prompt found in the cache")
	}
}
