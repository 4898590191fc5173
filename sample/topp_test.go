package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// fullSortTopP is top-p as a full sort computes it: every id in Distribution's order
// (decreasing logit, ties by id), cut after the first whose cumulative probability
// (each rounded to float32, relative to the top token's) reaches TopP of the total.
func fullSortTopP(logits []float32, p Params) []int32 {
	ids := make([]int32, len(logits))
	for i := range ids {
		ids[i] = int32(i)
	}
	slices.SortFunc(ids, byLogit(logits))
	invT := float64(1 / p.Temperature)
	top := float64(logits[ids[0]]) * invT
	sum := 0.0
	for _, id := range ids {
		sum += math.Exp(float64(logits[id])*invT - top)
	}
	cum, lim := 0.0, float64(p.TopP)*sum
	for i, id := range ids {
		cum += float64(float32(math.Exp(float64(logits[id])*invT - top)))
		if cum >= lim {
			return ids[:i+1]
		}
	}
	return ids
}

// TestTopPWithoutFullSort: top_p alone keeps, in order, the ids a full sort would cut
// to, with the same probabilities — on peaked and flat distributions, logits tied in
// runs, -Inf logits, every top_p from the smallest float32 to just below 1, with min_p
// too, and vocabularies from 1 id to Qwen2's 152,064.
func TestTopPWithoutFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	shapes := []struct {
		name string
		gen  func(i int) float32
	}{
		{"peaked", func(int) float32 { return float32(rng.NormFloat64() * 4) }},
		{"flat", func(int) float32 { return float32(rng.NormFloat64() * 0.05) }},
		{"tied", func(int) float32 { return float32(rng.IntN(5)) }},
		{"some -Inf", func(i int) float32 {
			if i%3 == 1 {
				return float32(math.Inf(-1))
			}
			return float32(rng.NormFloat64() * 2)
		}},
	}
	tops := []float32{math.SmallestNonzeroFloat32, 0.01, 0.5, 0.9, 0.999, math.Nextafter32(1, 0)}
	for _, n := range []int{1, 7, 300, 5000, 152064} {
		for _, sh := range shapes {
			logits := make([]float32, n)
			for i := range logits {
				logits[i] = sh.gen(i)
			}
			if n == 1 && math.IsInf(float64(logits[0]), -1) {
				logits[0] = 0
			}
			ref := New(Params{Temperature: 0.7}).Distribution(logits).Clone() // unfiltered, id order
			tops, minPs := tops, []float32{0, 0.02}
			if n > 5000 {
				// The reference sorts the whole vocabulary each time: fewer cases.
				tops, minPs = []float32{0.5, 0.95}, []float32{0}
			}
			for _, tp := range tops {
				for _, mp := range minPs {
					p := Params{Temperature: 0.7, TopP: tp, MinP: mp}
					want := fullSortTopP(logits, p)
					d := New(p).Distribution(logits)
					kept := want[:0:0]
					for _, id := range want {
						if mp == 0 || float64(ref.Prob(id)) >= float64(mp)*float64(ref.Prob(want[0]))*(1-1e-6) {
							kept = append(kept, id)
						}
					}
					if mp == 0 && !slices.Equal(d.IDs, want) {
						t.Fatalf("n %d %s top_p %v: kept %d ids %v…, want %d %v…", n, sh.name, tp, len(d.IDs), d.IDs[:min(5, len(d.IDs))], len(want), want[:min(5, len(want))])
					}
					if mp > 0 && (len(d.IDs) > len(want) || !slices.Equal(d.IDs, want[:len(d.IDs)]) || len(d.IDs) != len(kept)) {
						t.Fatalf("n %d %s top_p %v min_p %v: kept %d ids, want the first %d of the top-p cut's %d", n, sh.name, tp, mp, len(d.IDs), len(kept), len(want))
					}
					sum := 0.0
					for _, q := range d.Probs {
						sum += float64(q)
					}
					if math.Abs(sum-1) > 1e-5 {
						t.Fatalf("n %d %s top_p %v: probabilities sum to %v", n, sh.name, tp, sum)
					}
				}
			}
		}
	}
}

func BenchmarkDistributionTopP(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	logits := make([]float32, 152064) // Qwen2's vocabulary
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	for _, tp := range []float32{0.5, 0.95} {
		s := New(Params{Temperature: 0.8, TopP: tp, Seed: 7})
		b.Run(fmt.Sprintf("top_p=%v", tp), func(b *testing.B) {
			pos := 0
			for b.Loop() {
				s.Sample(logits, pos)
				pos++
			}
		})
	}
}
