package spec_test

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestSpeculativeSamplingIsLossless checks, with a χ² goodness-of-fit test at T = 1,
// that the first token committed by speculative verification is distributed exactly as
// the verifier's own next-token distribution p, in both modes:
//   - rejection: Leviathan et al. 2023, Theorem 1 (and Chen et al. 2023, Theorem 1):
//     accepting x ~ q with probability min(1, p(x)/q(x)) and otherwise resampling from
//     normalize(max(0, p − q)) yields x ~ p;
//   - coupled: the verifier's token is Gumbel-max over p with the request's noise, so
//     it is a sample of p whatever the draft proposed.
//
// Each trial uses a different seed; the seeds are fixed, so the test is deterministic.
func TestSpeculativeSamplingIsLossless(t *testing.T) {
	p := loadPair(t)
	ctx := []int32{p.target.Tok.BOS()} // the first token of a text: a broad distribution
	dst := state(t, p.draft, p.pool)
	checkLossless(t, p, ctx, 7919, sample.Params{}, limits(p.target, 8), draftStep(t, dst, ctx))
}

// draftStep is a first step for checkLossless: a draft session on dst after ctx
// proposes 3 tokens, and the verifier checks them.
func draftStep(t *testing.T, dst *model.State, ctx []int32) func(*verifier.Session, sample.Params, spec.Mode) (verifier.Step, bool) {
	return func(vs *verifier.Session, sp sample.Params, mode spec.Mode) (verifier.Step, bool) {
		ds, err := draft.NewSession(dst, ctx, spec.Options{Sampling: sp, Mode: mode, Gamma: 3, MaxPosition: 64, ProposalTopK: 64})
		if err != nil {
			t.Fatal(err)
		}
		pr, _, err := ds.Draft(nil)
		if err != nil {
			t.Fatal(err)
		}
		step, err := vs.Verify(pr)
		if err != nil {
			t.Fatal(err)
		}
		return step, len(step.Tokens) > 0 && step.Tokens[0].ID == pr.Tokens[0]
	}
}

