package serve_test

import (
	"context"
	"slices"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// TestPenaltiesEqualPlain: with repetition, frequency and presence penalties, the
// output through router, draft and verifier — plain, and speculative at γ 4 — is
// token for token plain decoding's with the same penalties (`specd run`), greedy and
// seeded in both verification modes; and the penalties change the output, so they
// are applied.
func TestPenaltiesEqualPlain(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	const prompt, n = "Once upon a time, there was a little girl named Lily. She loved to play", 64
	drafted := 0
	for _, c := range []struct {
		name string
		p    sample.Params
		mode specdv1.VerificationMode
	}{
		{"greedy repetition", sample.Params{TopP: 1, RepetitionPenalty: 1.3}, 0},
		{"greedy frequency and presence", sample.Params{TopP: 1, FrequencyPenalty: 0.7, PresencePenalty: 0.4}, 0},
		{"coupled, all three", sample.Params{Temperature: 0.8, TopP: 0.95, Seed: 3, RepetitionPenalty: 1.2, FrequencyPenalty: 0.3, PresencePenalty: 0.2},
			specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
		{"rejection, all three", sample.Params{Temperature: 0.8, TopP: 1, Seed: 4, RepetitionPenalty: 1.2, FrequencyPenalty: 0.3, PresencePenalty: 0.2},
			specdv1.VerificationMode_VERIFICATION_MODE_REJECTION},
	} {
		want := s.plain(t, prompt, n, c.p)
		unpenalized := c.p
		unpenalized.RepetitionPenalty, unpenalized.FrequencyPenalty, unpenalized.PresencePenalty = 0, 0, 0
		if slices.Equal(want, s.plain(t, prompt, n, unpenalized)) {
			t.Fatalf("%s: the penalties do not change plain decoding's output; the test would prove nothing", c.name)
		}
		for _, so := range []*specdv1.SpeculationOptions{{Disabled: true}, {Gamma: 4, Mode: c.mode}} {
			req := &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: n, Sampling: services.SamplingToProto(c.p), Speculation: so}
			r, err := s.generate(ctx, req)
			if err != nil {
				t.Fatalf("%s (speculation %v): %v", c.name, so, err)
			}
			drafted += int(r.final.GetStats().GetDraftedTokens())
			if c.mode == specdv1.VerificationMode_VERIFICATION_MODE_REJECTION && !so.GetDisabled() {
				// Rejection sampling is exact in distribution, not token for token: its
				// output ends at max_tokens or at an end-of-sequence token.
				fr := r.final.GetFinishReason()
				if (len(r.ids) == n) != (fr == specdv1.FinishReason_FINISH_REASON_LENGTH) || len(r.ids) > n {
					t.Errorf("%s: %d tokens, finish %v; want %d, or fewer ending in EOS", c.name, len(r.ids), fr, n)
				}
				continue
			}
			if !slices.Equal(r.ids, want) {
				t.Errorf("%s (speculation %v): output differs from plain decoding with the penalties:\n got %v\nwant %v", c.name, so, r.ids, want)
			}
		}
	}
	if drafted == 0 {
		t.Error("no draft token was judged: the penalized judging was not exercised")
	}
}
