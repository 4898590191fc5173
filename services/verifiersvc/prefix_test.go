package verifiersvc_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// TestResumeOfWholeRequest: a request resumed with all its max_tokens already streamed
// (its verifier failed between its last token and its final message) ends at once with
// FINISH_REASON_LENGTH and no token; more than max_tokens is INVALID_ARGUMENT.
func TestResumeOfWholeRequest(t *testing.T) {
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	req := func(resume []int32) *speculationv1.GenerateRequest {
		return &speculationv1.GenerateRequest{ResumeIds: resume, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: 6, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}}
	}
	ids, _, err := generateAll(ctx, client, req(nil))
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.Generate(ctx, req(ids))
	if err != nil {
		t.Fatal(err)
	}
	var final *specdv1.Final
	var more []int32
	for final == nil {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("resumed with all %d tokens: %v", len(ids), err)
		}
		more = append(more, msg.GetChunk().GetTokenIds()...)
		final = msg.GetFinal()
	}
	if len(more) != 0 || final.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_LENGTH || final.GetStats().GetCompletionTokens() != uint32(len(ids)) {
		t.Errorf("resumed with all %d tokens: %v more, %v, %d completion tokens; want none, LENGTH, %d", len(ids), more, final.GetFinishReason(),
			final.GetStats().GetCompletionTokens(), len(ids))
	}
	if _, _, err := generateAll(ctx, client, req(append(ids, ids[0]))); status.Code(err) != codes.InvalidArgument {
		t.Errorf("resumed with more than max_tokens: %v, want INVALID_ARGUMENT", err)
	}
}
