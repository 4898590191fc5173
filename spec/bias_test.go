package spec_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestBiasAndMinTokensSpeculationEqualsPlain: with a logit bias and min_tokens (an
// early end made possible by a stop id the text reaches soon), greedy and coupled
// speculation with a draft commit plain decoding's tokens on every path simulate takes
// — the draft biases its own logits but proposes ends early, which the verifier
// refuses while the output is short — and a session resumed after a failover counts
// its resumed tokens towards min_tokens.
func TestBiasAndMinTokensSpeculationEqualsPlain(t *testing.T) {
	p := loadPair(t)
	const n = 40
	prompt := p.target.Tok.Encode("One day, Lily found a shiny key in the garden.", true)
	for _, base := range []sample.Params{{TopP: 1}, {Temperature: 0.8, TopP: 1, Seed: 7}} {
		free := plain(t, p, prompt, n, base)
		// The stop id is the output's fourth token, which the text reaches early: without
		// min_tokens it ends the text after three tokens; with it the text runs on.
		stop := free[3]
		lim := limits(p.target, n)
		lim.End = append(lim.End, stop)
		sp := base
		sp.MinTokens = 12
		sp.LogitBias = []sample.Bias{{ID: free[1], Value: -3}, {ID: free[6], Value: 2.5}}
		want := plainLimits(t, p, prompt, lim, sp)
		if i := slices.Index(want, stop); len(want) < sp.MinTokens || i >= 0 && i < sp.MinTokens {
			t.Fatalf("%+v: plain output %v ends early or holds the stop id %d before %d tokens", sp, want, stop, sp.MinTokens)
		}
		if unshaped := plainLimits(t, p, prompt, lim, base); len(unshaped) > 4 {
			t.Fatalf("%+v: without min_tokens the stop id %d ends nothing early (%v): the test would prove nothing", base, stop, unshaped)
		}
		for _, gamma := range []int{1, 4} {
			for _, depth := range []int{1, 3} {
				rng := rand.New(rand.NewPCG(uint64(gamma), uint64(depth)))
				got, st := simulateLimits(t, p, prompt, lim, sp, spec.Coupled, gamma, depth, rng)
				if !slices.Equal(got, want) {
					t.Errorf("%+v γ=%d depth=%d:\n got %v\nwant %v", sp, gamma, depth, got, want)
				}
				if st.Accepted == 0 {
					t.Errorf("%+v γ=%d depth=%d: no draft token accepted (%+v)", sp, gamma, depth, st)
				}
			}
		}
		for _, k := range []int{2, sp.MinTokens - 1} {
			vs, err := verifier.NewSession(state(t, p.target, p.pool), verifier.Request{Prompt: prompt, Resume: want[:k], Sampling: sp, Limits: lim})
			if err != nil {
				t.Fatal(err)
			}
			for !vs.Done() {
				if _, err := vs.Own(4); err != nil {
					t.Fatal(err)
				}
			}
			if got := vs.Output().IDs; !slices.Equal(got, want) {
				t.Errorf("%+v resumed after %d tokens:\n got %v\nwant %v", sp, k, got, want)
			}
		}
	}
}

// plainLimits is plain with the given limits.
func plainLimits(t *testing.T, p pair, prompt []int32, lim generate.Limits, sp sample.Params) []int32 {
	t.Helper()
	out, _, err := generate.Run(t.Context(), state(t, p.target, p.pool), generate.Request{Prompt: prompt, Sampling: sp, Limits: lim},
		func(generate.Token) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out.IDs
}

// TestMinTokensStopString: a stop string the text writes early counts only after
// min_tokens, as vLLM's min_tokens has it — in plain decoding, and with speculation and
// a draft, which then still commit the same ids.
func TestMinTokensStopString(t *testing.T) {
	p := loadPair(t)
	const n, minTokens = 40, 12
	prompt := p.target.Tok.Encode("One day, Lily found a shiny key in the garden.", true)
	lim := limits(p.target, n)
	free := plainLimits(t, p, prompt, lim, sample.Params{TopP: 1})
	// The stop string is the text of the output's third token.
	o := generate.NewOutput(p.target.Tok, prompt, lim)
	o.Push(free[0])
	o.Push(free[1])
	before := o.Text()
	o.Push(free[2])
	stop := strings.TrimSpace(o.Text()[len(before):])
	if len(stop) < 2 {
		t.Fatalf("the third token of %v adds %q: choose another prompt", free, stop)
	}
	lim.Stop = []string{stop}
	if cut := plainLimits(t, p, prompt, lim, sample.Params{TopP: 1}); len(cut) > 3 {
		t.Fatalf("stop string %q does not end %v early: the test would prove nothing", stop, cut)
	}
	sp := sample.Params{TopP: 1, MinTokens: minTokens}
	want := plainLimits(t, p, prompt, lim, sp)
	if len(want) <= minTokens {
		t.Fatalf("min_tokens %d, stop %q: plain decoding gives %v, ended within the minimum", minTokens, stop, want)
	}
	rng := rand.New(rand.NewPCG(4, 1))
	if got, _ := simulateLimits(t, p, prompt, lim, sp, spec.Coupled, 4, 2, rng); !slices.Equal(got, want) {
		t.Errorf("speculation:\n got %v\nwant %v", got, want)
	}
}
