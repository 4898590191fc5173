package serve_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
)

// TestIgnoreEOS: stories260K ends llama2.c's greedy story for "The dog" with BOS (the
// end of text of a llama2.c checkpoint). By default the output stops there (finish
// EOS); with ignore_eos the same story runs on past it to max_tokens (finish length),
// the BOS an output token like any other — over gRPC and the OpenAI front door.
func TestIgnoreEOS(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, target: testmodels.ForTest(t, "stories260K.bin")})
	ref := stories260KStopAtBOS(t, "The dog")
	ctx := context.Background()
	n := uint32(len(ref.OutputIDs) + 8)
	r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: ref.PromptIDs, MaxTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.GetTokenIds(), ref.OutputIDs) || r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS {
		t.Fatalf("default: %v (%v); want llama2.c's story %v, ended by its BOS", r.GetTokenIds(), r.GetFinishReason(), ref.OutputIDs)
	}
	r, err = s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: ref.PromptIDs, MaxTokens: n, IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	got := r.GetTokenIds()
	if len(got) != int(n) || !slices.Equal(got[:len(ref.OutputIDs)], ref.OutputIDs) || got[len(ref.OutputIDs)] != s.target.Tok.BOS() ||
		r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_LENGTH {
		t.Fatalf("ignore_eos: %v (%v); want the story, its BOS and more, %d tokens in all", got, r.GetFinishReason(), n)
	}
	if c := r.GetStats().GetCompletionTokens(); c != n {
		t.Errorf("ignore_eos: %d completion tokens, want %d: the BOS is an output token", c, n)
	}

	c := s.openaiClient()
	for _, ignore := range []bool{false, true} {
		resp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(r.GetStats().GetVerifier().GetModel()),
			Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(ref.PromptIDs)}, MaxTokens: openai.Int(int64(n)), Temperature: openai.Float(0)},
			option.WithJSONSet("ignore_eos", ignore))
		if err != nil {
			t.Fatal(err)
		}
		want, finish := int64(len(ref.OutputIDs)), "stop"
		if ignore {
			want, finish = int64(n), "length"
		}
		if resp.Usage.CompletionTokens != want || resp.Choices[0].FinishReason != openai.CompletionChoiceFinishReason(finish) {
			t.Errorf("HTTP ignore_eos %v: %d tokens, finish %q; want %d and %q", ignore, resp.Usage.CompletionTokens, resp.Choices[0].FinishReason, want, finish)
		}
	}
}

// TestStopTokenIDs: a stop id ends the output where the model writes it, as the end of
// text does — speculating with the draft (a fixed γ always gets its draft) and not,
// over gRPC and the OpenAI front door — and an id outside the vocabulary, a negative
// one or too many are INVALID_ARGUMENT naming stop_token_ids.
func TestStopTokenIDs(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	prompt := s.target.Tok.Prompt("Once upon a time there was a little")
	const n = 48
	plain := s.plainIDs(t, prompt, n, sample.Params{})
	// The stop id is the latest id the output writes for the first time, so that the
	// request has had rounds to speculate before it.
	k := len(plain) - 1
	for slices.Index(plain, plain[k]) != k {
		k--
	}
	if k < n/2 {
		t.Fatalf("output %v writes nothing new after its first half: choose another prompt", plain)
	}
	stop := plain[k]
	for _, sp := range []*specdv1.SpeculationOptions{{Disabled: true}, {Gamma: 4}} {
		r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, StopTokenIds: []int32{stop}, Speculation: sp})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.GetTokenIds(), plain[:k]) || r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS {
			t.Errorf("stop id %d (%v): %v (%v); want %v, ended at the stop id", stop, sp, r.GetTokenIds(), r.GetFinishReason(), plain[:k])
		}
		if sp.GetGamma() > 0 && r.GetStats().GetRounds() == 0 {
			t.Errorf("stop id %d with γ 4: no speculative round", stop)
		}
	}
	oc := s.openaiClient()
	resp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
		MaxTokens: openai.Int(n), Temperature: openai.Float(0)}, option.WithJSONSet("stop_token_ids", []int32{stop}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens != int64(k) || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("HTTP stop_token_ids [%d]: %d tokens, finish %q; want %d and stop", stop, resp.Usage.CompletionTokens, resp.Choices[0].FinishReason, k)
	}

	for _, ids := range [][]int32{{int32(s.target.Vocab)}, {5, -1}, make([]int32, 65)} {
		_, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: 4, StopTokenIds: ids})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "stop_token_ids: ") {
			t.Errorf("stop_token_ids of %d ids (first %d): %v; want INVALID_ARGUMENT naming stop_token_ids", len(ids), ids[0], err)
		}
	}
}
