package serve_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
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
		req := &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, StopTokenIds: []int32{stop}, Speculation: sp}
		var r *specdv1.CompleteResponse
		var err error
		if sp.GetGamma() > 0 {
			r = completeSpeculating(t, s, req)
		} else if r, err = s.client.Complete(ctx, req); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.GetTokenIds(), plain[:k]) || r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS {
			t.Errorf("stop id %d (%v): %v (%v); want %v, ended at the stop id", stop, sp, r.GetTokenIds(), r.GetFinishReason(), plain[:k])
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

// TestLogitBias: speculating with the draft (a fixed γ always gets its draft), a
// logit_bias request gives what plain decoding with the same bias gives — greedy and
// coupled sampling alike — and a banned token (-100) never appears, in rejection mode
// too; over the OpenAI front door as well. An id outside the vocabulary is
// INVALID_ARGUMENT naming sampling.logit_bias.
func TestLogitBias(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	prompt := s.target.Tok.Prompt("Once upon a time there was a little")
	const n = 32
	free := s.plainIDs(t, prompt, n, sample.Params{})
	ban, boost := free[2], free[10]
	bias := []sample.Bias{{ID: min(ban, boost), Value: -100}, {ID: max(ban, boost), Value: 3}}
	if ban > boost {
		bias[0].Value, bias[1].Value = 3, -100
	}
	for _, c := range []struct {
		name string
		sp   sample.Params
		mode specdv1.VerificationMode
	}{
		{"greedy", sample.Params{TopP: 1, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"coupled", sample.Params{Temperature: 0.8, TopP: 1, Seed: 7, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
		{"rejection", sample.Params{Temperature: 0.8, TopP: 1, Seed: 7, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_REJECTION},
	} {
		r := completeSpeculating(t, s, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Sampling: services.SamplingToProto(c.sp),
			Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}})
		got := r.GetTokenIds()
		if slices.Contains(got, ban) {
			t.Errorf("%s: %v holds banned token %d", c.name, got, ban)
		}
		if c.mode == specdv1.VerificationMode_VERIFICATION_MODE_REJECTION {
			continue // the same distribution, not the same draw
		}
		if want := s.plainIDs(t, prompt, n, c.sp); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want plain decoding with the bias %v", c.name, got, want)
		}
	}
	oc := s.openaiClient()
	resp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
		MaxTokens: openai.Int(n), Temperature: openai.Float(0), LogitBias: map[string]int64{strconv.Itoa(int(ban)): -100, strconv.Itoa(int(boost)): 3}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Sampling: services.SamplingToProto(sample.Params{TopP: 1, LogitBias: bias})})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != want.GetText() {
		t.Errorf("HTTP logit_bias: %q, want the gRPC API's %q", resp.Choices[0].Text, want.GetText())
	}
	_, err = s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: 4,
		Sampling: &specdv1.SamplingParams{LogitBias: map[int32]float32{int32(s.target.Vocab): 1}}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "sampling.logit_bias: ") {
		t.Errorf("a bias outside the vocabulary: %v; want INVALID_ARGUMENT naming sampling.logit_bias", err)
	}
}

// TestMinTokens: stories260K's greedy story for "The dog" ends with BOS; with
// min_tokens past that point the BOS cannot be drawn there, so the story goes on with
// the model's next choice to at least min_tokens tokens (over gRPC and the OpenAI front
// door); min_tokens above max_tokens is INVALID_ARGUMENT.
func TestMinTokens(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, target: testmodels.ForTest(t, "stories260K.bin")})
	ref := stories260KStopAtBOS(t, "The dog")
	ctx := context.Background()
	k := len(ref.OutputIDs)
	minTokens := uint32(k + 5)
	r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: ref.PromptIDs, MaxTokens: minTokens + 40,
		Sampling: &specdv1.SamplingParams{MinTokens: minTokens}})
	if err != nil {
		t.Fatal(err)
	}
	got := r.GetTokenIds()
	if len(got) < int(minTokens) || !slices.Equal(got[:k], ref.OutputIDs) || slices.Contains(got[:minTokens], s.target.Tok.BOS()) {
		t.Fatalf("min_tokens %d: %v (%v); want the story, then no BOS before %d tokens", minTokens, got, r.GetFinishReason(), minTokens)
	}
	oc := s.openaiClient()
	resp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(r.GetStats().GetVerifier().GetModel()),
		Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(ref.PromptIDs)}, MaxTokens: openai.Int(int64(minTokens + 40)), Temperature: openai.Float(0)},
		option.WithJSONSet("min_tokens", minTokens))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != r.GetText() {
		t.Errorf("HTTP min_tokens: %q, want the gRPC API's %q", resp.Choices[0].Text, r.GetText())
	}
	_, err = s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: ref.PromptIDs, MaxTokens: 4, Sampling: &specdv1.SamplingParams{MinTokens: 5}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "sampling.min_tokens: ") {
		t.Errorf("min_tokens above max_tokens: %v; want INVALID_ARGUMENT naming sampling.min_tokens", err)
	}
}

