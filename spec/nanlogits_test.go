package spec_test

import (
	"errors"
	"math"
	"testing"

	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestLogitsWithoutADrawFailTheRequest: logits that leave nothing to draw (every one
// NaN, as a model whose activations overflowed gives) fail the request with
// verifier.ErrNoToken — in an own step, greedy or sampled with min_p, and in a
// rejection-mode verification — rather than committing token -1, which failed the
// next batched pass of every request sharing it, or indexing an empty distribution,
// which panicked the verifier's engine goroutine.
func TestLogitsWithoutADrawFailTheRequest(t *testing.T) {
	p := loadPair(t)
	ctx := p.target.Tok.Encode("Once upon a time", true)
	nan := make([]float32, 4*p.target.Vocab)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	for _, c := range []struct {
		name   string
		sp     sample.Params
		mode   spec.Mode
		verify bool
	}{
		{"greedy own step", sample.Params{TopP: 1}, spec.Coupled, false},
		{"sampled own step with min_p", sample.Params{Temperature: 0.8, TopP: 1, MinP: 0.1, Seed: 1}, spec.Coupled, false},
		{"sampled own step with top_p", sample.Params{Temperature: 0.8, TopP: 0.9, Seed: 1}, spec.Coupled, false},
		{"rejection verification with min_p", sample.Params{Temperature: 0.8, TopP: 1, MinP: 0.1, Seed: 1}, spec.Rejection, true},
		{"rejection verification", sample.Params{Temperature: 0.8, TopP: 1, Seed: 1}, spec.Rejection, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := state(t, p.target, p.pool)
			vs, err := verifier.NewSession(st, verifier.Request{Prompt: ctx, Sampling: c.sp, Mode: c.mode, Limits: limits(p.target, 8)})
			if err != nil {
				t.Fatal(err)
			}
			in := vs.PlanOwn(nil)
			if c.verify {
				pr := spec.Proposal{Round: 1, Start: len(ctx), Tokens: []int32{10, 11}, Dists: []sample.Dist{
					sample.NewDist([]int32{10, 12}, []float32{0.5, 0.5}), sample.NewDist([]int32{11}, []float32{1})}}
				if in, _, err = vs.PlanVerify(pr, 2); err != nil || len(in) != 3 {
					t.Fatalf("PlanVerify = %v, %v; want three tokens to feed", in, err)
				}
			}
			// The pass runs (the cache takes the fed tokens); its logits come out NaN.
			if _, err := st.Forward(in, true); err != nil {
				t.Fatal(err)
			}
			step, err := vs.Apply(nan[:len(in)*p.target.Vocab])
			if !errors.Is(err, verifier.ErrNoToken) {
				t.Errorf("Apply(NaN logits) = %+v, %v; want ErrNoToken", step, err)
			}
			if got := vs.Output().IDs; len(got) != 0 {
				t.Errorf("committed %v from NaN logits", got)
			}
		})
	}
}