// TestShapedSamplingIsLossless is TestSpeculativeSamplingIsLossless with a logit bias
// and min_tokens: the verifier's p is the biased distribution with the likeliest first
// token — made a stop id — held back, while the draft's q is biased but holds nothing
// back, so the draft proposes that token often and the verifier must always refuse it
// and draw from the residual (Leviathan et al. 2023, Theorem 1, with p(x) = 0).
func TestShapedSamplingIsLossless(t *testing.T) {
	p := loadPair(t)
	ctx := []int32{p.target.Tok.BOS()}
	st := state(t, p.target, p.pool)
	logits, err := st.Forward(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	top := sample.TopIDs(nil, logits, 5)
	lim := limits(p.target, 8)
	lim.End = append(lim.End, top[0])
	base := sample.Params{MinTokens: 1, LogitBias: []sample.Bias{{ID: top[1], Value: -2}, {ID: top[4], Value: 1.5}}}
	slices.SortFunc(base.LogitBias, func(a, b sample.Bias) int { return cmp.Compare(a.ID, b.ID) })
	checkLossless(t, p, ctx, 6131, base, lim, draftStep(t, state(t, p.draft, p.pool), ctx))
}

// TestLookupSamplingIsLossless checks, as TestSpeculativeSamplingIsLossless does, that
// the verifier's own step that checks a prompt-lookup guess commits a first token
// distributed as p. The guess is a draft certain of its token (q one-hot at x), so
// rejection mode keeps it with probability p(x) and otherwise draws from p without x.
func TestLookupSamplingIsLossless(t *testing.T) {
	p := loadPair(t)
	// " and a" recurs: the lookup guesses the text that followed it, " dog. The…".
	ctx := p.target.Tok.Encode("Once there was a cat and a dog. The cat and a", true)
	checkLossless(t, p, ctx, 104729, sample.Params{}, limits(p.target, 8), func(vs *verifier.Session, _ sample.Params, _ spec.Mode) (verifier.Step, bool) {
		step, err := vs.Own(3)
		if err != nil {
			t.Fatal(err)
		}
		return step, vs.Stats.GuessAccepted > 0
	})
}

// checkLossless runs trials sessions after ctx with limits lim, each with base's
// logit bias and min_tokens and its own fixed seed at T = 1, in both modes; step takes the session's first step and reports whether it kept the
// first token proposed. The first committed tokens must pass a χ² test against the
// verifier's own distribution at ctx (biased, its ends held back as the limits and
// base say), and the proposal must be both kept and rejected
// in some trials.
func checkLossless(t *testing.T, p pair, ctx []int32, seedStep uint64, base sample.Params, lim generate.Limits, step func(*verifier.Session, sample.Params, spec.Mode) (verifier.Step, bool)) {
	t.Helper()
	trials := 3000
	if testing.Short() {
		trials = 1200
	}
	st := state(t, p.target, p.pool)
	logits, err := st.Forward(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	base.Temperature, base.TopP = 1, 1
	own := sample.New(base)
	own.SetEnds(lim.Ends())
	pd := own.Distribution(logits).Clone()
	for _, mode := range []spec.Mode{spec.Rejection, spec.Coupled} {
		t.Run(mode.String(), func(t *testing.T) {
			counts := map[int32]int{}
			kept := 0
			vst := state(t, p.target, p.pool)
			for i := range trials {
				sp := base
				sp.Seed = seedStep * uint64(i+1)
				vst.Seq.Release()
				vs, err := verifier.NewSession(vst, verifier.Request{Prompt: ctx, Sampling: sp, Mode: mode, Limits: lim})
				if err != nil {
					t.Fatal(err)
				}
				s, ok := step(vs, sp, mode)
				first := p.target.Tok.EOS() // an end-of-text token ends the output unrecorded
				if len(s.Tokens) > 0 {
					first = s.Tokens[0].ID
				}
				counts[first]++
				if ok {
					kept++
				}
			}
			stat, df := chiSquare(counts, pd, trials)
			crit := chiSquareCritical(df)
			t.Logf("%s: χ² = %.1f with %d degrees of freedom (critical %.1f at p = 0.001); first proposed token kept in %.0f%% of trials",
				mode, stat, df, crit, 100*float64(kept)/float64(trials))
			if stat > crit {
				t.Errorf("%s: committed tokens do not follow the verifier's distribution: χ² = %.1f > %.1f (df %d)", mode, stat, crit, df)
			}
			if kept == 0 || kept == trials {
				t.Errorf("%s: the first proposed token was kept in %d of %d trials: the test needs both outcomes", mode, kept, trials)
			}
		})
	}
}

// chiSquare compares observed counts with n draws from d, over the tokens expected at
// least 5 times each, the rest pooled into one bin.
func chiSquare(counts map[int32]int, d sample.Dist, n int) (float64, int) {
	type bin struct{ obs, exp float64 }
	var bins []bin
	rest := bin{}
	for i, id := range d.IDs {
		e := float64(d.Probs[i]) * float64(n)
		if e >= 5 {
			bins = append(bins, bin{float64(counts[id]), e})
		} else {
			rest.obs += float64(counts[id])
			rest.exp += e
		}
	}
	// Tokens outside d's support (impossible if lossless) count against the pooled bin.
	seen := map[int32]bool{}
	for _, id := range d.IDs {
		seen[id] = true
	}
	for id, c := range counts {
		if !seen[id] {
			rest.obs += float64(c)
		}
	}
	if rest.exp > 0 {
		bins = append(bins, rest)
	}
	sort.Slice(bins, func(i, j int) bool { return bins[i].exp > bins[j].exp })
	stat := 0.0
	for _, b := range bins {
		stat += (b.obs - b.exp) * (b.obs - b.exp) / b.exp
	}
	return stat, len(bins) - 1
}

// chiSquareCritical approximates the χ² quantile at 1 − 0.001 (Wilson–Hilferty).
func chiSquareCritical(df int) float64 {
	const z = 3.090232 // standard normal quantile at 0.999
	k := float64(df)
	a := 2 / (9 * k)
	return k * math.Pow(1-a+z*math.Sqrt(a), 3)
}
