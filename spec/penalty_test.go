package spec_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestPenaltiesSpeculationEqualsPlain: with repetition, frequency and presence
// penalties, greedy and coupled speculation commit plain decoding's tokens on every
// path simulate takes — pipelined and stale rounds, branches, late verdicts, own steps
// checking prompt-lookup guesses — since the verifier observes each token it keeps
// before it judges the next; and a session resumed after a failover (its resumed
// tokens observed as output, not as prompt) continues plain decoding's output.
func TestPenaltiesSpeculationEqualsPlain(t *testing.T) {
	p := loadPair(t)
	const n = 48
	for _, sp := range []sample.Params{
		{TopP: 1, RepetitionPenalty: 1.3},
		{TopP: 1, FrequencyPenalty: 0.8, PresencePenalty: 0.3},
		{Temperature: 0.8, TopP: 1, Seed: 7, RepetitionPenalty: 1.2, FrequencyPenalty: 0.3},
	} {
		for _, text := range []string{"One day, Lily found a shiny key in the garden.", "In the beginning God created"} {
			prompt := p.target.Tok.Encode(text, true)
			want := plain(t, p, prompt, n, sp)
			unpenalized := sp
			unpenalized.RepetitionPenalty, unpenalized.FrequencyPenalty, unpenalized.PresencePenalty = 0, 0, 0
			if slices.Equal(want, plain(t, p, prompt, n, unpenalized)) {
				t.Fatalf("%+v %q: the penalties do not change plain decoding: the test would prove nothing", sp, text)
			}
			for _, gamma := range []int{1, 4} {
				rng := rand.New(rand.NewPCG(uint64(gamma), 3))
				if got, _ := simulate(t, p, prompt, n, sp, spec.Coupled, gamma, 2, rng); !slices.Equal(got, want) {
					t.Errorf("%+v γ=%d %q:\n got %v\nwant %v", sp, gamma, text, got, want)
				}
			}
			vs, err := verifier.NewSession(state(t, p.target, p.pool), verifier.Request{Prompt: prompt, Resume: want[:10], Sampling: sp, Limits: limits(p.target, n)})
			if err != nil {
				t.Fatal(err)
			}
			for !vs.Done() {
				if _, err := vs.Own(4); err != nil {
					t.Fatal(err)
				}
			}
			if got := vs.Output().IDs; !slices.Equal(got, want) {
				t.Errorf("%+v %q, resumed after 10 tokens:\n got %v\nwant %v", sp, text, got, want)
			}
		}
	}
}