// TestMinTokensSpeculating: on the specd pair, speculating with the draft (a fixed γ
// always gets its draft), min_tokens holds back a stop id the text reaches early: the
// draft, which holds nothing back, proposes it and the verifier refuses it while the
// output is short — greedy and coupled give plain decoding's ids with the same
// parameters, rejection sampling no stop id before min_tokens — with a logit bias too.
func TestMinTokensSpeculating(t *testing.T) {
	s := startStackWith(t, stackOptions{})
	prompt := s.target.Tok.Prompt("Once upon a time there was a little")
	const n, minTokens = 40, 16
	free := s.plainIDs(t, prompt, n, sample.Params{})
	stop := free[2] // ends the text after two tokens, without min_tokens
	bias := []sample.Bias{{ID: free[5], Value: -4}}
	for _, c := range []struct {
		name string
		sp   sample.Params
		mode specdv1.VerificationMode
	}{
		{"greedy", sample.Params{TopP: 1, MinTokens: minTokens}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"greedy biased", sample.Params{TopP: 1, MinTokens: minTokens, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"coupled", sample.Params{Temperature: 0.8, TopP: 1, Seed: 7, MinTokens: minTokens, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
		{"rejection", sample.Params{Temperature: 0.8, TopP: 1, Seed: 7, MinTokens: minTokens, LogitBias: bias}, specdv1.VerificationMode_VERIFICATION_MODE_REJECTION},
	} {
		r := completeSpeculating(t, s, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, StopTokenIds: []int32{stop},
			Sampling: services.SamplingToProto(c.sp), Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}})
		got := r.GetTokenIds()
		if len(got) < minTokens || slices.Contains(got[:minTokens], stop) {
			t.Errorf("%s: %v (%v); want %d tokens at least, stop id %d not among them",
				c.name, got, r.GetFinishReason(), minTokens, stop)
		}
		if c.mode == specdv1.VerificationMode_VERIFICATION_MODE_REJECTION {
			continue // the same distribution, not the same draw
		}
		if want := s.plainIDsStop(t, prompt, n, c.sp, []int32{stop}); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want plain decoding with the same parameters %v", c.name, got, want)
		}
	}
	unheld := s.plainIDsStop(t, prompt, n, sample.Params{TopP: 1}, []int32{stop})
	if len(unheld) >= minTokens {
		t.Fatalf("without min_tokens the stop id %d ends nothing early (%v): the test would prove nothing", stop, unheld)
	}
}

// completeSpeculating sends req, whose fixed γ always gets a draft, until its stats show
// a verified round, at most ten times: the verifier never waits long for a draft, and
// on a slow machine (the race detector, with other packages' tests beside it) a short
// request can end before the draft's first proposal arrives — CI saw three in a row do
// so. It fails the test if no try verified a round.
func completeSpeculating(t *testing.T, s *stack, req *specdv1.GenerateRequest) *specdv1.CompleteResponse {
	t.Helper()
	const tries = 10
	var r *specdv1.CompleteResponse
	for range tries {
		var err error
		if r, err = s.client.Complete(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if r.GetStats().GetRounds() > 0 {
			return r
		}
	}
	t.Errorf("%d requests with γ %d verified no round", tries, req.GetSpeculation().GetGamma())
	return r
}
