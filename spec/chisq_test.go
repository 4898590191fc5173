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

// TestRejectionBlockIsLossless checks rejection mode (Leviathan et al. 2023, Theorem 1,
// applied to a block of γ tokens as in their Algorithm 1) where the test above does not
// reach: the user's filters and a penalty, a draft whose distributions are cut to their
// 8 likeliest tokens (so q is 0 where p is not), and the second token of a block, judged
// only after the first was kept. Over seeded trials the first committed token must
// follow p, the verifier's filtered distribution after the prompt, and the second,
// among trials whose first is the likeliest token c, p after the prompt and c, with c
// penalized as an output token. After "!!!" c is a newline, which another newline
// follows three times in four unpenalized, so the penalty moves that distribution a
// long way. Each χ² test fails falsely with probability 0.001 (Wilson–Hilferty
// critical value), the pair at most 0.002; the seeds are fixed, so a run is
// deterministic.
func TestRejectionBlockIsLossless(t *testing.T) {
	p := loadPair(t)
	trials := 2400
	if testing.Short() {
		trials = 1200
	}
	ctx := p.target.Tok.Encode("!!!", true)
	base := sample.Params{Temperature: 0.9, TopK: 50, TopP: 0.95, MinP: 0.01, PresencePenalty: 1.5}
	st := state(t, p.target, p.pool)
	logits, err := st.Forward(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	ref := sample.New(base)
	ref.SetPrompt(ctx)
	p1 := ref.Distribution(logits).Clone()
	c := p1.IDs[0] // the likeliest token: the support is sorted when top_k is set
	logits, err = st.Forward([]int32{c}, false)
	if err != nil {
		t.Fatal(err)
	}
	ref.Observe(c)
	p2 := ref.Distribution(logits).Clone()
	if unpen := sample.New(sample.Params{Temperature: base.Temperature, TopK: base.TopK, TopP: base.TopP, MinP: base.MinP}).Distribution(logits); unpen.Prob(c)-p2.Prob(c) < 0.2 {
		t.Fatalf("the penalty moves p(c | c) from %.3f to %.3f only: the test would not see it ignored", unpen.Prob(c), p2.Prob(c))
	}

	// committed is what a step committed, an end-of-text token that ended the output
	// (which the output does not hold) included.
	committed := func(vs *verifier.Session, s verifier.Step) []int32 {
		var ids []int32
		for _, tk := range s.Tokens {
			if tk.ID >= 0 {
				ids = append(ids, tk.ID)
			}
		}
		if vs.Done() && vs.Output().Reason == generate.EOS {
			ids = append(ids, p.target.Tok.EOS())
		}
		return ids
	}
	vst, dst := state(t, p.target, p.pool), state(t, p.draft, p.pool)
	firsts, seconds := map[int32]int{}, map[int32]int{}
	kept, judged, keptSecond := 0, 0, 0
	for i := range trials {
		sp := base
		sp.Seed = 7907 * uint64(i+1)
		vst.Seq.Release()
		vs, err := verifier.NewSession(vst, verifier.Request{Prompt: ctx, Sampling: sp, Mode: spec.Rejection, Limits: limits(p.target, 8)})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := draft.NewSession(dst, ctx, spec.Options{Sampling: sp, Mode: spec.Rejection, Gamma: 3, MaxPosition: 64, ProposalTopK: 8})
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
		ids := committed(vs, step)
		firsts[ids[0]]++
		if ids[0] == pr.Tokens[0] {
			kept++
		}
		if ids[0] != c {
			continue
		}
		if len(ids) < 2 {
			// The first was a correction: the second is the verifier's own.
			own, err := vs.Own(0)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, committed(vs, own)...)
		} else {
			judged++
			if ids[1] == pr.Tokens[1] {
				keptSecond++
			}
		}
		seconds[ids[1]]++
	}
	n2 := 0
	for _, k := range seconds {
		n2 += k
	}
	for _, x := range []struct {
		name   string
		counts map[int32]int
		d      sample.Dist
		n      int
	}{{"first token", firsts, p1, trials}, {"second token after the likeliest", seconds, p2, n2}} {
		stat, df := chiSquare(x.counts, x.d, x.n)
		crit := chiSquareCritical(df)
		t.Logf("%s: %d draws, χ² = %.1f with %d degrees of freedom (critical %.1f at p = 0.001)", x.name, x.n, stat, df, crit)
		if df < 3 || stat > crit {
			t.Errorf("%s: committed tokens do not follow the verifier's filtered distribution: χ² = %.1f > %.1f (df %d)", x.name, stat, crit, df)
		}
	}
	t.Logf("first proposed token kept in %d of %d trials; the second, judged after c was kept, in %d of %d", kept, trials, keptSecond, judged)
	if kept == 0 || kept == trials || keptSecond == 0 || keptSecond == judged {
		t.Errorf("kept %d of %d first and %d of %d second tokens: the test needs both outcomes at both", kept, trials, keptSecond, judged)
	}
}
