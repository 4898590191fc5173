package spec_test

import (
	"math"
	"sort"
	"testing"

	"github.com/specd-dev/specd/draft"
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
	trials := 3000
	if testing.Short() {
		trials = 1200
	}
	ctx := []int32{p.target.Tok.BOS()} // the first token of a text: a broad distribution
	// The verifier's own distribution at the first position.
	st := state(t, p.target, p.pool)
	logits, err := st.Forward(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	pd := sample.New(sample.Params{Temperature: 1, TopP: 1}).Distribution(logits).Clone()
	for _, mode := range []spec.Mode{spec.Rejection, spec.Coupled} {
		t.Run(mode.String(), func(t *testing.T) {
			counts := map[int32]int{}
			accepted := 0
			vst, dst := state(t, p.target, p.pool), state(t, p.draft, p.pool)
			for i := range trials {
				sp := sample.Params{Temperature: 1, TopP: 1, Seed: uint64(7919 * (i + 1))}
				vst.Seq.Release()
				vs, err := verifier.NewSession(vst, verifier.Request{Prompt: ctx, Sampling: sp, Mode: mode, Limits: limits(p.target, 8)})
				if err != nil {
					t.Fatal(err)
				}
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
				first := p.target.Tok.EOS() // an end-of-text token ends the output unrecorded
				if len(step.Tokens) > 0 {
					first = step.Tokens[0].ID
				}
				counts[first]++
				if first == pr.Tokens[0] {
					accepted++
				}
			}
			stat, df := chiSquare(counts, pd, trials)
			crit := chiSquareCritical(df)
			t.Logf("%s: χ² = %.1f with %d degrees of freedom (critical %.1f at p = 0.001); first draft token accepted in %.0f%% of trials",
				mode, stat, df, crit, 100*float64(accepted)/float64(trials))
			if stat > crit {
				t.Errorf("%s: committed tokens do not follow the verifier's distribution: χ² = %.1f > %.1f (df %d)", mode, stat, crit, df)
			}
			if accepted == 0 {
				t.Errorf("%s: the draft's first token was never accepted", mode)
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
